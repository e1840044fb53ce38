"""The scheduled consolidation Lambda (functions/memory/handler.py) and the STM client settings used on AWS."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from stepwise.memory import valkey as vk
from stepwise.memory.consolidate import PENDING_KEY, mark_pending
from stepwise.memory.stm import ShortTermMemory

ROOT = Path(__file__).resolve().parents[2]


def load_handler():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("memory_handler", ROOT / "functions" / "memory" / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONTEXT = SimpleNamespace(
    function_name="stepwise-dev-memory",
    memory_limit_in_mb=1769,
    invoked_function_arn="arn:aws:lambda:eu-west-1:1:function:m",
    aws_request_id="r1",
)


def test_scheduled_pass_consolidates_registered_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPWISE_BACKEND", "memory")
    monkeypatch.setenv("STEPWISE_HOME", str(tmp_path))
    monkeypatch.setenv("STEPWISE_MEMORY_EMBEDDER", "hashing")
    client = vk.client()
    client.delete(PENDING_KEY)
    stm = ShortTermMemory(client)
    stm.rebuild("acme", "t-lambda", [{"role": "user", "content": f"I like item {i}. " * 8} for i in range(40)])
    mark_pending(client, tenant="acme", thread_id="t-lambda", namespace="acme/a", budget=200, model=None)
    handler = load_handler()
    result = handler.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, CONTEXT)
    assert result["threads"] == 1 and result["evicted"] > 0 and result["stored"] >= 1
    assert handler.handler({}, CONTEXT)["threads"] == 0  # idempotent: nothing pending any more
    stm.clear("acme", "t-lambda")


def test_elasticache_url_uses_tls_and_auth() -> None:
    found = vk.client("rediss://stepwise:s3cret@cache.example.internal:6379")
    kwargs = found.connection_pool.connection_kwargs
    assert found.connection_pool.connection_class is redis.SSLConnection
    assert kwargs["username"] == "stepwise" and kwargs["password"] == "s3cret"
    assert json.dumps(kwargs["host"]) == '"cache.example.internal"'


def test_titan_embedder_request_shape() -> None:
    import io

    import boto3
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from stepwise.memory.embedders import TitanEmbedder, make_embedder

    client = boto3.client("bedrock-runtime", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    titan = TitanEmbedder(dimensions=2, client=client)
    payload = json.dumps({"embedding": [3.0, 4.0], "inputTextTokenCount": 2}).encode()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke_model",
            {"body": StreamingBody(io.BytesIO(payload), len(payload)), "contentType": "application/json"},
            {
                "modelId": "amazon.titan-embed-text-v2:0",
                "body": json.dumps({"inputText": "hello", "dimensions": 2, "normalize": True}),
                "contentType": "application/json",
                "accept": "application/json",
            },
        )
        [vector] = titan.embed(["hello"])
    assert vector.tolist() == pytest.approx([0.6, 0.8]) and titan.name == "bedrock:amazon.titan-embed-text-v2:0:2"
    with pytest.raises(ValueError, match="bedrock:MODEL"):
        make_embedder("word2vec")
