"""In-memory adapters for every state port: for tests and for the no-persistence benchmark mode."""

from __future__ import annotations

import copy
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from stepwise.errors import StateConflictError
from stepwise.state.events import Event
from stepwise.state.ports import DuplicateKeyError, EventStore, Registry, Row, RunRecord, RunStore, SnapshotStore


class MemoryEventStore(EventStore):
    """The event log in this process's memory."""

    def __init__(self) -> None:
        self._rows: dict[str, list[Row]] = {}
        self._keys: dict[tuple[str, str], Row] = {}
        self._lock = threading.Lock()

    def head(self, thread_id: str) -> int:
        rows = self._rows.get(thread_id)
        return rows[-1][0] if rows else 0

    def _insert(self, thread_id: str, expected_seq: int, rows: list[Row]) -> None:
        with self._lock:
            if self.head(thread_id) != expected_seq:
                raise StateConflictError(thread_id, expected_seq)
            self._insert_unlocked(thread_id, rows)

    def _insert_unlocked(self, thread_id: str, rows: list[Row]) -> None:
        for row in rows:
            if row[5] is not None and (thread_id, row[5]) in self._keys:
                raise DuplicateKeyError(row[5])
        self._rows.setdefault(thread_id, []).extend(rows)
        for row in rows:
            if row[5] is not None:
                self._keys[(thread_id, row[5])] = row

    def append_at_head(self, thread_id: str, events: Sequence[Event], attempts: int = 50) -> list[Event]:
        with self._lock:
            self._insert_unlocked(thread_id, self._numbered(events, self.head(thread_id)))
        return list(events)

    def _select(self, thread_id: str, after: int, upto: int | None) -> list[Row]:
        rows = self._rows.get(thread_id, [])
        # seqs are dense from 1, so the row for seq s sits at index s - 1
        return rows[after : upto if upto is not None else None]

    def _select_key(self, thread_id: str, key: str) -> Row | None:
        return self._keys.get((thread_id, key))

    def threads(self) -> list[str]:
        return sorted(self._rows)

    def size_bytes(self) -> int:
        return sum(len(r[7]) + 64 for rows in self._rows.values() for r in rows)


class MemorySnapshotStore(SnapshotStore):
    """Snapshots in this process's memory."""

    def __init__(self) -> None:
        self._snaps: dict[str, tuple[int, dict[str, Any]]] = {}

    incremental = True  # a put keeps a reference: O(1)

    def put(
        self,
        thread_id: str,
        seq: int,
        state: dict[str, Any],
        appends: frozenset[str] = frozenset(),
        *,
        reducers: Mapping[str, str] | None = None,
    ) -> None:
        self._snaps[thread_id] = (seq, state)  # states are never mutated in place, so no copy is needed

    def latest(self, thread_id: str, at_most: int | None = None) -> tuple[int, dict[str, Any]] | None:
        snap = self._snaps.get(thread_id)
        if snap is None or (at_most is not None and snap[0] > at_most):
            return None
        return snap


class MemoryRunStore(RunStore):
    """Run records in this process's memory."""

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._tokens: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def update(
        self, run_id: str, *, expect: Collection[str] | None = None, expect_interrupt: str | None = None, **fields: Any
    ) -> RunRecord:
        with self._lock:  # check and write as one step
            return super().update(run_id, expect=expect, expect_interrupt=expect_interrupt, **fields)

    def put(self, run: RunRecord) -> None:
        self._runs[run.run_id] = run.model_copy(deep=True)

    def get(self, run_id: str) -> RunRecord | None:
        run = self._runs.get(run_id)
        return run.model_copy(deep=True) if run else None

    def list(self, *, thread_id: str | None = None, limit: int = 50) -> list[RunRecord]:
        runs = [r for r in self._runs.values() if thread_id is None or r.thread_id == thread_id]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)[:limit]

    def complete_token(self, token: str, output: dict[str, Any]) -> None:
        self._tokens[token] = copy.deepcopy(output)

    def token_output(self, token: str) -> dict[str, Any] | None:
        return self._tokens.get(token)


class MemoryRegistry(Registry):
    """Graph versions in this process's memory."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._latest: dict[str, str] = {}

    def put(self, ref: str, name: str, spec: dict[str, Any], asl: dict[str, Any]) -> None:
        self._items.setdefault(ref, (spec, asl))  # versions are immutable: the first write wins
        self._latest[name] = ref

    def get(self, ref: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        return self._items.get(ref)

    def latest(self, name: str) -> str | None:
        return self._latest.get(name)
