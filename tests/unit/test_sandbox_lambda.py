"""The AWS sandbox Lambda's handler (run here as a plain function) and the client that invokes it (Stubber)."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.response import StreamingBody
from botocore.stub import Stubber

from stepwise.tools.sandbox import SandboxLimits, lambda_python

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "sandbox" / "handler.py"


def handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sandbox_handler", HANDLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_handler_runs_code_without_credentials_and_kills_overruns(monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    h = handler()
    out = h.handler(
        {"code": "import os; print(sorted(k for k in os.environ if k.startswith('AWS')), os.getcwd().startswith('/tmp/sandbox-'))"}
    )
    assert out["exit_code"] == 0 and out["stdout"] == "[] True\n"
    loop = h.handler({"code": "import time; time.sleep(60)", "limits": {"wall_seconds": 0.5}})
    assert loop["killed"] == "wall_time"
    bomb = h.handler({"code": "x = bytearray(2 * 1024**3)", "limits": {"memory_mb": 256}})
    assert bomb["exit_code"] != 0 and "MemoryError" in bomb["stderr"]
    assert "error" in h.handler({"code": 42})


def test_client_invokes_the_sandbox_function() -> None:
    client = boto3.client("lambda", region_name="eu-west-1")
    reply = json.dumps({"exit_code": 0, "stdout": "2\n", "stderr": ""}).encode()
    expected = {"code": "print(1+1)", "limits": {"cpu_seconds": 5, "wall_seconds": 10.0, "memory_mb": 512}}
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(reply), len(reply))},
            {"FunctionName": "stepwise-dev-sandbox", "Payload": json.dumps(expected).encode()},
        )
        assert lambda_python("print(1+1)", "stepwise-dev-sandbox", limits=SandboxLimits(), client=client)["stdout"] == "2\n"
