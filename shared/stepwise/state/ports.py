"""Storage ports. A base class owns the protocol (encoding, conflict semantics); adapters implement primitives.

Adapters live beside this module: ``memory.py`` (tests), ``sqlite.py`` and ``files.py`` (the embedded
default), and the AWS adapters (DynamoDB, S3).
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import json
import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stepwise.errors import ConflictingRequestError, StateConflictError, StepwiseError, ThreadBusyError
from stepwise.state.events import RUN_STARTED, Event, decode, encode

Row = tuple[int, str, str, str | None, str, str | None, float, str]  # seq, type, run, node, scope, key, ts, data


ConflictError = StateConflictError  # the storage name of the one conflict error (Step Functions: Stepwise.StateConflict)


class DuplicateKeyError(StepwiseError, RuntimeError):
    """An event with this idempotency key is already in the log (the step already completed)."""


class EventStore(ABC):
    """Append-only, per-thread event log with optimistic concurrency on the sequence number."""

    def settle(self) -> None:
        """A run on this store just stopped (finished, failed or waits): a store may do upkeep now that it
        kept out of the run's steps (SQLite checkpoints its WAL). Nothing by default."""
        return None

    def quiet(self) -> None:
        """A node is about to wait on I/O (an LLM call): a store may do upkeep meanwhile, off the steps'
        path (SQLite checkpoints its WAL on a thread). Nothing by default."""
        return None

    def append(self, thread_id: str, expected_seq: int, events: Sequence[Event]) -> list[Event]:
        """Append after ``expected_seq``; raise StateConflictError if the head moved, DuplicateKeyError on a reused key."""
        self._insert(thread_id, expected_seq, self._numbered(events, expected_seq))
        return list(events)

    @staticmethod
    def _numbered(events: Sequence[Event], after: int) -> list[Row]:
        """Number the events after seq ``after`` and encode them as rows."""
        now = time.time()
        rows: list[Row] = []
        for offset, event in enumerate(events, start=1):
            event.seq = after + offset
            event.ts = event.ts or now
            rows.append((event.seq, event.type, event.run_id, event.node, event.scope, event.key, event.ts, encode(event.data)))
        return rows

    def append_at_head(self, thread_id: str, events: Sequence[Event], attempts: int = 50) -> list[Event]:
        """Append after whatever the head is now (for writers whose view other writers cannot change).
        Adapters that can read the head and insert in one transaction override this."""
        for _ in range(attempts):
            try:
                return self.append(thread_id, self.head(thread_id), events)
            except StateConflictError:
                continue
        raise StateConflictError(thread_id, self.head(thread_id))

    def read(self, thread_id: str, after: int = 0, upto: int | None = None) -> list[Event]:
        return [self._decode(r) for r in self._select(thread_id, after, upto)]

    def read_visible(self, thread_id: str, after: int, scopes: Collection[str]) -> tuple[list[Event], int]:
        """Events after ``after`` whose scope is in ``scopes`` (others are not even decoded), and the seq
        of the last event read of any scope: a Parallel branch skips its siblings' writes cheaply."""
        rows = self._select(thread_id, after, None)
        return [self._decode(r) for r in rows if r[4] in scopes], (rows[-1][0] if rows else after)

    def spend(self, thread_id: str, run_id: str, start: Callable[[], int]) -> tuple[float, int]:
        """(USD, tokens) of one run's ``llm_call`` events; ``start()`` gives the seq its run began at (events
        before it are not read). Adapters that can sum in the store override this."""
        cost, tokens = 0.0, 0
        for event in self.read(thread_id, after=max(0, start() - 1)):
            if event.type == "llm_call" and event.run_id == run_id:
                cost += float(event.data.get("cost_usd") or 0.0)
                tokens += int(event.data.get("input_tokens") or 0) + int(event.data.get("output_tokens") or 0)
        return cost, tokens

    def by_key(self, thread_id: str, key: str) -> Event | None:
        row = self._select_key(thread_id, key)
        return self._decode(row) if row else None

    @staticmethod
    def _decode(row: Row) -> Event:
        seq, kind, run_id, node, scope, key, ts, data = row
        return Event(type=kind, run_id=run_id, node=node, scope=scope, key=key, seq=seq, ts=ts, data=decode(data))

    @abstractmethod
    def head(self, thread_id: str) -> int: ...

    @abstractmethod
    def _insert(self, thread_id: str, expected_seq: int, rows: list[Row]) -> None: ...

    @abstractmethod
    def _select(self, thread_id: str, after: int, upto: int | None) -> list[Row]: ...

    @abstractmethod
    def _select_key(self, thread_id: str, key: str) -> Row | None: ...

    @abstractmethod
    def threads(self) -> list[str]: ...

    def size_bytes(self) -> int:
        """Bytes this store holds on its medium (for benchmarks and quotas); 0 when unknown."""
        return 0


class SnapshotStore(ABC):
    """The latest materialised main-scope state per thread: a cache of the fold, never the source of truth.

    ``incremental`` stores make a snapshot cost only what changed since the previous one, so the hydrator
    takes them often (bounding a cold reader's replay); the others cost O(state) each and are spaced out.
    ``appends`` names the channels whose reducer is the built-in ``append`` (a new value always starts
    with the old one), which an incremental store may write as just the new items. ``fresh_reads`` stores
    decode a new state on every ``latest`` (nobody else holds it), so the hydrator may fold a tail into it in
    place instead of copying lists per event."""

    incremental: bool = False
    fresh_reads: bool = False

    @abstractmethod
    def put(
        self,
        thread_id: str,
        seq: int,
        state: dict[str, Any],
        appends: frozenset[str] = frozenset(),
        *,
        reducers: Mapping[str, str] | None = None,
    ) -> None:
        """Store ``state`` at ``seq``. ``reducers``: the reducer names of the graph that wrote it (channel →
        name), which a store may keep beside the state so a cold reader folds its tail without the graph."""

    @abstractmethod
    def latest(self, thread_id: str, at_most: int | None = None) -> tuple[int, dict[str, Any]] | None: ...

    def latest_written(self, thread_id: str) -> tuple[int, dict[str, Any], Mapping[str, str] | None] | None:
        """``latest`` and the reducer names the snapshot was written with (None when the store does not keep
        them): what a cold reader folds the tail with when that tail starts no new run."""
        snap = self.latest(thread_id)
        return None if snap is None else (snap[0], snap[1], None)

    def settle(
        self,
        thread_id: str,
        seq: int,
        state: dict[str, Any],
        appends: frozenset[str] = frozenset(),
        *,
        reducers: Mapping[str, str] | None = None,
    ) -> None:
        """``put`` for a thread whose run just stopped: its next reader is a cold one. A store may spend more
        here to make that read cheaper (the file store folds a long chain of deltas into one record)."""
        self.put(thread_id, seq, state, appends, reducers=reducers)

    def size_bytes(self) -> int:
        return 0


RunStatus = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]


class RunRecord(BaseModel):
    """One run: its thread, graph version, status, owner and lease, and cost."""

    run_id: str
    thread_id: str
    graph_ref: str
    status: RunStatus = "running"
    input: dict[str, Any] = Field(default_factory=dict)
    start_cursor: dict[str, Any] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    waiting: dict[str, Any] | None = None
    execution_arn: str | None = None
    tenant: str = "default"
    steps: int = 0
    interrupt_id: str | None = None  # while waiting: which wait an answer must name (also in ``waiting``)
    owner: str | None = None  # the process executing it (host:pid:nonce) while running
    lease_until: float | None = None  # the owner renews it; past it the run is stale (see is_stale)
    cost_usd: float = 0.0  # LLM spend so far, summed from the run's llm_call events when it waits or ends
    tokens: int = 0  # LLM input + output tokens, likewise


class RunQuery(BaseModel):
    """One page of a tenant's runs, newest first. Stores answer it from an index on (tenant, created_at):
    SQLite an expression index, DynamoDB the ``tenant-created_at`` GSI; never by reading every run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(min_length=1, max_length=64)
    status: RunStatus | None = None
    agent: str | None = Field(default=None, min_length=1, max_length=80, pattern=r"^[^@#]+$", description="the graph name")
    since: float | None = Field(default=None, ge=0, description="created at or after (epoch seconds)")
    until: float | None = Field(default=None, ge=0, description="created before (epoch seconds)")
    min_cost: float | None = Field(default=None, ge=0, description="LLM spend at least this many USD")
    max_cost: float | None = Field(default=None, ge=0, description="LLM spend at most this many USD")
    thread_id: str | None = Field(default=None, max_length=200)
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=600, description="next_cursor of the previous page")

    def position(self) -> tuple[float, str] | None:
        """The (created_at, run_id) the previous page ended at; a ValueError names a bad cursor."""
        if self.cursor is None:
            return None
        try:
            created_at, run_id = json.loads(base64.urlsafe_b64decode(self.cursor.encode()))
            return float(created_at), str(run_id)
        except (ValueError, TypeError, binascii.Error):
            raise ValueError("cursor: not a next_cursor this API returned; start again without it") from None

    def matches(self, run: RunRecord) -> bool:
        """The filters in Python: for the in-memory store, and the residual after an index scan."""
        return (
            run.tenant == self.tenant
            and (self.status is None or run.status == self.status)
            and (self.agent is None or run.graph_ref.split("@", 1)[0] == self.agent)
            and (self.since is None or run.created_at >= self.since)
            and (self.until is None or run.created_at < self.until)
            and (self.min_cost is None or run.cost_usd >= self.min_cost)
            and (self.max_cost is None or run.cost_usd <= self.max_cost)
            and (self.thread_id is None or run.thread_id == self.thread_id)
        )


def page_cursor(run: RunRecord) -> str:
    """The opaque position after ``run`` in newest-first order (the same on every store)."""
    return base64.urlsafe_b64encode(json.dumps([run.created_at, run.run_id]).encode()).decode()


class RunPage(BaseModel):
    """A page of runs and where to continue."""

    runs: list[RunRecord]
    next_cursor: str | None = None


LEASE_SECONDS = 30.0  # a running run's owner renews its lease every third of this; past it, the run is stale
ACTIVE: tuple[RunStatus, ...] = ("running", "waiting")
#: A thread's runs that decide what starts next: those in flight (ACTIVE) and those queued behind them.
IN_LINE: tuple[RunStatus, ...] = (*ACTIVE, "queued")
QUEUED: tuple[RunStatus, ...] = ("queued",)
FINISHED: tuple[RunStatus, ...] = ("succeeded", "failed", "cancelled")


def in_line(statuses: Collection[str]) -> tuple[RunStatus, ...]:
    """``statuses`` checked for ``RunStore.in_flight`` (only those indexes hold: running, waiting, queued), in
    ``IN_LINE`` order; a ValueError names any other."""
    unknown = set(statuses) - set(IN_LINE)
    if unknown or not statuses:
        raise ValueError(f"in_flight reads runs that are {', '.join(IN_LINE)}; got {sorted(statuses)}")
    return tuple(s for s in IN_LINE if s in statuses)


def next_in_line(runs: Sequence[RunRecord]) -> RunRecord | None:
    """Of a thread's ``IN_LINE`` runs, oldest first: the oldest queued one if none is in flight, else None."""
    queued = [r for r in runs if r.status == "queued"]
    return queued[0] if queued and len(queued) == len(runs) else None


def queued_start(run: RunRecord) -> Event:
    """The ``run_started`` event of a queued run being started: its input and graph, as ``Stepwise.start`` writes."""
    return Event(type=RUN_STARTED, run_id=run.run_id, data={"update": dict(run.input or {}), "graph": run.graph_ref})


class RunTransitionError(ConflictingRequestError):
    """A compare-and-set on a run's status lost: the run was no longer in the expected status.
    The API answers it 409, the CLI with exit code 3; the run record itself is never overwritten."""

    error_name = "Stepwise.RunTransition"

    def __init__(self, run_id: str, status: str, expected: Collection[str]) -> None:
        why = "it has already ended" if status in FINISHED else "another request changed it first"
        super().__init__(f"run {run_id!r} is {status}, not {' or '.join(expected)}: {why}")
        self.run_id, self.status, self.expected = run_id, status, tuple(expected)


def is_stale(run: RunRecord, now: float | None = None) -> bool:
    """A running run whose owner stopped renewing its lease: its process died (or hangs)."""
    if run.status != "running":
        return False
    until = run.lease_until if run.lease_until is not None else run.updated_at + LEASE_SECONDS
    return until < (now if now is not None else time.time())


# Who owns a running run, and whether it is dead: beside ``is_stale`` because ``live_rivals`` below asks too
# (``leases.Heartbeat`` renews the owner's leases).
_owner: tuple[int, str] | None = None


def process_owner() -> str:
    """host:pid:nonce of this process (recomputed after a fork)."""
    global _owner
    if _owner is None or _owner[0] != os.getpid():
        _owner = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    return _owner[1]


def owner_gone(run: RunRecord) -> bool:
    """The run's owner was a process on this host that no longer exists: dead now, no need to wait
    for its lease to run out."""
    if run.status != "running" or not run.owner:
        return False
    host, _, rest = run.owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or run.owner == process_owner():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def is_dead(run: RunRecord, now: float | None = None) -> bool:
    """Stale (lease ran out) or owned by a process of this host that is gone."""
    return is_stale(run, now) or owner_gone(run)


TailCheck = tuple[list[Event], int, bool]  # a step's tail, the thread's head, whether its run is cancelled


class RunStore(ABC):
    """Run records. Every status change goes through ``update(..., expect=...)``, a compare-and-set:
    adapters make the check and the write one atomic operation (a transaction, a condition expression)."""

    @abstractmethod
    def put(self, run: RunRecord) -> None: ...

    @abstractmethod
    def get(self, run_id: str) -> RunRecord | None: ...

    @abstractmethod
    def list(self, *, thread_id: str | None = None, limit: int = 50) -> list[RunRecord]: ...

    def query(self, q: RunQuery) -> RunPage:
        """A page of a tenant's runs matching ``q``, newest first (ties by run_id). This default filters
        every run in Python, which only the in-memory store may use: adapters query an index."""
        position = q.position()
        chosen = sorted((r for r in self.list(limit=1 << 62) if q.matches(r)), key=lambda r: (r.created_at, r.run_id), reverse=True)
        if position is not None:
            chosen = [r for r in chosen if (r.created_at, r.run_id) < position]
        page = chosen[: q.limit]
        return RunPage(runs=page, next_cursor=page_cursor(page[-1]) if len(chosen) > q.limit else None)

    def update(
        self, run_id: str, *, expect: Collection[str] | None = None, expect_interrupt: str | None = None, **fields: Any
    ) -> RunRecord:
        """Set ``fields``; with ``expect``, only if the status is one of those, and with ``expect_interrupt``
        only if the run waits on that interrupt (else RunTransitionError). This default is not atomic:
        adapters override it (the in-memory one with a lock)."""
        run = self.get(run_id)
        if run is None:
            raise KeyError(run_id)
        check_expected(run, expect, expect_interrupt)
        updated = run.model_copy(update={**fields, "updated_at": time.time()})
        self.put(updated)
        return updated

    def graph_of(self, thread_id: str) -> str | None:
        """The graph ref of the thread's newest run (whose reducers fold the thread), or None."""
        runs = self.list(thread_id=thread_id, limit=1)
        return runs[0].graph_ref if runs else None

    def transition(self, run_id: str, *, expect: Collection[str] | None = None, expect_interrupt: str | None = None, **fields: Any) -> None:
        """``update`` for callers that do not need the record back (the engine's hot path, heartbeats):
        adapters may do it as one conditional write without reading or rebuilding the record."""
        self.update(run_id, expect=expect, expect_interrupt=expect_interrupt, **fields)

    def status(self, run_id: str) -> RunStatus | None:
        """The run's status alone (None: no such run); adapters may read it without the whole record."""
        run = self.get(run_id)
        return run.status if run is not None else None

    def tail_and_cancelled(self, events: EventStore, thread_id: str, after: int, scopes: Collection[str], run_id: str) -> TailCheck:
        """``events.read_visible(thread_id, after, scopes)`` and whether the run is cancelled: a step's read of
        its state's tail and its cancel check. Adapters whose run records and events share a database read both
        in one statement; this default makes two reads."""
        tail, head = events.read_visible(thread_id, after, scopes)
        return tail, head, self.status(run_id) == "cancelled"

    def append_and_cancelled(
        self, events: EventStore, thread_id: str, expected_seq: int, new: Sequence[Event], run_id: str
    ) -> tuple[builtins.list[Event], bool | None]:
        """``events.append(thread_id, expected_seq, new)``, and whether the run was cancelled as that append
        committed, where the store reads it in the same statement (None: not read). A step that got False may
        let the run's next step skip its read (``Services.heads``). This default reads nothing more."""
        return events.append(thread_id, expected_seq, new), None

    def tail_and_record(
        self, events: EventStore, thread_id: str, after: int, scopes: Collection[str], run_id: str
    ) -> tuple[builtins.list[Event], int, RunRecord | None]:
        """``events.read_visible(thread_id, after, scopes)`` and the run's record (None: no such run): what a run's
        result needs once it stops. Adapters whose run records and events share a database read both in one
        statement; this default makes two reads."""
        tail, head = events.read_visible(thread_id, after, scopes)
        return tail, head, self.get(run_id)

    def begin(
        self, record: RunRecord, events: EventStore, started: Event, cursor: Callable[[int], dict[str, Any]], *, new_thread: bool = False
    ) -> RunRecord:
        """Record a new run: its record (``running``), then — unless another live run is running on its thread,
        ThreadBusyError — its ``started`` event at the thread's head, and ``start_cursor = cursor(started.seq)``.
        ``new_thread``: the caller made the thread id up just now, so no run can be on it; an adapter may then
        skip the rivals check and put ``started`` at seq 1, raising StateConflictError (nothing written) if
        the id is taken after all, so the caller can pick another.

        This default makes separate writes: the record first, then the rivals check, so of two runs started on
        one thread at once exactly the later one steps back (its record marked failed); ``run_started`` goes at
        the head the check saw, so a queued run claimed in between (``claim_queued``) makes it look again.
        Adapters whose run records and events share a database do it all in one transaction."""
        self.put(record)
        for _ in range(50):
            head = events.head(record.thread_id)
            try:
                rivals = self.thread_runs(record.thread_id, ("running",)) + self.recent_rivals(events, record.thread_id, head)
                live_rivals(rivals, record)
            except ThreadBusyError as exc:
                self.update(
                    record.run_id, status="failed", finished_at=time.time(), error={"error": "Stepwise.ThreadBusy", "cause": str(exc)}
                )
                raise
            try:  # at exactly the head the check saw: a queued run claimed meanwhile (claim_queued) moved it
                events.append(record.thread_id, head, [started])
                break
            except StateConflictError:
                continue
        else:
            events.append_at_head(record.thread_id, [started])
        return self.update(record.run_id, start_cursor=cursor(started.seq))

    def end(self, events: EventStore, thread_id: str, final: Event, *, expect: Collection[str], **fields: Any) -> None:
        """A run's last writes: if its status is one of ``expect``, append ``final`` (``run_finished`` or
        ``run_failed``, keyed: a replay finds it there already) and set ``fields`` plus its LLM spend
        (``cost_usd``, ``tokens``) on the record. Otherwise RunTransitionError (KeyError: no such run),
        and nothing is written.

        This default makes separate writes, the event first: a crash between them leaves a running record,
        whose replay writes the record. Adapters whose run records and events share a database make the
        check, the event, the spend and the record one transaction."""
        status = self.status(final.run_id)
        if status is None:
            raise KeyError(final.run_id)
        if status not in expect:
            raise RunTransitionError(final.run_id, status, expect)
        with contextlib.suppress(DuplicateKeyError):  # a replay: already recorded
            events.append_at_head(thread_id, [final])

        def start() -> int:
            run = self.get(final.run_id)
            return int((run.start_cursor if run is not None else {}).get("seq", 0) or 0)

        cost, tokens = events.spend(thread_id, final.run_id, start)
        self.transition(final.run_id, expect=expect, **fields, cost_usd=round(cost, 9), tokens=tokens)

    def thread_runs(self, thread_id: str, statuses: Collection[str]) -> builtins.list[RunRecord]:
        """Every run on the thread in one of ``statuses``, oldest first (ties by run_id), with no page limit.
        This default filters ``list``; adapters read the thread's index with the filter in the query."""
        runs = (r for r in self.list(thread_id=thread_id, limit=1 << 62) if r.status in statuses)
        return sorted(runs, key=lambda r: (r.created_at, r.run_id))

    def queued_threads(self, limit: int = 1000) -> builtins.list[str]:
        """Threads (of every tenant) with a queued run, for a drainer that sweeps. This default reads
        ``in_flight(("queued",))`` (on DynamoDB, the ``queued#*`` partitions of the sparse index, not a Scan);
        adapters may read an index of queued runs directly."""
        return sorted({r.thread_id for r in self.in_flight(QUEUED)})[:limit]

    def in_flight(self, statuses: Collection[RunStatus] = ACTIVE) -> Iterator[RunRecord]:
        """EVERY run (of every tenant) whose status is one of ``statuses`` (a subset of ``IN_LINE``: running,
        waiting, queued), oldest first (by created_at, then run_id): what recovery and the queued sweep read.
        Never truncated: adapters page through an index that holds only such runs (SQLite a partial index,
        DynamoDB a sparse GSI), so the cost follows the runs in flight, not the table. This default filters
        every run in Python, which only the in-memory store may use."""
        wanted = in_line(statuses)
        runs = (r for r in self.list(limit=1 << 62) if r.status in wanted)
        yield from sorted(runs, key=lambda r: (r.created_at, r.run_id))

    def backfill_in_flight_index(self) -> int:
        """Put the runs in flight that ``in_flight``'s index does not hold yet (written before it existed) into
        it; returns how many. Here and on SQLite (whose partial index covers existing rows when created) there
        are none; DynamoDB marks runs that lack the sparse index's attribute."""
        return 0

    def recent_rivals(self, events: EventStore, thread_id: str, head: int) -> builtins.list[RunRecord]:
        """Runs on the thread that ``thread_runs`` may not show yet (begun or claimed a moment ago, on a store
        whose thread index lags its table): checked with them by ``begin`` and ``claim_queued``. None here."""
        return []

    def claim_queued(
        self, events: EventStore, thread_id: str, cursor: Callable[[RunRecord, int], dict[str, Any]], **fields: Any
    ) -> RunRecord | None:
        """Double texting ``enqueue``'s drain step: if nothing is in flight on the thread (no run running or
        waiting), start its oldest queued run — ``queued`` -> ``running`` with ``fields`` (the lease), its
        ``run_started`` event at the head and ``start_cursor = cursor(run, seq)`` — and return it; else None.

        The rivals check and the claim must be one atomic step, or a run begun in between (``reject``,
        ``interrupt``) runs beside the drained one. This default makes it optimistic on the event log: it reads
        the head, checks, then writes ``run_started`` at exactly head + 1 together with the compare-and-set
        (``_claim``); a rival's ``begin`` writes its own ``run_started`` the same way, so of the two one
        finds the head moved, looks again and sees the other running. SQLite does it in one transaction."""
        for _ in range(50):
            head = events.head(thread_id)
            run = next_in_line(self.thread_runs(thread_id, IN_LINE))
            if run is None or any(r.status in ACTIVE for r in self.recent_rivals(events, thread_id, head)):
                return None
            try:
                return self._claim(events, run, head, queued_start(run), cursor, fields)
            except (StateConflictError, RunTransitionError):  # the thread moved or another drainer won: look again
                continue
        return None

    def _claim(
        self,
        events: EventStore,
        run: RunRecord,
        head: int,
        started: Event,
        cursor: Callable[[RunRecord, int], dict[str, Any]],
        fields: dict[str, Any],
    ) -> RunRecord:
        """Claim ``run`` if the thread's head is still ``head``. This default is two writes (for the in-memory
        store): the compare-and-set, then the event at head + 1; if the head moved, the claim is undone."""
        self.update(run.run_id, expect=("queued",), status="running", **fields)
        try:
            events.append(run.thread_id, head, [started])
        except StateConflictError:
            self.update(run.run_id, expect=("running",), status="queued", **dict.fromkeys(fields))
            raise
        return self.update(run.run_id, start_cursor=cursor(run, started.seq))

    # Task tokens: the local engine's stand-in for Step Functions' SendTaskSuccess.
    @abstractmethod
    def complete_token(self, token: str, output: dict[str, Any]) -> None: ...

    @abstractmethod
    def token_output(self, token: str) -> dict[str, Any] | None: ...


def live_rivals(others: Iterable[RunRecord], mine: RunRecord | None) -> None:
    """Raise ThreadBusyError if one of ``others`` (runs on ``mine``'s thread) is running with a live owner and,
    once ``mine`` is recorded, started before it."""
    for other in others:
        if other.status != "running" or is_dead(other) or (mine is not None and other.run_id == mine.run_id):
            continue
        if mine is None or (other.created_at, other.run_id) < (mine.created_at, mine.run_id):
            raise ThreadBusyError(
                f"thread {other.thread_id!r} is busy: run {other.run_id} is running on it; wait for it to finish "
                f"(`stepwise runs --thread {other.thread_id}`) or use another thread"
            )


def check_expected(run: RunRecord, expect: Collection[str] | None, expect_interrupt: str | None = None) -> None:
    if expect is not None and run.status not in expect:
        raise RunTransitionError(run.run_id, run.status, expect)
    if expect_interrupt is not None and run.interrupt_id != expect_interrupt:
        raise RunTransitionError(run.run_id, f"{run.status} (at interrupt {run.interrupt_id})", [f"waiting at {expect_interrupt}"])


class Registry(ABC):
    """Graph versions by immutable ref (``name@hash``), plus a name -> latest ref alias."""

    @abstractmethod
    def put(self, ref: str, name: str, spec: dict[str, Any], asl: dict[str, Any]) -> None: ...

    @abstractmethod
    def get(self, ref: str) -> tuple[dict[str, Any], dict[str, Any]] | None: ...

    @abstractmethod
    def latest(self, name: str) -> str | None: ...

    def spec(self, ref: str) -> dict[str, Any] | None:
        """The canonical spec of ``ref`` alone (readers that need its reducers, not its ASL)."""
        found = self.get(ref)
        return found[0] if found is not None else None
