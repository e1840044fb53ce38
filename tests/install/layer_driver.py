"""Runs inside a *layer-only* interpreter: ``python -I -S layer_driver.py SCENARIO LAYER_DIR FUNCTION_DIR``.

``-I -S``: no site-packages, no user site, no PYTHON* variables, no script directory on ``sys.path``.
The only things importable besides the standard library are the layer's ``python/`` directory and the
function's own folder — what Lambda gives a function (``/opt/python`` and ``/var/task``). The AWS
calls go to a moto server through ``AWS_ENDPOINT_URL``. Prints one JSON line with what happened.

Only the standard library may be imported at module level here.
"""

import importlib.util
import json
import sys
import time
import types
from typing import Any

SCENARIO, LAYER, FUNCTION_DIR = sys.argv[1:4]
sys.path[:0] = [FUNCTION_DIR, LAYER]

DEV_ONLY = ("pytest", "moto", "mypy", "ruff", "aws_cdk")  # present in the dev venv, never in the layer

GRAPH = """
name: layer-check
state: {log: append}
graph:
  nodes:
    fetch: {fn: "stepwise.examples.nodes:fetch"}
    clean: {fn: "stepwise.examples.nodes:clean"}
    think: {kind: agent, model: scripted, script: ["the layer works"], output: answer}
  edges:
    - {from: fetch, to: clean}
    - {from: clean, to: think}
  entry: fetch
"""


def context(name: str) -> Any:
    return types.SimpleNamespace(
        function_name=name,
        memory_limit_in_mb=512,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        aws_request_id=f"req-{name}",
    )


def isolation() -> dict[str, Any]:
    visible = [name for name in DEV_ONLY if importlib.util.find_spec(name) is not None]
    site = [p for p in sys.path if "site-packages" in p or "dist-packages" in p]
    return {"dev_visible": visible, "site_paths": site}


def scenario_serve() -> dict[str, Any]:
    """A warm Lambda container: one JSON event per stdin line, one JSON answer per stdout line.

    The test routes moto's Lambda invokes here, so Step Functions (moto's interpreter) runs the graph
    with every Task answered by this handler. Logs (Powertools writes to stdout) go to stderr.
    """
    protocol, sys.stdout = sys.stdout, sys.stderr
    import handler

    protocol.write(json.dumps({"ready": True, **isolation()}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"result": handler.handler(request["event"], context(request["function"]))}
        except Exception as exc:  # noqa: BLE001 - reported like the Lambda runtime: errorType = the class name
            answer = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        protocol.write(json.dumps(answer, default=str) + "\n")
        protocol.flush()
    return {}


def scenario_api() -> dict[str, Any]:
    """API calls through the api handler: health, a key, an agent from YAML, a run on Step Functions to its end."""
    import handler  # functions/api/handler.py, as Lambda imports it

    from stepwise.api.keys import create_key

    def call(method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
        headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
        event = {
            "resource": path,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": None,
            "requestContext": {"requestId": f"req-{method}-{path}", "stage": "prod"},
            "body": json.dumps(body) if body is not None else None,
            "isBase64Encoded": False,
        }
        out = handler.handler(event, context("api"))
        return int(out["statusCode"]), json.loads(out["body"] or "null")

    _, key = create_key(handler.app.store, "acme")
    health = call("GET", "/health")
    created = call("POST", "/agents", {"yaml": GRAPH}, key)
    started = call("POST", "/agents/layer-check/execute", {"input": {"text": "From The Layer"}, "wait_seconds": 20}, key)
    run = call("GET", f"/runs/{started[1].get('run_id')}", None, key) if started[0] < 300 else started
    deadline = time.monotonic() + 240  # a loaded machine may outlast the execute's own wait (202): poll, bounded
    while started[0] == 202 and run[1].get("status") in ("running", "queued") and time.monotonic() < deadline:
        time.sleep(0.5)
        run = call("GET", f"/runs/{started[1].get('run_id')}", None, key)
    return {
        "health": health[0],
        "created": created[0],
        "started": started[0],
        "run_status": run[1].get("status"),
        "state": run[1].get("state"),
        "anonymous": call("GET", "/agents")[0],
    }


def scenario_import() -> dict[str, Any]:
    """Any function: its handler imports from the layer alone and is callable."""
    protocol, sys.stdout = sys.stdout, sys.stderr
    import handler

    sys.stdout = protocol
    return {"callable": callable(getattr(handler, "handler", None))}


if __name__ == "__main__":
    result = {"serve": scenario_serve, "api": scenario_api, "import": scenario_import}[SCENARIO]()
    print(json.dumps({"scenario": SCENARIO, **isolation(), **result}, default=str))
