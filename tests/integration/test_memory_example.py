"""The memory example: a preference stated in one thread shapes the answer in another (offline, scripted model),
on the embedded client (SQLite + usearch/numpy store under the run's home, real Valkey)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepwise.client import Stepwise
from stepwise.graph.errors import GraphError
from stepwise.graph.loader import load_file, load_text
from stepwise.memory.records import MemoryQuery

EXAMPLE = Path(__file__).parents[2] / "statemachines" / "examples" / "memory.yaml"


def ask(client: Stepwise, user: str, text: str, tenant: str = "default") -> str:
    result = client.run(load_file(EXAMPLE), {"user_id": user, "messages": [{"role": "user", "content": text}]}, tenant=tenant)
    assert result.status == "succeeded", result.error
    return str(result.state["messages"][-1]["content"])


def test_preference_carries_across_threads(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path)
    first = ask(client, "dana", "I prefer window seats on long flights. Book me a flight to Oslo.")
    assert "(no memory)" in first
    second = ask(client, "dana", "Book me a flight to Rome for Friday.")
    assert "window seats" in second
    # another user of the same tenant, and the same user id in another tenant, remember nothing of dana
    assert "(no memory)" in ask(client, "lee", "Book me a flight to Rome for Friday.")
    assert "(no memory)" in ask(client, "dana", "Book me a flight to Rome for Friday.", tenant="globex")
    # a newer preference supersedes the old one; the old one stays in history
    ask(client, "dana", "Actually I prefer aisle seats now.")
    assert "aisle seats" in ask(client, "dana", "Book me a flight to Lima.")
    ltm = client.services.memory.ltm
    prefs = [r for r in ltm.list("default", "default/memory-assistant/dana", include_history=True) if r.strategy == "preference"]
    assert len(prefs) == 2 and sum(r.valid_to is None for r in prefs) == 1
    hits = ltm.search("default", MemoryQuery(text="seat", namespaces=["default/memory-assistant/dana"], strategies=["preference"]))
    assert "aisle" in hits[0].record.text


def test_memory_outage_never_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Stepwise.embedded(tmp_path)
    ask(client, "dana", "I prefer window seats on long flights.")
    events: list[dict] = []
    client.services.observer = events.append
    mem = client.services.memory
    mem.resilient.sleep = lambda _s: None

    def down(*_a, **_k):  # type: ignore[no-untyped-def]
        raise ConnectionError("vector store unreachable")

    monkeypatch.setattr(mem.ltm, "search", down)
    monkeypatch.setattr(mem.ltm, "remember_many", down)
    answer = ask(client, "dana", "Book me a flight to a new place.")
    assert answer.startswith("Booking it.")  # the run succeeded without memory
    degraded = [e for e in events if e.get("kind") == "memory_degraded"]
    assert {e["stage"] for e in degraded} >= {"ltm", "write_back"}


def test_memory_block_is_validated_at_load() -> None:
    bad = """
name: bad
graph:
  nodes:
    a: {kind: agent, model: scripted, memory: {namespaces: ["shared/{user}"]}}
"""
    with pytest.raises(GraphError, match="tenant"):
        load_text(bad)
    with pytest.raises(GraphError, match="top_k"):
        load_text(bad.replace('namespaces: ["shared/{user}"]', "top_k: 500"))
    with pytest.raises(GraphError, match="memory"):
        load_text("name: f\ngraph:\n  nodes:\n    a: {kind: function, fn: 'x.y:z', memory: {top_k: 2}}\n")


def test_consolidation_runs_only_after_the_checkpoint_is_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Consolidate to Long-term follows the checkpoint: a step failing at the checkpoint writes no memories,
    and on success the node's update is in the log before the first memory is stored."""
    from stepwise.state.events import NODE_UPDATE

    client = Stepwise.embedded(tmp_path)
    observed: list[dict] = []
    client.services.observer = observed.append
    ltm, namespace = client.services.memory.ltm, "default/memory-assistant/dana"
    events = client.services.events
    real_append = events.append
    at_commit: list[int] = []

    def broken_checkpoint(thread_id, expected, batch):  # type: ignore[no-untyped-def]
        if any(e.type == NODE_UPDATE and e.node == "assistant" for e in batch):
            raise OSError("checkpoint store unavailable (injected)")
        return real_append(thread_id, expected, batch)

    monkeypatch.setattr(events, "append", broken_checkpoint)
    runs, real_checked = client.services.runs, client.services.runs.append_and_cancelled

    def broken_checked(store, thread_id, expected, batch, run_id):  # type: ignore[no-untyped-def]
        # a step's append on SQLite: the same INSERT, returning the cancel flag (RunStore.append_and_cancelled)
        if any(e.type == NODE_UPDATE and e.node == "assistant" for e in batch):
            raise OSError("checkpoint store unavailable (injected)")
        return real_checked(store, thread_id, expected, batch, run_id)

    monkeypatch.setattr(runs, "append_and_cancelled", broken_checked)
    question = {"user_id": "dana", "messages": [{"role": "user", "content": "I prefer window seats on long flights."}]}
    try:
        failed = client.run(load_file(EXAMPLE), question)
        assert failed.status != "succeeded"
    except Exception as exc:  # noqa: BLE001 - the executor may surface the checkpoint error itself
        assert "injected" in str(exc)
    assert ltm.list("default", namespace, include_history=True) == []  # nothing written for the failed step
    assert not [e for e in observed if e.get("kind") == "memory_stored"]

    def counting_checkpoint(thread_id, expected, batch):  # type: ignore[no-untyped-def]
        if any(e.type == NODE_UPDATE and e.node == "assistant" for e in batch):
            at_commit.append(len(ltm.list("default", namespace, include_history=True)))
        return real_append(thread_id, expected, batch)

    monkeypatch.setattr(events, "append", counting_checkpoint)

    def counting_checked(store, thread_id, expected, batch, run_id):  # type: ignore[no-untyped-def]
        if any(e.type == NODE_UPDATE and e.node == "assistant" for e in batch):
            at_commit.append(len(ltm.list("default", namespace, include_history=True)))
        return real_checked(store, thread_id, expected, batch, run_id)

    monkeypatch.setattr(runs, "append_and_cancelled", counting_checked)
    assert "Booking it." in ask(client, "dana", "I prefer window seats on long flights.")
    assert at_commit and set(at_commit) == {0}  # every checkpoint attempt saw long-term memory still empty
    stored = ltm.list("default", namespace)
    assert any(r.strategy == "preference" and "window seats" in r.text for r in stored)
    assert [e for e in observed if e.get("kind") == "memory_stored"]
