"""functions/api/handler.py: the thin Lambda around the same app, with Powertools wired in."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from stepwise.api.keys import create_key

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "api" / "handler.py"


@pytest.fixture
def handler_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("STEPWISE_BACKEND", "memory")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    spec = importlib.util.spec_from_file_location("api_handler_under_test", HANDLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "api_handler_under_test", module)
    return module


def context() -> Any:
    return SimpleNamespace(
        function_name="api",
        memory_limit_in_mb=512,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:api",
        aws_request_id="lambda-req-1",
    )


def proxy(method: str, path: str, body: Any = None, key: str | None = None) -> dict[str, Any]:
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "requestContext": {"requestId": "apigw-req-1", "stage": "prod"},
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


def test_lambda_handler_serves_the_api_and_emits_metrics(handler_module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    _, key = create_key(handler_module.app.store, "acme")
    text = (Path(__file__).resolve().parents[2] / "statemachines" / "examples" / "sequential.yaml").read_text()
    out = handler_module.handler(proxy("POST", "/agents", {"yaml": text}, key), context())
    assert out["statusCode"] == 201
    out = handler_module.handler(proxy("POST", "/agents/sequential/execute", {}, key), context())
    assert out["statusCode"] == 200 and json.loads(out["body"])["status"] == "succeeded"
    logged = capsys.readouterr().out
    assert '"run_started"' in logged and '"Namespace":"Stepwise"' in logged.replace(" ", "")
    assert handler_module.handler(proxy("GET", "/agents"), context())["statusCode"] == 401
