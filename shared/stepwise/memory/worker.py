"""Background consolidation: one pass over the threads agents registered (``consolidate.PENDING_KEY``).

Used by ``stepwise memory consolidate``, by the opt-in worker thread of ``stepwise serve``
(``--memory-worker`` or ``STEPWISE_MEMORY_WORKER=1``) and by the consolidation Lambda on AWS, which
EventBridge invokes on a schedule. A thread's messages are re-read from its event log (the source of
truth), so a pass works even after the STM cache was lost.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from stepwise.memory.consolidate import ConsolidationReport, consolidate_pending
from stepwise.memory.service import MemoryServices
from stepwise.memory.stm import messages_from_events

log = logging.getLogger("stepwise.memory")


def run_pass(memory: MemoryServices, events: Any = None, limit: int = 100) -> list[ConsolidationReport]:
    def messages_of(tenant: str, thread_id: str) -> list[dict[str, Any]] | None:
        if events is None:
            return None
        found = messages_from_events(events.read(thread_id))
        return found or None

    return consolidate_pending(memory.valkey, memory.stm, memory.ltm, messages_of=messages_of, limit=limit)


class ConsolidationWorker(threading.Thread):
    """A daemon thread that runs a pass every ``interval`` seconds until ``stop()``."""

    def __init__(self, memory: MemoryServices, events: Any = None, interval: float = 60.0) -> None:
        super().__init__(name="stepwise-memory-consolidation", daemon=True)
        self.memory, self.events, self.interval = memory, events, interval
        self._stop_event = threading.Event()
        self.passes = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                reports = run_pass(self.memory, self.events)
                if reports:
                    log.info("consolidated %d thread(s)", len(reports))
            except Exception:  # the worker keeps going; the next pass retries
                log.exception("memory consolidation pass failed")
            self.passes += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
