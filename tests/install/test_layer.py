"""The Lambda layer, built from the package metadata alone, runs both handlers with nothing else installed.

1. ``layers/build.py`` builds the layer's ``python/`` directory (``pip --target``, the ``lambda`` extra read
   from pyproject.toml) into a clean directory — for this interpreter (``platform=None``) so its binary
   wheels import here; the deploy build only adds the manylinux/3.12 platform flags.
2. Every ``functions/*`` handler is imported by a fresh ``python -I -S`` whose ``sys.path`` is the standard
   library, that directory and the function's folder: what Lambda gives a function. No dev package is
   visible (checked from inside).
3. End to end: the ``api`` handler (layer interpreter) registers a graph and starts a run on Step Functions;
   moto — a ``ThreadedMotoServer`` on 127.0.0.1 standing in for AWS, reached through ``AWS_ENDPOINT_URL`` —
   executes the compiled ASL and every Task's Lambda invoke is answered by the ``step`` handler running in
   a second layer-only interpreter (a warm container fed one event per line); the run's events land in
   moto's DynamoDB and the API reports the run succeeded with the expected state.

A handler that imports something the layer lacks fails here, long before a deploy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from layers.build import LayerBuild
from tests.support.aws import aws_settings, create_api_table, create_state_resources, settings_env
from tests.support.builds import ROOT, shared_build
from tests.support.moto_sfn import INVOKE_EVENT, LambdaRouter, _patched_moto

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("layer_driver.py")
FUNCTIONS = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "handler.py").is_file())
API_TABLE = "test-api"


@pytest.fixture(scope="session")
def layer(shared_root: Path) -> Path:
    """The layer's ``python/`` directory, built once per session (pip's cache keeps repeat builds short)."""
    return shared_build(shared_root, "layer", lambda out: LayerBuild(platform=None).build(out)) / "python"


@pytest.fixture
def moto_endpoint() -> Iterator[tuple[str, LambdaRouter]]:
    """A moto server that executes state machines; its Lambda invokes go to the returned router."""
    import boto3
    from botocore.handlers import BUILTIN_HANDLERS
    from moto.core.config import default_user_config
    from moto.server import ThreadedMotoServer

    router = LambdaRouter()
    entry = (INVOKE_EVENT, router)
    BUILTIN_HANDLERS.append(entry)  # moto's own boto3 clients (its Task invokes) get the router ...
    saved_session, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, None  # ... from a default session made after it
    saved = dict(default_user_config.get("stepfunctions", {}))
    default_user_config["stepfunctions"] = {**saved, "execute_state_machine": True}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    with _patched_moto():
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        try:
            yield url, router
        finally:
            urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).close()
            server.stop()
            default_user_config["stepfunctions"] = saved
            BUILTIN_HANDLERS.remove(entry)
            boto3.DEFAULT_SESSION = saved_session


def lambda_env(endpoint: str) -> dict[str, str]:
    """The environment the CDK stack gives the functions, pointed at the moto server."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": "test-function",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Stepwise",
        "STEPWISE_API_TABLE": API_TABLE,
        "STEPWISE_API_MAX_WAIT_SECONDS": "60",
    }
    return env | settings_env(aws_settings())


def layer_python(scenario: str, layer: Path, function: str) -> list[str]:
    return [sys.executable, "-I", "-S", str(DRIVER), scenario, str(layer), str(ROOT / "functions" / function)]


def last_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_handler_imports_from_the_layer_alone(function: str, layer: Path) -> None:
    env = lambda_env("http://127.0.0.1:9")  # nothing listens: importing must not call AWS
    proc = subprocess.run(layer_python("import", layer, function), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = last_json(proc.stdout)
    assert result["callable"] is True
    assert result["dev_visible"] == [] and result["site_paths"] == []


class StepContainer:
    """The ``step`` handler in a layer-only interpreter, answering one invoke at a time over pipes."""

    def __init__(self, layer: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            layer_python("serve", layer, "step"), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.lock = threading.Lock()
        assert self.proc.stdout is not None
        self.ready = json.loads(self.proc.stdout.readline() or "{}")

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            self.proc.stdin.write(json.dumps({"event": event, "function": context.function_name}) + "\n")
            self.proc.stdin.flush()
            answer = json.loads(self.proc.stdout.readline() or '{"errorType": "ContainerDied", "errorMessage": "no answer"}')
        if "errorType" in answer:  # re-raised under the handler's error name, as the Lambda runtime reports it
            raise type(answer["errorType"], (Exception,), {})(answer["errorMessage"])
        return answer["result"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def test_api_and_step_handlers_run_a_graph_on_step_functions_from_the_layer_alone(
    layer: Path, moto_endpoint: tuple[str, LambdaRouter]
) -> None:
    import boto3

    endpoint, router = moto_endpoint
    env = lambda_env(endpoint)
    settings = aws_settings()
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    dynamodb, s3 = session.client("dynamodb", endpoint_url=endpoint), session.client("s3", endpoint_url=endpoint)
    create_state_resources(settings, dynamodb=dynamodb, s3=s3)
    create_api_table(API_TABLE, dynamodb=dynamodb)

    step = StepContainer(layer, env)
    try:
        assert step.ready == {"ready": True, "dev_visible": [], "site_paths": []}
        router.route(settings.step_function_arn.split(":function:")[-1], step)
        proc = subprocess.run(layer_python("api", layer, "api"), env=env, capture_output=True, text=True, timeout=300)
    finally:
        step.close()
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = last_json(proc.stdout)
    assert result["dev_visible"] == [] and result["site_paths"] == []
    assert (result["health"], result["created"], result["anonymous"]) == (200, 201, 401)
    assert result["started"] in (200, 202) and result["run_status"] == "succeeded", result
    assert result["state"]["log"] == ["fetch", "clean"] and result["state"]["answer"] == "the layer works"
    assert result["state"]["text"] == "from the layer"  # fetch kept the input, clean lower-cased it
    nodes = [event.get("node") for name, event in router.invocations]
    assert nodes[:3] == ["fetch", "clean", "think"]
