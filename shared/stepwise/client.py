"""The local client: register graphs, start and resume runs, read and fork threads — on embedded defaults.

Runs execute the compiled ASL in the local interpreter, with the stateless step in-process: the very
document that deploys to Step Functions.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from stepwise.asl.interpreter import Clock, ExecutionResult
from stepwise.errors import (
    AnswerError,
    ConflictingRequestError,
    RunBusyError,
    StaleAnswerError,
    StateConflictError,
    StepwiseError,
    WaitTimedOutError,
)
from stepwise.errors import ThreadBusyError as ThreadBusyError  # raised by RunStore.begin; importable from here
from stepwise.executors.base import Executor
from stepwise.executors.local import LocalExecutor
from stepwise.graph import limits
from stepwise.graph.answers import answer_problems, example
from stepwise.graph.spec import END, GraphSpec
from stepwise.graph.topology import is_end, locate, topology
from stepwise.memory.settings import MemorySettings
from stepwise.runtime.graph_cache import reducers_of
from stepwise.runtime.services import Observer, Services
from stepwise.runtime.step import Cursor, resume_step
from stepwise.settings import Settings
from stepwise.state import fold as folding
from stepwise.state import reducers as reducing
from stepwise.state.events import FORKED, INTERRUPT, JOIN, NODE_UPDATE, ROLLED_BACK, RUN_FAILED, RUN_STARTED, Event
from stepwise.state.files import FileSnapshotStore
from stepwise.state.memory import MemoryEventStore, MemoryRegistry, MemoryRunStore, MemorySnapshotStore
from stepwise.state.ports import (
    ACTIVE,
    FINISHED,
    IN_LINE,
    RunPage,
    RunQuery,
    RunRecord,
    RunStatus,
    RunTransitionError,
    is_dead,
    next_in_line,
    process_owner,
)
from stepwise.state.reducers import LazyReducers, ReducerError
from stepwise.state.sqlite import SqliteDatabase, SqliteEventStore, SqliteRegistry, SqliteRunStore
from stepwise.state.waits import TIMEOUT_ERROR, deadline_of, describe_deadline, is_overdue, timed_out, timeout_message
from stepwise.tools.settings import ToolSettings

if TYPE_CHECKING:
    from stepwise.runtime.ports import MemoryPort


@dataclass
class RunResult:
    """How a run stands when ``run``/``resume`` return: ``succeeded``, ``failed`` or ``waiting`` (a human node),
    with the thread's state at that point."""

    run_id: str
    thread_id: str
    status: str
    state: dict[str, Any]
    error: dict[str, Any] | None = None
    waiting: dict[str, Any] | None = None
    transitions: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_id": self.run_id, "thread_id": self.thread_id, "status": self.status, "state": self.state}
        if self.error:
            out["error"] = self.error
        if self.waiting:
            out["waiting"] = {"node": self.waiting.get("node"), "prompt": self.waiting.get("prompt")}
            deadline = deadline_of(self.waiting)
            if deadline is not None:  # config.timeout_seconds: unanswered by then, the run fails with States.Timeout
                out["waiting"]["deadline"] = deadline
        return out


#: Double texting: what a new run does on a thread with runs in flight (``Stepwise.make_room``).
#: A rolled-back run's ``error.error``: its writes are discarded (a ``rolled_back`` event restates the thread).
ROLLED_BACK_ERROR = "Stepwise.RolledBack"
Multitask = Literal["reject", "enqueue", "interrupt", "rollback"]
MULTITASK: tuple[str, ...] = get_args(Multitask)


def _admit(value: Any, what: str, lim: limits.Limits | None = None) -> None:
    """Inputs must be storable: bounded depth and integers, valid Unicode (see graph/limits.py)."""
    try:
        limits.check_value(value, lim, what=what)
    except limits.LimitError as exc:
        raise StepwiseError(str(exc)) from None


def _admit_new_run(input: Any, thread_id: str | None, lim: limits.Limits | None) -> None:
    """What a new run (started or queued) is given: a storable JSON object, and a thread id that is not blank."""
    if input is not None and not isinstance(input, dict):
        raise StepwiseError(f"the input must be a JSON object (the initial state), got {type(input).__name__}")
    if thread_id is not None and not thread_id.strip():  # it started a new thread under a made-up id
        raise StepwiseError("thread_id is empty: pass a thread's id (an existing one, or a new one to start it) or None")
    _admit(input, "the input", lim)


def default_home() -> Path:
    """``STEPWISE_HOME`` (default ``.stepwise``): where the embedded backend keeps its database and snapshots."""
    return Settings.from_env().home


def check_answer(root: GraphSpec, run_id: str, node: str, answer: dict[str, Any] | None) -> None:
    """Refuse an answer that does not fit the human node ``node`` (``outer/inner`` inside subgraphs)."""
    spec, local = locate(root, node)
    problems = answer_problems(spec, local, answer)
    if problems:
        raise AnswerError(run_id, node, problems, example(spec, local))


class Stepwise:
    """The client: register graphs, run and resume them, and read, time-travel and fork their threads.

    Backends: ``Stepwise.embedded(home)`` keeps everything in SQLite and files under ``home``
    (default ``$STEPWISE_HOME`` or ``./.stepwise``); ``Stepwise.in_memory()`` keeps nothing; for AWS
    (DynamoDB, S3, Step Functions) use ``stepwise.build_client(Settings(backend="aws", ...))``.
    Every backend runs the same compiled ASL.

    Runs: with the default local executor they execute in the calling thread (parallel branches fan out to a pool of
    ``$STEPWISE_LOCAL_CONCURRENCY`` threads) and return ``succeeded``/``failed``/``waiting``; with the
    Step Functions executor they return as soon as the execution is started (status ``running``), and
    the run record (``runs``) tells the rest. A ``waiting`` result names the node and its prompt; answer it with
    ``resume(run_id, {...})``.

    Threading: one client may be shared by threads; each run writes only its own thread's log, and
    concurrent writers to one thread get a conflict and retry rather than overwrite.

    Observer: ``observer(event: dict) -> None`` is called synchronously, from whichever thread runs the
    step, with ``event["kind"]`` one of ``run_started``, ``node_started``, ``node_finished``,
    ``node_failed``, ``llm_delta``, ``waiting``, ``run_finished``, ``run_failed``, plus ``run_id`` and,
    for node events, ``node`` and ``scope``. It must not raise and should return quickly.
    """

    def __init__(self, services: Services, *, executor: Executor | None = None, clock: Clock | None = None) -> None:
        self.services = services
        if clock is not None:  # human waits' deadlines are recorded and checked on the same clock
            services.clock = clock
        self.executor: Executor = executor or LocalExecutor(services, clock)
        self._asl_cache: dict[str, dict[str, Any]] = {}
        self._registered: dict[int, tuple[GraphSpec, str]] = {}
        self._limits = limits.Limits.from_env()  # read once, like the settings (six environment reads per run were 10 µs)

    @classmethod
    def embedded(
        cls,
        home: str | Path | None = None,
        *,
        observer: Observer | None = None,
        settings: Settings | None = None,
        tool_settings: ToolSettings | None = None,
        memory_settings: MemorySettings | None = None,
        **kwargs: Any,
    ) -> Stepwise:
        """SQLite and files under ``home`` (default: ``settings.home``, ``STEPWISE_HOME``); runs execute in-process.

        Settings not given are read from the environment, once, here (``Settings``, ``ToolSettings``, ``MemorySettings``)."""
        from stepwise.memory.service import MemoryServices

        settings = settings or Settings.from_env()
        tool_settings = tool_settings or ToolSettings.from_env()
        memory_settings = memory_settings or MemorySettings.from_env()
        home = Path(home) if home is not None else settings.home
        db = SqliteDatabase(home / "stepwise.db", wal_limit_bytes=settings.sqlite_wal_limit_mb * 2**20)
        services = Services(
            events=SqliteEventStore(db),
            snapshots=FileSnapshotStore(home / "snapshots"),
            runs=SqliteRunStore(db),
            registry=SqliteRegistry(db),
            observer=observer,
            memory=MemoryServices(home=home, settings=memory_settings),
            permissions=_embedded_permissions(home, tool_settings),
            settings=settings,
            tool_settings=tool_settings,
            memory_settings=memory_settings,
        )
        return cls(services, **kwargs)

    @classmethod
    def in_memory(
        cls,
        *,
        observer: Observer | None = None,
        settings: Settings | None = None,
        tool_settings: ToolSettings | None = None,
        memory_settings: MemorySettings | None = None,
        **kwargs: Any,
    ) -> Stepwise:
        """Everything in this process's memory: for tests and notebooks (settings not given: read from the environment, once)."""
        services = Services(
            events=MemoryEventStore(),
            snapshots=MemorySnapshotStore(),
            runs=MemoryRunStore(),
            registry=MemoryRegistry(),
            observer=observer,
            settings=settings or Settings.from_env(),
            tool_settings=tool_settings or ToolSettings.from_env(),
            memory_settings=memory_settings or MemorySettings.from_env(),
        )
        return cls(services, **kwargs)

    # -- graphs -------------------------------------------------------------------------------
    def register(self, spec: GraphSpec) -> str:
        """Compile, deploy and record a graph version once; later calls with the same spec object are free."""
        known = self._registered.get(id(spec))
        if known is not None and known[0] is spec:
            return known[1]
        ref = spec.ref
        found = self.services.registry.get(ref)
        if found is None:
            from stepwise.asl.compiler import compile_graph  # only a graph version new to this store compiles
        asl = found[1] if found is not None else compile_graph(spec)
        if found is None:
            self.executor.deploy(ref, asl)
            self.services.registry.put(ref, spec.name, spec.canonical(), asl)
        self.services.remember_graph(spec)
        self._asl_cache[ref] = asl
        self._registered[id(spec)] = (spec, ref)
        return ref

    # -- runs ---------------------------------------------------------------------------------
    def run(
        self, spec: GraphSpec, input: dict[str, Any] | None = None, *, thread_id: str | None = None, tenant: str = "default"
    ) -> RunResult:
        run = self.start(spec, input, thread_id=thread_id, tenant=tenant)
        return self._result(run, self.executor.start(run, self._asl(run.graph_ref)))

    def start(
        self, spec: GraphSpec, input: dict[str, Any] | None = None, *, thread_id: str | None = None, tenant: str = "default"
    ) -> RunRecord:
        """Record a run (its ``run_started`` event and run record) without executing it: ``execute`` does
        that. ``run`` is both; the API splits them to answer with the run id before a local run ends."""
        _admit_new_run(input, thread_id, self._limits)
        ref = self.register(spec)
        # the first run on a fork continues where it was taken (a new thread has no fork to look for)
        fork_point = self._fork_point(thread_id, ref) if thread_id else {}
        new_thread = thread_id is None
        for attempt in range(3):
            # 48 random bits each, as uuid4().hex[:12] gave, without building two UUID objects per run
            run_id = f"run-{secrets.token_hex(6)}"
            thread = thread_id or f"thread-{secrets.token_hex(6)}"
            record = RunRecord(run_id=run_id, thread_id=thread, graph_ref=ref, input=dict(input or {}), tenant=tenant, **self._lease())
            started = Event(type=RUN_STARTED, run_id=run_id, data={"update": dict(input or {}), "graph": ref})
            cursor = self._cursor(thread, run_id, ref, fork_point)
            try:
                run = self.services.runs.begin(record, self.services.events, started, cursor, new_thread=new_thread)
                break
            except StateConflictError:  # the made-up thread id was taken (48 random bits): nothing written, pick another
                if not new_thread or attempt == 2:
                    raise
        thread_id = run.thread_id
        if isinstance(self.executor, LocalExecutor):  # it runs here, next: tell it the head it starts from
            if len(self.services.begun) >= 1024:  # started here but executed elsewhere (the API's split): forget
                self.services.begun.clear()
            self.services.begun[run_id] = started.seq
        if started.seq == 1:  # a new thread: its state is the input, so the first step need not look for a snapshot
            with contextlib.suppress(ReducerError):
                reducers = reducers_of(spec)
                self.services.hydrator.remember(thread_id, (), 1, reducing.apply({}, dict(input or {}), reducers), reducers)
        if self.services.observer is not None:
            self.services.notify(kind="run_started", run_id=run_id, thread_id=thread_id, graph=ref)
        return run

    @staticmethod
    def _cursor(thread_id: str, run_id: str, ref: str, fork_point: dict[str, Any]) -> Callable[[int], dict[str, Any]]:
        def cursor(seq: int) -> dict[str, Any]:
            # a Cursor's dump (thread_id, run_id, graph, seq, frames, visits), written out: this process made every value
            out = {"thread_id": thread_id, "run_id": run_id, "graph": ref, "seq": seq, "frames": [], "visits": {}}
            out["base"] = seq  # where this execution began: the step counts its events from here (handover)
            return out | fork_point

        return cursor

    def enqueue(self, spec: GraphSpec, input: dict[str, Any] | None = None, *, thread_id: str, tenant: str = "default") -> RunRecord:
        """Double texting ``enqueue``: record a run as ``queued`` on a thread that has a run in flight. The run
        record is the queue (durable in the run store, tenant-scoped); ``drain_queue`` starts it later."""
        _admit_new_run(input, thread_id, self._limits)
        ref = self.register(spec)
        record = RunRecord(
            run_id=f"run-{uuid.uuid4().hex[:12]}",
            thread_id=thread_id,
            graph_ref=ref,
            input=dict(input or {}),
            tenant=tenant,
            status="queued",
        )
        self.services.runs.put(record)
        return record

    def enqueue_if_busy(
        self, spec: GraphSpec, input: dict[str, Any] | None = None, *, thread_id: str, tenant: str = "default"
    ) -> RunRecord | None:
        """Double texting ``enqueue``: if the thread has a run running, waiting or queued, record this one as
        ``queued`` behind them and return it; None: the thread is free, start the run now. The caller drains
        the thread right after (``drain_queue``): a run that ended between this look and the put has no
        run-end left to start the queue."""
        if not self.services.runs.thread_runs(thread_id, IN_LINE):
            return None
        return self.enqueue(spec, input, thread_id=thread_id, tenant=tenant)

    def make_room(
        self,
        thread_id: str,
        policy: str,
        *,
        cause: str,
        settle: Callable[[str], None] | None = None,
        report: Callable[[str, RunRecord], None] | None = None,
    ) -> None:
        """Double texting, before a new run starts on a thread (the API's ``multitask`` and ``stepwise run
        --multitask``). ``reject``: ThreadBusyError if a run waits on the thread (a running one is refused by
        ``start``'s own check, which also lets a dead process's run be taken over); ``interrupt``: cancel the
        runs in flight (compare-and-set; each stops before its next node) so the new run starts from the state
        they reached; ``rollback``: cancel them and discard their writes, so it starts from the state before
        them; ``enqueue`` is ``enqueue_if_busy`` instead. ``settle(run_id)`` waits for this process's
        execution of a cancelled run (its node's write lands before the rollback marker); ``report(kind, run)``
        hears each ``cancelled`` / ``rolled_back``."""
        if policy not in MULTITASK:
            raise StepwiseError(f"unknown multitask {policy!r}; use one of: {', '.join(MULTITASK)}")
        in_flight = self.services.runs.thread_runs(thread_id, ACTIVE)
        if policy == "reject":
            for other in in_flight:
                if other.status == "waiting":
                    node = (other.waiting or {}).get("node", "a human node")
                    raise ThreadBusyError(
                        f"thread {thread_id!r} is busy: run {other.run_id} waits at {node!r} on it; answer it "
                        f"(`stepwise resume {other.run_id} --input ...`), cancel it, or pick another multitask "
                        "(enqueue: run after it; interrupt: cancel it; rollback: cancel it and discard its writes)"
                    )
            return
        if policy not in ("interrupt", "rollback"):
            return
        for other in in_flight:
            with contextlib.suppress(RunTransitionError):  # it finished meanwhile: nothing to interrupt
                self.cancel(other.run_id, cause=f"{policy} by a new {cause}")
                if report is not None:
                    report("cancelled", other)
            if settle is not None:
                settle(other.run_id)
            if policy == "rollback":
                self.rollback(other.run_id, cause=f"rolled back by a new {cause}")
                if report is not None:
                    report("rolled_back", other)

    def next_queued(self, thread_id: str) -> RunRecord | None:
        """The thread's oldest queued run if nothing is in flight on it (running or waiting), else None
        (a look only: ``start_queued`` claims atomically)."""
        return next_in_line(self.services.runs.thread_runs(thread_id, IN_LINE))

    def start_queued(self, thread_id: str) -> RunRecord | None:
        """Start the thread's oldest queued run if nothing is in flight on it: the rivals check, the
        compare-and-set ``queued`` → ``running`` and its ``run_started`` at the head are one atomic step
        (``RunStore.claim_queued``), so a run begun meanwhile on the thread either comes first (nothing is
        started) or finds this one running. None: nothing to start."""

        def cursor(run: RunRecord, seq: int) -> dict[str, Any]:
            at = Cursor(thread_id=thread_id, run_id=run.run_id, graph=run.graph_ref, seq=seq).model_dump(exclude_none=True)
            return {**at, "base": seq}

        if self.next_queued(thread_id) is None:  # a read first: most run ends find no queue, and take no lock
            return None
        run = self.services.runs.claim_queued(self.services.events, thread_id, cursor, **self._lease())
        if run is None:
            return None
        self.services.notify(kind="run_started", run_id=run.run_id, thread_id=thread_id, graph=run.graph_ref)
        return run

    def drain_queue(self, thread_id: str) -> list[str]:
        """Run the thread's queued runs one at a time, oldest first, while nothing else is in flight on it:
        each executes (locally until it ends or waits; on AWS its execution starts) before the next is taken.
        Returns the run ids started. Called when a run ends (the API's run-end path and serve's scheduler)."""
        started: list[str] = []
        while (run := self.start_queued(thread_id)) is not None:
            started.append(run.run_id)
            self.executor.start(run, self._asl(run.graph_ref))
        return started

    def queued_threads(self, limit: int = 1000) -> list[str]:
        """Threads with a queued run (for a drainer that sweeps, e.g. serve's scheduler after a restart)."""
        return self.services.runs.queued_threads(limit)

    def execute(self, run_id: str) -> RunResult:
        """Execute a run recorded by ``start`` (locally: until it ends or waits; on AWS: start the execution)."""
        run = self.services.runs.get(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        return self._result(run, self.executor.start(run, self._asl(run.graph_ref)))

    def _lease(self) -> dict[str, Any]:
        """Owner and lease fields for a run this process executes (none when Step Functions does)."""
        if not isinstance(self.executor, LocalExecutor):
            return {}
        return {"owner": process_owner(), "lease_until": time.time() + self.services.settings.run_lease_seconds}

    def resume(self, run_id: str, input: dict[str, Any] | None = None, *, interrupt_id: str | None = None) -> RunResult:
        """Answer the human node a run waits at, or continue a run whose process died (see ``recover``).

        ``interrupt_id`` names the wait being answered (from the waiting status); an answer to an earlier
        wait is refused with StaleAnswerError. Without it, the answer goes to the wait this call saw."""
        run = self.services.runs.get(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        if timed_out(run):
            raise self._timed_out_refusal(run)
        if run.status in FINISHED:
            raise ConflictingRequestError(f"run {run_id!r} already {run.status}; start a new run, or fork its thread with `stepwise fork`")
        if input is not None and not isinstance(input, dict):
            raise StepwiseError("the resume input must be a JSON object, merged into the state as the human node's update")
        _admit(input, "the resume input", self._limits)
        if run.status == "waiting" and (run.waiting or {}).get("kind") == "retry":  # parked on a 429: continue it now
            return self.continue_parked(run_id, force=True)
        if run.status == "running":
            run = self._settle_interrupt(run)
        if run.status == "running":  # its process died mid-way? continue it from the log
            result = self.recover(run_id)
            if result.status != "waiting" or input is None:
                return result
            run = self.services.runs.get(run_id)
            assert run is not None
        if run.status != "waiting" or run.waiting is None:  # e.g. another answer won, and the run went on (or ended)
            raise ConflictingRequestError(f"run {run_id!r} is {run.status}, not waiting for an answer; read the run again")
        if is_overdue(run, self.services.clock.now()):  # too late: the run fails as timed out, not with this answer
            raise self._timed_out_refusal(run, self.expire_wait(run_id).status)
        check_answer(self.services.graph(run.graph_ref), run_id, run.waiting["node"], input)
        current = run.interrupt_id or run.waiting.get("interrupt_id")
        if interrupt_id is not None and current is not None and interrupt_id != current:
            raise StaleAnswerError(
                f"run {run_id!r} now waits at {run.waiting.get('node')!r} (interrupt {current}), not interrupt {interrupt_id}; "
                "read the run again and answer its current question"
            )
        waiting, token = run.waiting, run.waiting["token"]
        try:  # compare-and-set: of two answers (or an answer and a cancel), exactly one wins
            run = self._take_wait(run, current)
        except RunTransitionError as exc:
            raise ConflictingRequestError(str(exc)) from None
        out = resume_step(self.services, waiting, dict(input or {}))
        return self._result(run, self.executor.send_token(run, token, out))

    def _take_wait(self, run: RunRecord, current: str | None) -> RunRecord:
        """Move a waiting run back to running, if it still waits at interrupt ``current`` (a compare-and-set:
        of an answer, a cancel and an expiry that race, exactly one wins); else RunTransitionError."""
        return self.services.runs.update(
            run.run_id,
            expect=("waiting",),
            expect_interrupt=current if run.interrupt_id else None,
            status="running",
            waiting=None,
            interrupt_id=None,
            **self._lease(),
        )

    def _timed_out_refusal(self, run: RunRecord, status: str | None = None) -> WaitTimedOutError:
        """Why an answer to a wait past its deadline is refused, and what to do instead."""
        waiting, error = run.waiting or {}, run.error or {}
        node = error.get("node") or waiting.get("node")
        seconds = error.get("timeout_seconds") or waiting.get("timeout_seconds")
        deadline = deadline_of(waiting)
        when = f" (its deadline was {describe_deadline(deadline)})" if deadline is not None else ""
        ends = "failed" if (status or run.status) == "failed" else "is failing (Step Functions ends it)"
        return WaitTimedOutError(
            f"run {run.run_id!r} {ends} with {TIMEOUT_ERROR}: human node {node!r} allowed {seconds} s for an answer{when} "
            f"and none came in time; this answer was not applied. Start a new run, or `stepwise redrive {run.run_id}` to ask again"
        )

    def expire_wait(self, run_id: str, *, now: float | None = None) -> RunResult:
        """End a run whose human wait is past its deadline (``config.timeout_seconds``) the way Step Functions
        does: the wait's Task fails with ``States.Timeout`` and the graph's Catch fails the run. A compare-and-set
        from ``waiting`` makes an answer (or a cancel, or another process's expiry) that lands first win. A run
        not overdue is left as it is; on Step Functions the service times the Task out itself."""
        run = self.services.runs.get(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        moment = self.services.clock.now() if now is None else now
        if not is_overdue(run, moment) or not isinstance(self.executor, LocalExecutor):
            return self._result(run, None)
        waiting = dict(run.waiting or {})
        try:
            run = self._take_wait(run, run.interrupt_id or waiting.get("interrupt_id"))
        except RunTransitionError:  # answered, cancelled or expired meanwhile: that stands
            latest = self.services.runs.get(run_id)
            assert latest is not None
            return self._result(latest, None)
        cause = timeout_message(waiting["node"], waiting["timeout_seconds"])
        return self._result(run, self.executor.fail_token(run, waiting["token"], TIMEOUT_ERROR, cause))

    def overdue_waits(self, *, now: float | None = None) -> list[RunRecord]:
        """Runs waiting at a human node whose deadline has come (from the index of runs in flight)."""
        moment = self.services.clock.now() if now is None else now
        return [r for r in self.services.runs.in_flight(_WAITING) if is_overdue(r, moment)]

    def next_deadline(self, *, after: float | None = None) -> float | None:
        """The earliest deadline of a human wait in flight later than ``after`` (default: now), for a scheduler to
        wake at; waits already overdue are ``overdue_waits``' (on Step Functions the service ends them)."""
        moment = self.services.clock.now() if after is None else after
        waits = (deadline_of(r.waiting) for r in self.services.runs.in_flight(_WAITING))
        return min((d for d in waits if d is not None and d > moment), default=None)

    def expire_overdue(self, *, now: float | None = None) -> list[RunResult]:
        """Fail every run whose human wait is past its deadline (``expire_wait``). ``stepwise serve``'s scheduler
        calls it on time; without a server the CLI calls it where runs are read or resumed."""
        ended = []
        for run in self.overdue_waits(now=now):
            with contextlib.suppress(ConflictingRequestError):  # taken over meanwhile
                ended.append(self.expire_wait(run.run_id, now=now))
        return ended

    #: How long a resume waits for a run whose interrupt is logged to record that it waits.
    SETTLE_SECONDS = 2.0

    def _settle_interrupt(self, run: RunRecord) -> RunRecord:
        """A human node logs its interrupt before the run's record says ``waiting`` (so a crash between the
        two writes is recoverable). An answer sent on seeing the event in the stream can arrive between
        them: give the writer a bounded moment rather than refusing a run that is about to wait."""
        events = self.services.events
        head = events.head(run.thread_id)
        last = events.read(run.thread_id, after=head - 1) if head else []
        if not last or last[-1].type != INTERRUPT or last[-1].run_id != run.run_id or is_dead(run):
            return run
        deadline, pause = time.monotonic() + self.SETTLE_SECONDS, 0.002
        while self.services.runs.status(run.run_id) == "running" and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        settled = self.services.runs.get(run.run_id) or run
        if settled.status == "waiting" and settled.interrupt_id != last[-1].data.get("interrupt_id"):
            # the interrupt this call saw was answered by someone else meanwhile; the run asks something new
            raise ConflictingRequestError(f"run {run.run_id!r} went on past the question this answer saw; read the run again")
        return settled

    #: A run parked on rate limits this many times fails (with the 429) rather than parking again.
    MAX_PARKS = 5

    def continue_parked(self, run_id: str, *, force: bool = False) -> RunResult:
        """Continue a run parked on an LLM 429 once its ``retry_at`` has come (``force``: now). The run goes
        back to ``running`` by compare-and-set and is replayed: completed tasks are instant, the rate-limited
        node runs again. After ``MAX_PARKS`` parks it fails with the rate-limit error instead."""
        run = self.services.runs.get(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        waiting = run.waiting or {}
        if run.status != "waiting" or waiting.get("kind") != "retry":
            raise ConflictingRequestError(f"run {run_id!r} is {run.status}, not parked on a rate limit")
        if not force and float(waiting.get("retry_at", 0)) > time.time():
            return self._result(run, None)
        if int(waiting.get("parks", 0)) >= self.MAX_PARKS:
            error = {"error": waiting.get("error", "Stepwise.RateLimited"), "cause": f"still rate-limited after {self.MAX_PARKS} parks"}
            with contextlib.suppress(RunTransitionError):
                self.services.runs.update(run_id, expect=("waiting",), status="failed", waiting=None, finished_at=time.time(), error=error)
            return self._result(run, None)
        try:
            run = self.services.runs.update(run_id, expect=("waiting",), status="running", **self._lease())
        except RunTransitionError as exc:
            raise ConflictingRequestError(str(exc)) from None
        return self._result(run, self.executor.start(run, self._asl(run.graph_ref)))

    def parked_due(self, *, now: float | None = None, limit: int = 1000) -> list[RunRecord]:
        """Runs parked on a rate limit whose ``retry_at`` has come."""
        moment = time.time() if now is None else now
        return [
            r
            for r in self.services.runs.list(limit=limit)
            if r.status == "waiting" and (r.waiting or {}).get("kind") == "retry" and float((r.waiting or {}).get("retry_at", 0)) <= moment
        ]

    def redrive(self, run_id: str) -> RunResult:
        """Re-run a failed run from its failed node: the run goes back to ``running`` (a compare-and-set from
        ``failed``) and is replayed; completed nodes return their recorded results (the step is idempotent),
        so only the failed node and what follows it run. On Step Functions: ``RedriveExecution``."""
        run = self.services.runs.get(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        if run.status != "failed" or not run.start_cursor:
            raise ConflictingRequestError(f"run {run_id!r} is {run.status}; only a failed run can be redriven")
        cursor = self._redrive_cursor(run)
        try:
            run = self.services.runs.update(
                run_id,
                expect=("failed",),
                status="running",
                error=None,
                finished_at=None,
                waiting=None,
                start_cursor=cursor,
                **self._lease(),
            )
        except RunTransitionError as exc:
            raise ConflictingRequestError(str(exc)) from None
        return self._result(run, self.executor.start(run, self._asl(run.graph_ref)))

    def _redrive_cursor(self, run: RunRecord) -> dict[str, Any]:
        """A new execution (``<run>--r<n>``) that starts at the failed state with the cursor that entered it,
        as the fail step recorded; without that record (a failure outside any node, or ASL compiled before
        ``__start__``), one that replays from the run's start cursor."""
        number = max(1, sum(1 for e in self.run_events(run.run_id) if e.type == RUN_FAILED))
        point = (run.error or {}).get("redrive")
        from stepwise.asl.compiler import start_points

        if isinstance(point, dict) and point.get("start_at") in start_points(self._asl(run.graph_ref)):
            cursor = {**point["cursor"], "start_at": point["start_at"], "base": point["cursor"].get("seq", 0)}
        else:
            cursor = dict(run.start_cursor)
        return cursor | {"execution": f"{run.run_id}--r{number}"}

    def recover(self, run_id: str) -> RunResult:
        """Continue a run whose process died: take over its lease (a compare-and-set, so one recoverer
        wins) and replay it from its start cursor. The idempotent step returns recorded results at once;
        the run ends finished, failed, or waiting again at the human node it was parked at."""
        run = self.services.runs.get(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        ended = self._execution_ended(run)
        if ended is not None:
            return self._settle_and_redrive(run, ended)
        if run.owner is None and run.execution_arn and self.executor.execution_status(run) == "RUNNING":
            raise RunBusyError(f"run {run_id!r} is executing in Step Functions ({run.execution_arn}); nothing to recover")
        if run.status != "running":
            raise ConflictingRequestError(f"run {run_id!r} is {run.status}; only a running run whose process died can be recovered")
        if not is_dead(run) and run.owner is not None:  # alive, here or elsewhere (legacy records have no owner)
            until = time.strftime("%H:%M:%S", time.localtime(run.lease_until or 0))
            raise RunBusyError(
                f"run {run_id!r} is running in process {run.owner} (lease until {until}); if that process died, retry after then"
            )
        if not run.start_cursor:  # died between its record and its run_started event: nothing ran
            with contextlib.suppress(RunTransitionError):
                self.services.runs.update(
                    run_id, expect=("running",), status="failed", finished_at=time.time(), error={"error": "Stepwise.DiedBeforeStart"}
                )
            return self._result(run, None)
        try:
            run = self.services.runs.update(run_id, expect=("running",), **(self._lease() or {"owner": None}))
        except RunTransitionError as exc:
            raise ConflictingRequestError(str(exc)) from None
        return self._result(run, self.executor.start(run, self._asl(run.graph_ref)))

    def stale_runs(self, *, now: float | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs marked running whose owner stopped renewing the lease (its process died), and runs marked
        running or waiting whose Step Functions execution ended without recording the run's end.

        Reads EVERY run in flight, oldest first (``RunStore.in_flight``: an index of active runs, however many
        finished runs the store holds); ``limit`` stops after that many stale runs (the oldest), None: all."""
        found: list[RunRecord] = []
        for run in self.services.runs.in_flight(ACTIVE):
            if limit is not None and len(found) >= limit:
                break
            if is_dead(run, now) or self._execution_ended(run) is not None:
                found.append(run)
        return found

    def backfill_in_flight_index(self) -> int:
        """Once after upgrading a DynamoDB deployment: index the runs that were in flight before the runs
        table's sparse ``active-created_at`` index existed, so ``stale_runs`` and the queued sweep see them
        (the recover function does it when invoked with ``{"backfill": true}``). Returns how many; 0 elsewhere."""
        return self.services.runs.backfill_in_flight_index()

    def _execution_ended(self, run: RunRecord) -> str | None:
        """The status of the run's ended execution, for an active run executed elsewhere (Step Functions):
        FAILED, TIMED_OUT or ABORTED (or SUCCEEDED) while the record still says running or waiting."""
        if run.status not in ACTIVE or run.owner is not None or not run.execution_arn:
            return None
        status = self.executor.execution_status(run)
        return status if status is not None and status != "RUNNING" else None

    def _settle_and_redrive(self, run: RunRecord, ended: str) -> RunResult:
        """A Step Functions run whose execution ended (stopped by hand, timed out, or failed while reporting its
        failure) without the run's end: record it failed (a compare-and-set, so one recoverer wins; a run_failed
        event names the execution), then redrive it, which replays from its start or its failed node."""
        error = {
            "error": f"Stepwise.Execution{ended.title().replace('_', '')}",
            "cause": f"execution {run.execution_arn} ended {ended} without recording the run's end; recovered by a redrive",
        }
        try:
            self.services.runs.update(run.run_id, expect=ACTIVE, status="failed", finished_at=time.time(), error=error, waiting=None)
        except RunTransitionError as exc:
            raise ConflictingRequestError(str(exc)) from None
        self.services.events.append_at_head(run.thread_id, [Event(type=RUN_FAILED, run_id=run.run_id, data=error)])
        return self.redrive(run.run_id)

    def recover_stale(self) -> list[RunResult]:
        """Recover every stale run (``stepwise serve`` does this on start); a run another process took
        over meanwhile is skipped."""
        results = []
        for run in self.stale_runs():
            with contextlib.suppress(ConflictingRequestError):
                results.append(self.recover(run.run_id))
        return results

    def _asl(self, ref: str) -> dict[str, Any]:
        asl = self._asl_cache.get(ref)
        if asl is None:
            found = self.services.registry.get(ref)
            if found is None:
                raise StepwiseError(f"graph version {ref} is not registered in this store")
            asl = self._asl_cache[ref] = found[1]  # versions are immutable, so caching by ref is safe
        return asl

    def _result(self, of: RunRecord, result: ExecutionResult | None) -> RunResult:
        """The run as it stopped: its record and its thread's state, read in one statement where the store can."""
        run_id, thread_id = of.run_id, of.thread_id  # a run's thread and graph never change
        found: list[RunRecord | None] = []

        def read(after: int, scopes: Collection[str]) -> tuple[list[Event], int]:
            tail, head, record = self.services.runs.tail_and_record(self.services.events, thread_id, after, scopes, run_id)
            found.append(record)
            return tail, head

        broken: ReducerError | None = None
        try:
            reducers = LazyReducers(lambda: self.services.reducers(of.graph_ref))
            _, state = self.services.hydrator.state(thread_id, reducers, idle=True, read=read)  # no index lag
        except ReducerError as exc:  # the run cannot go on, and its state stops at the last foldable event
            broken, state = exc, {}
        run = found[0] if found and found[0] is not None else self.services.runs.get(run_id)
        assert run is not None
        if result is not None and result.status == "FAILED" and run.status == "running":  # failed outside any node
            with contextlib.suppress(RunTransitionError):  # a cancel that landed first stays
                run = self.services.runs.update(
                    run_id,
                    expect=("running",),
                    status="failed",
                    finished_at=time.time(),
                    error={"error": result.error, "cause": result.cause},
                )
        if broken is not None:
            with contextlib.suppress(RunTransitionError):
                run = self.services.runs.update(
                    run_id, expect=("running", "waiting"), status="failed", error={"error": "Stepwise.ReducerError", "cause": str(broken)}
                )
        return RunResult(run_id, run.thread_id, run.status, state, run.error, run.waiting, result.transitions if result else 0)

    # -- threads ------------------------------------------------------------------------------
    def _reducers(self, thread_id: str) -> dict[str, str]:
        ref = self.services.runs.graph_of(thread_id)
        return self.services.reducers(ref) if ref is not None else {}

    def state(self, thread_id: str, at: int | None = None) -> tuple[int, dict[str, Any]]:
        if at is not None:
            head = self.services.events.head(thread_id)
            if head == 0:
                raise StepwiseError(f"no thread {thread_id!r}; list threads with `stepwise runs`")
            if not 1 <= at <= head:
                raise StepwiseError(f"thread {thread_id!r} has seqs 1..{head}; pick --at within that range")
        try:
            seq, state = self.services.hydrator.state(thread_id, LazyReducers(lambda: self._reducers(thread_id)), (), at=at)
        except ReducerError as exc:
            raise StepwiseError(f"the state of thread {thread_id!r} cannot be computed: {exc}; fork it at an earlier seq") from None
        if seq == 0:
            raise StepwiseError(f"no thread {thread_id!r}; list threads with `stepwise runs`")
        return seq, state

    def states(self, thread_id: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """The thread's state after every event, in one pass over its log (``state(at=…)`` per seq would
        re-fold the log each time). Reducers never mutate a state, so each yielded state stands alone."""
        events = self.history(thread_id)
        by_seq = {e.seq: e for e in events}
        reducer_names = self._reducers(thread_id)
        view = folding.levels(())  # the main scope: branch events enter through their join
        state: dict[str, Any] = {}
        for event in events:
            if folding.is_visible(event, view):
                state = folding.apply_event(state, event, reducer_names, by_seq.__getitem__)
            yield event.seq, state

    def memory(self) -> MemoryPort:
        """The long-term and short-term memory agents of this client use (``Services.memory``; the
        process-wide default for ``Services.memory_settings`` when none is configured)."""
        from stepwise.memory.service import default_memory

        found = self.services.memory
        return found if found is not None else default_memory(self.services.memory_settings, self.services.settings.home)

    def history(self, thread_id: str) -> list[Event]:
        events = self.services.events.read(thread_id)
        if not events:
            raise StepwiseError(f"no thread {thread_id!r}; list threads with `stepwise runs`")
        return events

    def fork(self, thread_id: str, at: int) -> str:
        """A new thread whose first event holds the state of ``thread_id`` at ``at``, and where that thread's
        run was going next: the first run on the fork continues there (see ``_fork_point``)."""
        _, state = self.state(thread_id, at=at)
        new_thread = f"thread-{uuid.uuid4().hex[:12]}"
        data: dict[str, Any] = {"from": thread_id, "at": at, "state": state}
        point = self._next_after(thread_id, at)
        if point is not None:
            data["next"] = point
        event = Event(type=FORKED, data=data)
        self.services.events.append(new_thread, 0, [event])
        return new_thread

    def _next_after(self, thread_id: str, at: int) -> dict[str, Any] | None:
        """Where the thread's run went after seq ``at``: ``{graph, start_at, cursor}`` naming the top-level state
        (node Task or parallel block) that would have run next, or None for "the entry" (nothing ran yet, or
        the run had ended)."""
        for event in reversed(self.services.events.read(thread_id, upto=at)):
            if event.scope:
                continue  # a branch's event: its block's own events (the split, the join) decide
            if event.type == FORKED:
                return event.data.get("next")
            if event.type in (RUN_STARTED, ROLLED_BACK):  # nothing ran yet, or what ran was discarded
                return None
            if event.type not in (NODE_UPDATE, JOIN) or (event.type == NODE_UPDATE and not event.node):
                continue
            run = self.services.runs.get(event.run_id)
            if run is None:
                return None
            asl = self._asl(run.graph_ref)
            if event.type == JOIN:  # the join is folded; the Task that joins this block runs its node next
                block = event.data.get("block")
                task = next((n for n, st in asl["States"].items() if _payload(st).get("join") == block), None)
                return {"graph": run.graph_ref, "start_at": task, "cursor": {}} if task else None
            start = _state_after(self.services.graph(run.graph_ref), str(event.node), event.data.get("next") or {})
            if start is None:
                return None
            extras = {k: v for k, v in (event.data.get("next") or {}).items() if k != "route"}
            return {"graph": run.graph_ref, "start_at": start, "cursor": extras}
        return None

    def _fork_point(self, thread_id: str, ref: str) -> dict[str, Any]:
        """Cursor fields that start the first run on a forked thread (its only event is ``forked``) where the fork
        was taken (``start_at`` and what the next state needs, such as a planner's items), when this graph has
        that state; else nothing, and the run starts at the entry."""
        if self.services.events.head(thread_id) != 1:
            return {}
        before = self.services.events.read(thread_id, upto=1)
        if len(before) != 1 or before[0].type != FORKED or not before[0].data.get("next"):
            return {}
        point = before[0].data["next"]
        from stepwise.asl.compiler import start_points

        if point.get("start_at") not in start_points(self._asl(ref)):
            return {}
        return {**point.get("cursor", {}), "start_at": point["start_at"]}

    # -- reads and control shared by the CLI and the API ------------------------------------------
    def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record (status, waiting node, error, tenant), or None if there is no such run."""
        return self.services.runs.get(run_id)

    def head(self, thread_id: str) -> int:
        """The thread's last event seq; 0 for a thread that does not exist."""
        return self.services.events.head(thread_id)

    def graph(self, ref: str) -> GraphSpec:
        """The registered graph version ``ref`` (``name@hash``)."""
        return self.services.graph(ref)

    def run_events(self, run_id: str, *, after: int = 0) -> list[Event]:
        """The events one run wrote to its thread with seq > ``after``, oldest first."""
        run = self.get_run(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        return [e for e in self.services.events.read(run.thread_id, after=after) if e.run_id == run_id]

    def cancel(self, run_id: str, *, cause: str = "cancelled") -> RunRecord:
        """Stop a running or waiting run's execution and mark it cancelled (compare-and-set: a run that
        finished meanwhile is left alone and ``RunTransitionError`` is raised)."""
        run = self.get_run(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        cancelling = self.services.cancelling
        cancelling[run_id] = None  # before the write: from now on its steps here read the cancel check (Services.heads)
        while len(cancelling) > 4096:
            del cancelling[next(iter(cancelling))]
        if run.status != "queued":  # a queued run has no execution yet
            self.executor.stop(run, cause=cause)
        return self.services.runs.update(
            run_id,
            expect=(*ACTIVE, "queued"),
            status="cancelled",
            waiting=None,
            interrupt_id=None,
            finished_at=time.time(),
            lease_until=None,
        )

    def rollback(self, run_id: str, *, cause: str = "rolled back") -> RunRecord:
        """Cancel the run if it is in flight and discard what it wrote: a ``rolled_back`` event restates the
        thread as it was before the run's ``run_started``, so every later state read (and the next run) skips
        the run's writes. The log keeps them (it is append-only); history shows the marker after them."""
        run = self.get_run(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        if (run.error or {}).get("error") == ROLLED_BACK_ERROR:
            return run  # done once already: a second marker would also discard what later runs wrote
        if run.status in ACTIVE:
            with contextlib.suppress(RunTransitionError):  # it finished meanwhile: still roll its writes back
                run = self.cancel(run_id, cause=cause)
        start_seq = int((run.start_cursor or {}).get("seq") or 0)
        if start_seq == 0:
            raise StepwiseError(f"run {run_id!r} has no recorded start; nothing to roll back")
        before = self.state(run.thread_id, at=start_seq - 1)[1] if start_seq > 1 else {}
        head = self.services.events.head(run.thread_id)
        marker = Event(
            type=ROLLED_BACK,
            run_id=run_id,
            data={"run_id": run_id, "state": before, "from_seq": start_seq, "through_seq": head, "cause": cause},
        )
        self.services.events.append_at_head(run.thread_id, [marker])
        return self.services.runs.update(run_id, error={"error": ROLLED_BACK_ERROR, "cause": cause, "from_seq": start_seq})

    def runs(self, *, thread_id: str | None = None, limit: int = 50) -> list[RunRecord]:
        return self.services.runs.list(thread_id=thread_id, limit=limit)

    def list_runs(self, query: RunQuery) -> RunPage:
        """One page of a tenant's runs, newest first, filtered by status, agent, time, cost or thread:
        an indexed query on every store (``GET /runs`` and the console's list use it)."""
        return self.services.runs.query(query)

    def thread_events(self, thread_id: str, *, after: int = 0, upto: int | None = None) -> list[Event]:
        """The events of a thread with ``after`` < seq <= ``upto``, whichever run wrote them (a forked
        thread starts with its ``forked`` marker at seq 1); an empty list for an unknown thread."""
        return self.services.events.read(thread_id, after=after, upto=upto)

    def compiled(self, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The graph version ``ref`` as registered (its spec) and as compiled (its ASL: what runs)."""
        found = self.services.registry.get(ref)
        if found is None:
            raise StepwiseError(f"graph version {ref} is not registered in this store")
        return found


_WAITING: tuple[RunStatus, ...] = ("waiting",)


def _payload(state: dict[str, Any]) -> dict[str, Any]:
    params = state.get("Parameters")
    payload = params.get("Payload") if isinstance(params, dict) else None
    return payload if isinstance(payload, dict) else {}


def _entry_state(spec: GraphSpec, name: str) -> str:
    """The compiled state a transition to node ``name`` (a path like ``outer/inner``) enters: a subgraph node
    is entered at its subgraph's entry, recursively (as the compiler's ``entry_state``)."""
    sub, local = locate(spec, name)
    inner = sub.graph.nodes[local].subgraph_spec
    return _entry_state(spec, f"{name}/{inner.entry}") if inner is not None else name


def _state_after(root: GraphSpec, node: str, nxt: dict[str, Any]) -> str | None:
    """The top-level state that runs after ``node`` wrote its update with cursor changes ``nxt``: its parallel
    block for a fan-out or planner, else its route's entry state; None when the route ends the run."""
    try:
        spec, local = locate(root, node)
    except LookupError:
        return None
    if local in topology(spec).fanout:
        return f"{node}.fanout"
    if spec.graph.nodes[local].kind == "planner":
        return f"{node}.map"
    prefix = node.rpartition("/")[0]
    route = str(nxt.get("route") or END)
    if is_end(route):
        return prefix or None  # the end of a subgraph: its node's own Task routes on the parent's edges
    return _entry_state(root, f"{prefix}/{route}" if prefix else route)


def _embedded_permissions(home: Path, settings: ToolSettings) -> Any:
    """Tool roles in ``<home>/api.db`` and the capability key in ``<home>/capability.key`` (made on first use,
    like the manager itself: a run that calls no tool never imports the tools layer)."""

    def make() -> Any:
        from stepwise.tools.permissions import PermissionManager

        return PermissionManager.embedded(home, settings)

    return _OnFirstUse(make)


class _OnFirstUse:
    """Builds its object on first attribute access and then stands in for it."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._obj: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._obj is None:
            self._obj = self._make()
        return getattr(self._obj, name)
