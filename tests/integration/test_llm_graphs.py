"""Whole graphs on real SDKs: the seed's multi-agent flow on the scripted model and on the ``openai``
provider pointed at a fake server (with failover in the run's events), the react example on every
provider by changing one model string, streaming to the observer, and cache hits that cost nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepwise.asl.interpreter import FakeClock
from stepwise.client import Stepwise
from stepwise.graph.loader import load_file, load_text
from stepwise.llm.cache import ResponseCache
from stepwise.llm.gateway import ModelHub
from stepwise.llm.settings import LLMSettings, ProviderSettings
from stepwise.llm.testing import FakeLLMServer, Reply
from stepwise.memory import valkey as vk
from stepwise.state.events import LLM_CALL, NODE_UPDATE, TOOL_CALL

LLM_NODES = ("planner", "research_worker", "code_worker", "synthesizer")


def llm_calls(client: Stepwise, thread_id: str) -> list[Any]:
    return [e for e in client.history(thread_id) if e.type == LLM_CALL]


def last_text(api: str, body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    content = messages[-1].get("content") if messages else ""
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content)


def team(api: str, body: dict[str, Any]) -> Reply:
    """A fake team: plans, works and judges like the multi-agent flow expects."""
    text = last_text(api, body)
    if "Decompose the task" in text:
        return Reply(
            text=json.dumps(
                [
                    {"id": "research-1", "kind": "research", "title": "how do 429s signal limits"},
                    {"id": "code-1", "kind": "code", "title": "write a retry wrapper"},
                ]
            )
        )
    if "Combine the results" in text:
        return Reply(text=json.dumps({"answer": "Retry 3x with backoff and honour Retry-After.", "quality": 0.9, "feedback": ""}))
    return Reply(text=f"done: {text}", input_tokens=50, output_tokens=20)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(team) as srv:
        yield srv


def hub_for(srv: FakeLLMServer, **settings: Any) -> ModelHub:
    providers = {
        "openai": ProviderSettings(base_url=f"{srv.url}/v1"),
        "anthropic": ProviderSettings(base_url=srv.url),
        "bedrock": ProviderSettings(base_url=srv.url, region="us-east-1"),
    }
    return ModelHub(
        LLMSettings(providers=providers, **{"cache": "off", **settings}),
        clock=FakeClock(),
        environ={"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test"},
    )


def test_multi_agent_flow_on_the_scripted_model(examples: Path) -> None:
    client = Stepwise.in_memory()
    result = client.run(load_file(examples / "multi_agent.yaml"), {"question": "How should our payment client retry?"})
    assert result.status == "succeeded" and result.state["quality"] >= 0.8
    assert set(result.state["findings"]) == {"research-1", "code-1", "research-2", "code-2"}
    calls = llm_calls(client, result.thread_id)
    assert {e.node for e in calls} == set(LLM_NODES) and all(e.data["model"] == "scripted" for e in calls)
    assert len(calls) == 2 * 4  # two rounds: planner, two workers, synthesizer


def test_multi_agent_flow_on_openai_with_failover_in_the_events(examples: Path, fake: FakeLLMServer) -> None:
    with FakeLLMServer(team) as backup:
        fake.add(*[Reply.error(500)] * 4)  # the primary's first call fails 4 times: 3 retries, then failover
        spec = load_file(examples / "multi_agent.yaml")
        local = f"local:{backup.url}/v1#llama3"
        for node in LLM_NODES:
            spec.graph.nodes[node].model = f"openai:gpt-4o-mini|{local}"
        client = Stepwise.in_memory(clock=FakeClock())
        client.services.models = hub_for(fake)
        result = client.run(spec, {"question": "How should our payment client retry?"})
        assert len(backup.seen) == 1
    assert result.status == "succeeded", result.error
    assert result.state["answer"] == "Retry 3x with backoff and honour Retry-After." and result.state["quality"] == 0.9
    assert result.state["findings"] == {"research-1": "done: how do 429s signal limits", "code-1": "done: write a retry wrapper"}
    calls = llm_calls(client, result.thread_id)
    planner = next(e for e in calls if e.node == "planner")
    assert planner.data["failover"] is True and planner.data["target"] == local
    assert [a["outcome"] for a in planner.data["attempts"]] == ["error", "error", "error", "error", "ok"]
    assert planner.data["attempts"][0]["target"] == "openai:gpt-4o-mini" and planner.data["attempts"][-1]["target"] == local
    workers = [e for e in calls if e.node in ("research_worker", "code_worker")]
    assert all(e.data["target"] == "openai:gpt-4o-mini" and "attempts" not in e.data for e in workers)  # the primary recovered
    assert all(e.data["input_tokens"] == 50 and e.data["cost_usd"] == pytest.approx((50 * 0.15 + 20 * 0.60) / 1e6) for e in workers)
    assert fake.seen[0].body["model"] == "gpt-4o-mini"


REACT_INPUT = {"messages": [{"role": "user", "content": "What is 17 * 23?"}]}


def calculator_agent(api: str, body: dict[str, Any]) -> Reply:
    blob = json.dumps(body)
    if "Review the last answer" in blob:
        return Reply(text="approve")
    if '"role": "tool"' in blob or "tool_result" in blob or "toolResult" in blob:
        return Reply(text="17 × 23 = 391")
    return Reply(tool_calls=[{"id": "call_1", "name": "calculator", "arguments": {"expression": "17 * 23"}}])


@pytest.mark.parametrize("model", ["openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest", "bedrock:amazon.nova-lite-v1:0", "local"])
def test_react_example_on_every_provider_by_changing_one_model_string(model: str, examples: Path, aws_env: None) -> None:
    with FakeLLMServer(calculator_agent) as srv:
        if model == "local":
            model = f"local:{srv.url}/v1#llama3"
        client = Stepwise.in_memory(clock=FakeClock())
        client.services.models = hub_for(srv, model_override=model)  # what STEPWISE_MODEL=<model> does
        result = client.run(load_file(examples / "react.yaml"), REACT_INPUT)
        apis = {s.api for s in srv.seen}
    assert result.status == "succeeded", result.error
    assert [m.get("content") for m in result.state["messages"]][-2:] == ["391", "17 × 23 = 391"]
    assert result.state["reflections"][-1]["content"] == "approve"
    assert apis == {"openai" if model.startswith(("openai", "local")) else model.split(":")[0]}
    calls = llm_calls(client, result.thread_id)
    assert len(calls) == 3 and all(e.data["target"] == model for e in calls)
    [tool] = [e for e in client.history(result.thread_id) if e.type == TOOL_CALL]
    assert tool.data["result"] == 391


STREAMING = """
name: streaming
state: {messages: append}
graph:
  nodes:
    talk: {kind: agent, model: "openai:gpt-4o-mini", config: {stream: true}}
  entry: talk
"""


def test_streaming_deltas_reach_the_observer(fake: FakeLLMServer) -> None:
    fake.add(Reply(text="Streaming works end to end."))
    seen: list[dict[str, Any]] = []
    client = Stepwise.in_memory(observer=seen.append, clock=FakeClock())
    client.services.models = hub_for(fake)
    result = client.run(load_text(STREAMING), {"messages": [{"role": "user", "content": "hi"}]})
    assert result.status == "succeeded" and result.state["messages"][-1]["content"] == "Streaming works end to end."
    deltas = [e["text"] for e in seen if e["kind"] == "llm_delta"]
    assert len(deltas) > 2 and "".join(deltas) == "Streaming works end to end." and fake.seen[-1].stream
    assert all(e["node"] == "talk" for e in seen if e["kind"] == "llm_delta")


@pytest.fixture
def cache() -> ResponseCache:
    return ResponseCache(vk.client(vk.embedded_url()), prefix=f"test:{uuid.uuid4().hex[:8]}")


def test_exact_cache_hits_cost_zero_tokens_and_show_in_the_events(examples: Path, fake: FakeLLMServer, cache: ResponseCache) -> None:
    spec = load_file(examples / "multi_agent.yaml")
    for node in LLM_NODES:
        spec.graph.nodes[node].model = "openai:gpt-4o-mini"
    hub = hub_for(fake, cache="exact")
    hub._cache = cache
    client = Stepwise.in_memory(clock=FakeClock())
    client.services.models = hub
    first = client.run(spec, {"question": "How should our payment client retry?"})
    served = len(fake.seen)
    second = client.run(spec, {"question": "How should our payment client retry?"})
    assert first.status == second.status == "succeeded" and second.state["answer"] == first.state["answer"]
    assert len(fake.seen) == served  # the second run never reached the provider
    cold, warm = llm_calls(client, first.thread_id), llm_calls(client, second.thread_id)
    assert not any(e.data["cached"] for e in cold) and sum(e.data["input_tokens"] for e in cold) > 0
    assert all(e.data["cached"] and e.data["cache"] == "exact" for e in warm) and len(warm) == len(cold)
    assert sum(e.data["input_tokens"] + e.data["output_tokens"] for e in warm) == 0 and sum(e.data["cost_usd"] for e in warm) == 0


def test_semantic_cache_hit_for_a_paraphrase(fake: FakeLLMServer, cache: ResponseCache) -> None:
    fake.add(Reply(text="Paris.", input_tokens=30, output_tokens=2))
    hub = hub_for(fake, cache="semantic")
    hub._cache = cache
    client = Stepwise.in_memory(clock=FakeClock())
    client.services.models = hub
    spec = load_text(STREAMING.replace("config: {stream: true}", "config: {}"))
    client.run(spec, {"messages": [{"role": "user", "content": "What is the capital of France?"}]})
    result = client.run(spec, {"messages": [{"role": "user", "content": "what's the capital city of France"}]})
    assert result.state["messages"][-1]["content"] == "Paris." and len(fake.seen) == 1
    [hit] = llm_calls(client, result.thread_id)
    assert hit.data["cache"] == "semantic" and cache.threshold <= hit.data["similarity"] < 1 and hit.data["input_tokens"] == 0
    assert [e.node for e in client.history(result.thread_id) if e.type == NODE_UPDATE] == ["talk"]


def test_cache_is_isolated_per_tenant_of_the_run(fake: FakeLLMServer, cache: ResponseCache) -> None:
    fake.add(Reply(text="acme's answer"), Reply(text="globex's answer"))
    hub = hub_for(fake, cache="exact")
    hub._cache = cache
    client = Stepwise.in_memory(clock=FakeClock())
    client.services.models = hub
    spec = load_text(STREAMING.replace("config: {stream: true}", "config: {}"))
    question = {"messages": [{"role": "user", "content": "What is our refund policy?"}]}
    acme = client.run(spec, question, tenant="acme")
    globex = client.run(spec, question, tenant="globex")
    acme_again = client.run(spec, question, tenant="acme")
    assert acme.state["messages"][-1]["content"] == acme_again.state["messages"][-1]["content"] == "acme's answer"
    assert globex.state["messages"][-1]["content"] == "globex's answer"  # never served acme's cached reply
    assert [llm_calls(client, r.thread_id)[0].data["cached"] for r in (acme, globex, acme_again)] == [False, False, True]


def test_a_run_records_its_spend_and_the_runs_list_filters_by_it(fake: FakeLLMServer, tmp_path: Path) -> None:
    """The run record sums its llm_call events' cost when it ends (real openai SDK, fake server, SQLite
    store), so `GET /runs?min_cost=` is an indexed query rather than a read of every run's events."""
    from stepwise.state.ports import RunQuery

    fake.add(Reply(text="Priced.", input_tokens=1000, output_tokens=500))
    client = Stepwise.embedded(tmp_path, clock=FakeClock())
    client.services.models = hub_for(fake)
    paid = client.run(
        load_text(STREAMING.replace("config: {stream: true}", "config: {}")), {"messages": [{"role": "user", "content": "hi"}]}
    )
    free = client.run(load_text(STREAMING.replace('"openai:gpt-4o-mini"', "scripted")), {"messages": [{"role": "user", "content": "hi"}]})
    assert paid.status == free.status == "succeeded", (paid.error, free.error)
    (call,) = llm_calls(client, paid.thread_id)
    record = client.get_run(paid.run_id)
    assert record is not None and record.cost_usd == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6) == call.data["cost_usd"]
    assert record.tokens == 1500
    assert [r.run_id for r in client.list_runs(RunQuery(tenant="default", min_cost=0.0001)).runs] == [paid.run_id]
    assert [r.run_id for r in client.list_runs(RunQuery(tenant="default", max_cost=0)).runs] == [free.run_id]
