"""Retry row "memory query: 2×, fixed 100 ms, then cached/empty", with an injected outage."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepwise.memory.embedders import HashingEmbedder
from stepwise.memory.local import EmbeddedLongTermStore
from stepwise.memory.records import MemoryQuery
from stepwise.memory.resilient import ResilientMemory


class Flaky:
    """Wraps a real store; fails the next ``n`` searches (an injected outage)."""

    def __init__(self, store: EmbeddedLongTermStore) -> None:
        self.store, self.fail_next, self.calls = store, 0, 0

    def search(self, tenant: str, query: MemoryQuery):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ConnectionError("memory backend down")
        return self.store.search(tenant, query)


@pytest.fixture
def flaky(tmp_path: Path) -> Flaky:
    store = EmbeddedLongTermStore(tmp_path, embedder=HashingEmbedder())
    store.remember("acme", "acme/a/u", "The user prefers window seats.")
    return Flaky(store)


Q = MemoryQuery(text="window seats", namespaces=["acme/a/u"])


def test_two_retries_fixed_100ms_then_live(flaky: Flaky) -> None:
    waits: list[float] = []
    memory = ResilientMemory(flaky, sleep=waits.append)
    flaky.fail_next = 2
    hits = memory.search("acme", Q)
    assert [h.record.text for h in hits] == ["The user prefers window seats."]
    assert waits == [0.1, 0.1] and flaky.calls == 3 and memory.last is not None and memory.last.source == "live"


def test_outage_falls_back_to_cached_then_empty(flaky: Flaky) -> None:
    waits: list[float] = []
    memory = ResilientMemory(flaky, sleep=waits.append)
    live = memory.search("acme", Q)
    flaky.fail_next = 100
    assert memory.search("acme", Q) == live
    assert (
        memory.last is not None
        and memory.last.source == "cached"
        and memory.last.attempts == 3
        and "ConnectionError" in str(memory.last.error)
    )
    assert memory.search("acme", MemoryQuery(text="other", namespaces=["acme/a/u"])) == []
    assert memory.last.source == "empty"
    assert waits == [0.1] * 4
