"""Hydration: state = latest snapshot + fold of the tail, with a warm in-process cache.

The cache maps (thread, frames) to (seq, state). It is only a shortcut: every read still fetches the
events after the cached seq, so a writer in another process can never be missed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import lru_cache
from typing import Any

from stepwise.state.events import FORKED, ROLLED_BACK, RUN_STARTED, Event
from stepwise.state.fold import Frames, fold, visible_scopes
from stepwise.state.ports import EventStore, SnapshotStore
from stepwise.state.reducers import LazyReducers

CacheKey = tuple[str, tuple[tuple[str, int], ...]]
CADENCE = 16  # an incremental store snapshots a thread every this many events: a cold reader mid-run replays fewer


class Hydrator:
    """Rebuilds a thread's state from its latest snapshot plus the events after it."""

    def __init__(
        self,
        events: EventStore,
        snapshots: SnapshotStore,
        *,
        snapshot_every: int = 200,
        incremental_every: int = CADENCE,
        cache_size: int = 512,
    ) -> None:
        self.events = events
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every
        self.incremental_every = incremental_every
        self._cache: OrderedDict[CacheKey, tuple[int, dict[str, Any]]] = OrderedDict()
        self._cache_size = cache_size
        self._last_snapshot: dict[str, int] = {}
        self._lock = threading.Lock()  # Parallel branches hydrate from several threads

    @staticmethod
    def _key(thread_id: str, frames: Frames) -> CacheKey:
        return thread_id, tuple((str(s), int(b)) for s, b in frames)

    def state(
        self,
        thread_id: str,
        reducers: Mapping[str, str],
        frames: Frames = (),
        at: int | None = None,
        *,
        idle: bool = False,
        read: Callable[[int, Collection[str]], tuple[list[Event], int]] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """The state visible to ``frames`` at seq ``at`` (default: the head), and that seq. ``idle``: the
        thread's run just stopped (see ``remember``). ``read(after, scopes)``: reads the tail in place of
        ``events.read_visible`` (a step reads its run's status in the same statement)."""
        if at is not None:
            return self._state_at(thread_id, reducers, frames, at)
        cached = self._cached(self._key(thread_id, frames))
        owned: dict[str, list[Any]] | None = None
        written: Mapping[str, str] | None = None
        if cached is not None:
            seq, state = cached
        elif frames:
            seq, state = self._state_at(thread_id, reducers, (), int(frames[0][1]))
        else:
            seq, state, owned, written = self._cold(thread_id)
        tail, head = read(seq, visible_scopes(frames)) if read else self.events.read_visible(thread_id, seq, visible_scopes(frames))
        if tail:
            if written is not None and isinstance(reducers, LazyReducers) and not any(e.type in _NEW_GRAPH for e in tail):
                reducers = written  # the tail continues the run that wrote the snapshot: fold it with that graph's reducers
            state = fold(state, tail, reducers, frames, self._lookup(thread_id, tail), owned)
        if cached is None or tail or head > seq:  # else nothing is new since the cached state: it stays as it is
            seq = max(seq, head)
            self.remember(thread_id, frames, seq, state, reducers, idle=idle)
        if idle:
            self.events.settle()  # the store's upkeep (a WAL checkpoint) after the run, not inside its steps
        return seq, state

    def _state_at(self, thread_id: str, reducers: Mapping[str, str], frames: Frames, at: int) -> tuple[int, dict[str, Any]]:
        if frames:
            base = int(frames[0][1])
            _, state = self._state_at(thread_id, reducers, (), min(base, at))
            tail = self.events.read(thread_id, after=base, upto=at) if at > base else []
            return at, fold(state, tail, reducers, frames, self._lookup(thread_id, tail))
        cached = self._cached(self._key(thread_id, ()))
        if cached is not None and cached[0] == at:  # the common case: a branch forking from the latest state
            return cached
        seq, state = self._from_snapshot(thread_id, at)
        if cached is not None and seq < cached[0] <= at:
            seq, state = cached
        tail = self.events.read(thread_id, after=seq, upto=at)
        return at, fold(state, tail, reducers, frames, self._lookup(thread_id, tail))

    def _cached(self, key: CacheKey) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            return self._cache.get(key)

    def _cold(self, thread_id: str) -> tuple[int, dict[str, Any], dict[str, list[Any]] | None, Mapping[str, str] | None]:
        """The latest snapshot, what of it the tail fold may update in place, and the reducer names it was
        written with. A state decoded for this read alone (or the empty state) belongs to it, so appending
        the tail extends its lists instead of copying them once per event (at N=1000 that copy was a fifth
        of a cold read). The names let a reader mid-run fold its tail without looking up the thread's graph
        (its run record, then the registered spec: two statements and a decode)."""
        snap = self.snapshots.latest_written(thread_id)
        if snap is None:
            return 0, {}, {}, None
        seq, state, written = snap
        self._last_snapshot.setdefault(thread_id, seq)
        if not self.snapshots.fresh_reads:
            return seq, state, None, written
        return seq, state, {c: v for c, v in state.items() if type(v) is list}, written

    def _from_snapshot(self, thread_id: str, at_most: int | None) -> tuple[int, dict[str, Any]]:
        snap = self.snapshots.latest(thread_id, at_most)
        if snap is None:
            return 0, {}
        self._last_snapshot.setdefault(thread_id, snap[0])
        return snap

    def _lookup(self, thread_id: str, loaded: Sequence[Event]):  # type: ignore[no-untyped-def]
        """Find a join's referenced events: in the loaded tail, else read (unfiltered) from the store."""
        by_seq = {e.seq: e for e in loaded}

        def lookup(seq: int) -> Event:
            event = by_seq.get(seq)
            if event is None:
                upper = max(by_seq) if by_seq else None
                for e in self.events.read(thread_id, after=seq - 1, upto=upper):
                    by_seq.setdefault(e.seq, e)
                event = by_seq[seq]
            return event

        return lookup

    def remember(
        self,
        thread_id: str,
        frames: Frames,
        seq: int,
        state: dict[str, Any],
        reducers: Mapping[str, str] | None = None,
        *,
        idle: bool = False,
    ) -> None:
        """Cache a state the caller computed itself (after its own append), and snapshot the main scope.
        ``idle``: the thread's run just stopped (finished, failed or waiting), so the thread will next be read
        cold (a resume, a state read, another process): an incremental store then snapshots whatever is new,
        so that reader replays nothing (threads shorter than the cadence are left to their short log)."""
        key = self._key(thread_id, frames)
        with self._lock:
            self._cache[key] = (seq, state)
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if frames:
            return
        last = self._last_snapshot.get(thread_id, 0)
        if self.snapshots.incremental:
            # A snapshot costs only what changed since the last one, so take one every few dozen events: a cold
            # reader then replays at most that many, whatever the thread's length.
            # A stopped run's thread is next read cold (a resume, a state read): snapshot it now, unless it is
            # shorter than the cadence (its cold reader replays fewer than ``incremental_every`` events anyway).
            due = seq - last >= self.incremental_every or (idle and seq > last and seq >= self.incremental_every)
        else:
            # Intervals grow by half (K, K, K, 1.5K, 2.25K, …): a whole-state write costs O(state) each time, so
            # geometric intervals keep total snapshot work linear in the run (a cold read replays ≤ 1/3 of the log).
            due = seq - last >= max(self.snapshot_every, last // 2)
        if due:
            appends = _appends(reducers) if reducers is not None else frozenset()
            (self.snapshots.settle if idle else self.snapshots.put)(thread_id, seq, state, appends, reducers=reducers)
            self._last_snapshot[thread_id] = seq

    def forget(self, thread_id: str) -> None:
        with self._lock:
            for key in [k for k in self._cache if k[0] == thread_id]:
                del self._cache[key]


_NEW_GRAPH = frozenset({RUN_STARTED, FORKED, ROLLED_BACK})  # a tail with one of these may belong to another graph


@lru_cache(maxsize=256)
def _append_channels(items: tuple[tuple[str, str], ...]) -> frozenset[str]:
    return frozenset(channel for channel, reducer in items if reducer == "append")


def _appends(reducers: Mapping[str, str]) -> frozenset[str]:
    return _append_channels(tuple(sorted(reducers.items())))
