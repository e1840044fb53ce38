"""The retry table's memory row: "memory query: 2×, fixed 100 ms, then use cached/empty".

``ResilientMemory`` wraps a long-term store's ``search``: a failing query is retried twice, 100 ms apart
(``sleep`` is injectable so tests never really wait); if it still fails, the last good answer to the same
query (an in-process LRU) is returned, else an empty list, and ``degraded`` records why. A memory outage
therefore never fails a run — it only makes the agent forget for a turn.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from stepwise.memory.records import MemoryHit, MemoryQuery

log = logging.getLogger("stepwise.memory")
T = TypeVar("T")

RETRIES = 2
INTERVAL_SECONDS = 0.1


@dataclass
class Outcome:
    """A memory read's value and where it came from (live, cached, empty)."""

    value: Any
    attempts: int
    source: str  # "live" | "cached" | "empty"
    error: str | None = None


def with_retry(
    call: Callable[[], T],
    *,
    fallback: Callable[[], tuple[T, str]],
    retries: int = RETRIES,
    interval: float = INTERVAL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Run ``call`` with ``retries`` fixed-interval retries; on final failure return ``fallback()``."""
    error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return Outcome(call(), attempt + 1, "live")
        except Exception as exc:  # noqa: BLE001 - any backend failure degrades, never fails the run
            error = exc
            if attempt < retries:
                sleep(interval)
    value, source = fallback()
    log.warning("memory unavailable after %d attempts (%s); using %s result", retries + 1, type(error).__name__, source)
    return Outcome(value, retries + 1, source, f"{type(error).__name__}: {error}")


class ResilientMemory:
    """Memory reads that retry, then fall back to the last good answer, never failing a run."""

    def __init__(self, store: Any, *, sleep: Callable[[float], None] = time.sleep, cache_size: int = 256) -> None:
        self.store, self.sleep, self.cache_size = store, sleep, cache_size
        self._cache: OrderedDict[str, list[MemoryHit]] = OrderedDict()
        self._lock = threading.Lock()
        self.last: Outcome | None = None

    @staticmethod
    def _key(tenant: str, query: MemoryQuery) -> str:
        return hashlib.sha256(f"{tenant}\x1f{query.model_dump_json()}".encode()).hexdigest()

    def search(self, tenant: str, query: MemoryQuery) -> list[MemoryHit]:
        key = self._key(tenant, query)

        def cached() -> tuple[list[MemoryHit], str]:
            with self._lock:
                found = self._cache.get(key)
            return (list(found), "cached") if found is not None else ([], "empty")

        outcome = with_retry(lambda: self.store.search(tenant, query), fallback=cached, sleep=self.sleep)
        if outcome.source == "live":
            with self._lock:
                self._cache[key] = list(outcome.value)
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        self.last = outcome
        return list(outcome.value)
