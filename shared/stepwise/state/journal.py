"""The per-step journal: every LLM call and tool call is appended to the thread's log *as it completes*,
under a key derived from the step's task key. A retried or resumed step looks the key up first and reads
the recorded result instead of calling again, so no completed call is ever repeated or paid twice."""

from __future__ import annotations

from typing import Any

from stepwise.errors import StateConflictError
from stepwise.state.events import Event
from stepwise.state.ports import DuplicateKeyError, EventStore

APPEND_ATTEMPTS = 50


class Journal:
    """Records a step's LLM and tool calls under idempotency keys, and finds them again on a retry."""

    def __init__(
        self, events: EventStore | None, *, thread_id: str, run_id: str, node: str, scope: str, fallback: list[Event] | None = None
    ) -> None:
        self.events = events
        self.thread_id, self.run_id, self.node, self.scope = thread_id, run_id, node, scope
        self.fallback = fallback if fallback is not None else []
        self._local: dict[str, Event] = {}

    def lookup(self, key: str) -> Event | None:
        if key in self._local:
            return self._local[key]
        if self.events is None:
            return None
        return self.events.by_key(self.thread_id, key)

    def record(self, kind: str, key: str, data: dict[str, Any]) -> Event:
        """Append now (at the head: journal entries never change state, so any position is fine)."""
        event = Event(type=kind, run_id=self.run_id, node=self.node, scope=self.scope, key=key, data=data)
        self._local[key] = event
        if self.events is None:  # no store (unit tests): the step appends it with the node's update
            self.fallback.append(event)
            return event
        for _ in range(APPEND_ATTEMPTS):
            head = self.events.head(self.thread_id)
            try:
                self.events.append(self.thread_id, head, [event])
                return event
            except StateConflictError:
                continue
            except DuplicateKeyError:  # a concurrent duplicate of this step recorded it first: use theirs
                found = self.events.by_key(self.thread_id, key)
                if found is not None:
                    self._local[key] = found
                    return found
        raise RuntimeError(f"could not journal {kind} {key!r}: too many concurrent writers")
