"""Hydration: state = latest snapshot + fold of the tail, with a warm in-process cache.

The cache maps (thread, frames) to (seq, state). It is only a shortcut: every read still fetches the
events after the cached seq, so a writer in another process can never be missed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from stepwise.state.events import Event
from stepwise.state.fold import Frames, fold
from stepwise.state.ports import EventStore, SnapshotStore

CacheKey = tuple[str, tuple[tuple[str, int], ...]]


class Hydrator:
    def __init__(self, events: EventStore, snapshots: SnapshotStore, *, snapshot_every: int = 200, cache_size: int = 512) -> None:
        self.events = events
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every
        self._cache: OrderedDict[CacheKey, tuple[int, dict[str, Any]]] = OrderedDict()
        self._cache_size = cache_size
        self._last_snapshot: dict[str, int] = {}

    @staticmethod
    def _key(thread_id: str, frames: Frames) -> CacheKey:
        return thread_id, tuple((str(s), int(b)) for s, b in frames)

    def state(self, thread_id: str, reducers: Mapping[str, str], frames: Frames = (), at: int | None = None) -> tuple[int, dict[str, Any]]:
        """The state visible to ``frames`` at seq ``at`` (default: the head), and that seq."""
        if at is not None:
            return self._state_at(thread_id, reducers, frames, at)
        key = self._key(thread_id, frames)
        cached = self._cache.get(key)
        if cached is None:
            if frames:
                base = int(frames[0][1])
                seq, state = self.state(thread_id, reducers, (), at=base)
            else:
                seq, state = self._from_snapshot(thread_id, None)
        else:
            seq, state = cached
        tail = self.events.read(thread_id, after=seq)
        if tail:
            state = fold(state, tail, reducers, frames, self._lookup(thread_id, tail))
            seq = tail[-1].seq
        self.remember(thread_id, frames, seq, state)
        return seq, state

    def _state_at(self, thread_id: str, reducers: Mapping[str, str], frames: Frames, at: int) -> tuple[int, dict[str, Any]]:
        if frames:
            base = int(frames[0][1])
            _, state = self._state_at(thread_id, reducers, (), min(base, at))
            tail = self.events.read(thread_id, after=base, upto=at) if at > base else []
        else:
            seq, state = self._from_snapshot(thread_id, at)
            cached = self._cache.get(self._key(thread_id, ()))
            if cached is not None and seq < cached[0] <= at:
                seq, state = cached
            tail = self.events.read(thread_id, after=seq, upto=at)
        return at, fold(state, tail, reducers, frames, self._lookup(thread_id, tail))

    def _from_snapshot(self, thread_id: str, at_most: int | None) -> tuple[int, dict[str, Any]]:
        snap = self.snapshots.latest(thread_id, at_most)
        if snap is None:
            return 0, {}
        self._last_snapshot.setdefault(thread_id, snap[0])
        return snap

    def _lookup(self, thread_id: str, loaded: Sequence[Event]):  # type: ignore[no-untyped-def]
        by_seq = {e.seq: e for e in loaded}

        def lookup(seq: int) -> Event:
            event = by_seq.get(seq)
            if event is None:  # a join that references events before the loaded window
                first = min(by_seq) if by_seq else seq + 1
                for e in self.events.read(thread_id, after=seq - 1, upto=first - 1):
                    by_seq[e.seq] = e
                event = by_seq[seq]
            return event

        return lookup

    def remember(self, thread_id: str, frames: Frames, seq: int, state: dict[str, Any]) -> None:
        """Cache a state the caller computed itself (after its own append), and snapshot the main scope."""
        key = self._key(thread_id, frames)
        self._cache[key] = (seq, state)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        if not frames and seq - self._last_snapshot.get(thread_id, 0) >= self.snapshot_every:
            self.snapshots.put(thread_id, seq, state)
            self._last_snapshot[thread_id] = seq

    def forget(self, thread_id: str) -> None:
        for key in [k for k in self._cache if k[0] == thread_id]:
            del self._cache[key]
