"""Consolidation (STM over budget → importance → summary → LTM → evict), procedural memory, and the STM
budget applied to what an agent actually sends."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.memory import valkey as vk
from stepwise.memory.consolidate import PENDING_KEY, consolidate_pending, consolidate_thread, mark_pending
from stepwise.memory.embedders import HashingEmbedder
from stepwise.memory.extract import extract_rules
from stepwise.memory.local import EmbeddedLongTermStore
from stepwise.memory.procedural import ProceduralMemory, tool_sequence
from stepwise.memory.records import MemoryQuery
from stepwise.memory.stm import ShortTermMemory


def chat(turns: int, fact_at: int = 3) -> list[dict]:
    out = []
    for t in range(turns):
        said = "I prefer window seats on long flights." if t == fact_at else f"Tell me about topic {t} in detail please."
        out += [{"role": "user", "content": said}, {"role": "assistant", "content": f"Here is a long answer about topic {t}. " * 5}]
    return [*out, {"role": "user", "content": "Which seat should I book?"}]


@pytest.fixture
def parts(tmp_path: Path) -> tuple[ShortTermMemory, EmbeddedLongTermStore]:
    return ShortTermMemory(vk.client(), prefix=f"test:stm:{uuid.uuid4().hex[:8]}"), EmbeddedLongTermStore(
        tmp_path, embedder=HashingEmbedder()
    )


def test_consolidation_pipeline_is_idempotent(parts: tuple[ShortTermMemory, EmbeddedLongTermStore]) -> None:
    stm, ltm = parts
    messages = chat(40)
    kwargs = {"tenant": "acme", "thread_id": "t1", "stm": stm, "ltm": ltm, "namespace": "acme/a/u", "budget": 400}
    report = consolidate_thread(**kwargs, thread_messages=messages)  # type: ignore[arg-type]
    assert report.evicted > 0 and report.tokens_after < report.tokens_before and report.summary
    offset, held, summary = stm.state("acme", "t1")
    assert offset == report.evicted and held[-1]["content"] == "Which seat should I book?" and summary == report.summary
    stored = ltm.list("acme")
    assert {r.strategy for r in stored} == {"preference", "summary"}
    assert any(r.text == "The user prefers window seats on long flights." for r in stored)
    again = consolidate_thread(**kwargs, thread_messages=messages)  # type: ignore[arg-type]
    assert again.evicted == 0 and again.stored == [] and len(ltm.list("acme", include_history=True)) == len(stored)


def test_background_pass_consolidates_pending_threads(parts: tuple[ShortTermMemory, EmbeddedLongTermStore]) -> None:
    stm, ltm = parts
    client = vk.client()
    client.delete(PENDING_KEY)
    stm.sync("acme", "bg", chat(30))
    mark_pending(client, tenant="acme", thread_id="bg", namespace="acme/a/u", budget=300, model=None)
    reports = consolidate_pending(client, stm, ltm)
    assert [r.thread_id for r in reports] == ["bg"] and reports[0].evicted > 0
    assert client.hlen(PENDING_KEY) == 0 and consolidate_pending(client, stm, ltm) == []


def test_extraction_reads_only_user_statements() -> None:
    found = extract_rules(
        [
            {"role": "assistant", "content": "I prefer to answer briefly."},
            {"role": "user", "content": "My name is Dana. Do I prefer tea? I am allergic to peanuts."},
        ]
    )
    assert [(c.strategy, c.key) for c in found] == [("semantic", "fact:name"), ("preference", "pref:allergic:peanut")]


def test_procedural_patterns_gain_and_lose_weight(parts: tuple[ShortTermMemory, EmbeddedLongTermStore]) -> None:
    _, ltm = parts
    proc = ProceduralMemory(ltm)
    good = [{"tool": "search", "args": ["query"]}, {"tool": "calculator", "args": ["expression"]}]
    bad = [{"tool": "calculator", "args": ["expression"]}]
    for _ in range(2):
        proc.record("acme", "acme/a", "pricing", good, ok=True)
    proc.record("acme", "acme/a", "pricing", bad, ok=True)
    for _ in range(3):
        proc.record("acme", "acme/a", "pricing", bad, ok=False)
    ranked = proc.suggest("acme", ["acme/a"], "pricing", "compute the price")
    assert [p.steps for p in ranked] == [good, bad]
    assert ranked[0].weight == 0.75 and ranked[1].weight == pytest.approx(2 / 6, abs=1e-3)
    assert len(ltm.history("acme", ranked[1].record.id)) == 4  # the pattern's track record
    assert proc.suggest("acme", ["acme/a"], "billing", "compute the price") == []
    steps, ok = tool_sequence(
        [
            {"role": "assistant", "tool_calls": [{"id": "1", "name": "search", "arguments": {"query": "x"}}]},
            {"role": "tool", "tool_call_id": "1", "content": "error: timeout"},
        ]
    )
    assert steps == [{"tool": "search", "args": ["query"]}] and not ok


GRAPH = """
name: budgeted
state: {messages: append}
graph:
  nodes:
    a:
      kind: agent
      model: scripted
      script: ["ok"]
MEMORY
  entry: a
"""


def test_agent_sends_a_budgeted_window(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path)
    history = chat(100)
    plain = client.run(load_text(GRAPH.replace("MEMORY", "")), {"messages": history})
    budgeted = client.run(
        load_text(GRAPH.replace("MEMORY", "      memory: {stm_budget: 600, namespaces: ['{tenant}/{thread}'], write_back: false}")),
        {"messages": history},
    )

    def sent(result):  # type: ignore[no-untyped-def]
        return next(e.data["input_tokens"] for e in client.services.events.read(result.thread_id) if e.type == "llm_call")

    assert sent(budgeted) < 700 < 5000 < sent(plain)
    assert budgeted.state["messages"][-1]["content"] == "ok"


def test_ltm_query_filters_history_as_of(parts: tuple[ShortTermMemory, EmbeddedLongTermStore]) -> None:
    _, ltm = parts
    ltm.remember("acme", "acme/a/u", "The user prefers tea.", strategy="preference", key="pref:drink", now=10.0)
    ltm.remember("acme", "acme/a/u", "The user prefers coffee.", strategy="preference", key="pref:drink", now=20.0)
    then = ltm.search("acme", MemoryQuery(text="drink", namespaces=["acme"], as_of=15.0))
    assert [h.record.text for h in then] == ["The user prefers tea."]
