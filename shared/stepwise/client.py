"""The local client: register graphs, start and resume runs, read and fork threads — on embedded defaults.

Runs execute the compiled ASL in the local interpreter, with the stateless step in-process: the very
document that deploys to Step Functions.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stepwise.asl.compiler import compile_graph
from stepwise.asl.interpreter import Clock, ExecutionResult, Interpreter
from stepwise.errors import AnswerError, StepwiseError
from stepwise.graph import limits
from stepwise.graph.answers import answer_problems, example
from stepwise.graph.spec import GraphSpec
from stepwise.runtime.services import Observer, Services
from stepwise.runtime.step import Cursor, locate, reducers_of, resume_step, step
from stepwise.state import fold as folding
from stepwise.state.events import FORKED, RUN_STARTED, Event
from stepwise.state.files import FileSnapshotStore
from stepwise.state.memory import MemoryEventStore, MemoryRegistry, MemoryRunStore, MemorySnapshotStore
from stepwise.state.ports import RunRecord
from stepwise.state.reducers import ReducerError
from stepwise.state.sqlite import SqliteDatabase, SqliteEventStore, SqliteRegistry, SqliteRunStore

STEP_FUNCTION = "stepwise-step"


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
        return out


def _admit(value: Any, what: str) -> None:
    """Inputs must be storable: bounded depth and integers, valid Unicode (see graph/limits.py)."""
    try:
        limits.check_value(value, what=what)
    except limits.LimitError as exc:
        raise StepwiseError(str(exc)) from None


def default_home() -> Path:
    return Path(os.environ.get("STEPWISE_HOME", ".stepwise"))


def check_answer(root: GraphSpec, run_id: str, node: str, answer: dict[str, Any] | None) -> None:
    """Refuse an answer that does not fit the human node ``node`` (``outer/inner`` inside subgraphs)."""
    spec, local = locate(root, node)
    problems = answer_problems(spec, local, answer)
    if problems:
        raise AnswerError(run_id, node, problems, example(spec, local))


class Executor(Protocol):
    """Runs a registered graph's ASL: the local interpreter here, Step Functions on AWS."""

    def deploy(self, ref: str, asl: dict[str, Any]) -> None: ...

    def start(self, run: RunRecord, asl: dict[str, Any]) -> ExecutionResult | None: ...

    def send_token(self, run: RunRecord, token: str, output: dict[str, Any]) -> ExecutionResult | None: ...


class LocalExecutor:
    """The embedded default: interpret the ASL in-process, synchronously, with the step as a local call.

    A resumed run is replayed from its start cursor; the idempotent step makes completed tasks instant.
    """

    def __init__(self, services: Services, clock: Clock | None = None, max_concurrency: int | None = None) -> None:
        self.services = services
        self.clock = clock
        # Branches run on threads: worth it when nodes wait on I/O (LLMs, tools); pure-CPU nodes only pay
        # for the GIL hand-offs. Map states may set their own, lower MaxConcurrency.
        self.max_concurrency = max_concurrency or int(os.environ.get("STEPWISE_LOCAL_CONCURRENCY", "8"))

    def deploy(self, ref: str, asl: dict[str, Any]) -> None:
        return None

    def start(self, run: RunRecord, asl: dict[str, Any]) -> ExecutionResult:
        fresh = self.services.events.head(run.thread_id) == run.start_cursor["seq"]  # nothing after run_started yet
        interpreter = Interpreter(
            {STEP_FUNCTION: lambda payload: step(self.services, payload, fresh=fresh)},
            tokens=self.services.runs,
            clock=self.clock,
            max_workers=self.max_concurrency,
        )
        return interpreter.execute(asl, run.start_cursor, name=run.run_id)

    def send_token(self, run: RunRecord, token: str, output: dict[str, Any]) -> ExecutionResult:
        self.services.runs.complete_token(token, output)
        found = self.services.registry.get(run.graph_ref)
        assert found is not None, run.graph_ref
        return self.start(run, found[1])


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
        self.executor: Executor = executor or LocalExecutor(services, clock)
        self._asl_cache: dict[str, dict[str, Any]] = {}
        self._registered: dict[int, tuple[GraphSpec, str]] = {}

    @classmethod
    def embedded(cls, home: str | Path | None = None, *, observer: Observer | None = None, **kwargs: Any) -> Stepwise:
        from stepwise.memory.service import MemoryServices

        home = Path(home) if home is not None else default_home()
        db = SqliteDatabase(home / "stepwise.db")
        services = Services(
            events=SqliteEventStore(db),
            snapshots=FileSnapshotStore(home / "snapshots"),
            runs=SqliteRunStore(db),
            registry=SqliteRegistry(db),
            observer=observer,
            memory=MemoryServices(home=home),
            permissions=_embedded_permissions(home),
        )
        return cls(services, **kwargs)

    @classmethod
    def in_memory(cls, *, observer: Observer | None = None, **kwargs: Any) -> Stepwise:
        services = Services(
            events=MemoryEventStore(),
            snapshots=MemorySnapshotStore(),
            runs=MemoryRunStore(),
            registry=MemoryRegistry(),
            observer=observer,
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
        return self.execute(run.run_id)

    def start(
        self, spec: GraphSpec, input: dict[str, Any] | None = None, *, thread_id: str | None = None, tenant: str = "default"
    ) -> RunRecord:
        """Record a run (its ``run_started`` event and run record) without executing it: ``execute`` does
        that. ``run`` is both; the API splits them to answer with the run id before a local run ends."""
        if input is not None and not isinstance(input, dict):
            raise StepwiseError(f"the input must be a JSON object (the initial state), got {type(input).__name__}")
        _admit(input, "the input")
        ref = self.register(spec)
        thread_id = thread_id or f"thread-{uuid.uuid4().hex[:12]}"
        run_id = f"run-{uuid.uuid4().hex[:12]}"
        events = self.services.events
        head = events.head(thread_id)
        started = Event(type=RUN_STARTED, run_id=run_id, data={"update": dict(input or {}), "graph": ref})
        events.append(thread_id, head, [started])
        cursor = Cursor(thread_id=thread_id, run_id=run_id, graph=ref, seq=started.seq).model_dump(exclude_none=True)
        self.services.runs.put(
            RunRecord(run_id=run_id, thread_id=thread_id, graph_ref=ref, input=dict(input or {}), start_cursor=cursor, tenant=tenant)
        )
        self.services.notify(kind="run_started", run_id=run_id, thread_id=thread_id, graph=ref)
        run = self.services.runs.get(run_id)
        assert run is not None
        return run

    def execute(self, run_id: str) -> RunResult:
        """Execute a run recorded by ``start`` (locally: until it ends or waits; on AWS: start the execution)."""
        run = self.services.runs.get(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        return self._result(run_id, self.executor.start(run, self._asl(run.graph_ref)))

    def resume(self, run_id: str, input: dict[str, Any] | None = None) -> RunResult:
        run = self.services.runs.get(run_id)
        if run is None:
            raise StepwiseError(f"no run {run_id!r} here; list runs with `stepwise runs`")
        if run.status in ("succeeded", "failed", "cancelled"):
            raise StepwiseError(f"run {run_id!r} already {run.status}; start a new run, or fork its thread with `stepwise fork`")
        if input is not None and not isinstance(input, dict):
            raise StepwiseError("the resume input must be a JSON object, merged into the state as the human node's update")
        _admit(input, "the resume input")
        if run.status != "waiting":  # a run whose process died mid-way: replay it from its start cursor
            return self._result(run_id, self.executor.start(run, self._asl(run.graph_ref)))
        assert run.waiting is not None
        check_answer(self.services.graph(run.graph_ref), run_id, run.waiting["node"], input)
        token = run.waiting["token"]
        out = resume_step(self.services, run.waiting, dict(input or {}))
        run = self.services.runs.update(run_id, status="running", waiting=None)
        return self._result(run_id, self.executor.send_token(run, token, out))

    def _asl(self, ref: str) -> dict[str, Any]:
        asl = self._asl_cache.get(ref)
        if asl is None:
            found = self.services.registry.get(ref)
            if found is None:
                raise StepwiseError(f"graph version {ref} is not registered in this store")
            asl = self._asl_cache[ref] = found[1]  # versions are immutable, so caching by ref is safe
        return asl

    def _result(self, run_id: str, result: ExecutionResult | None) -> RunResult:
        run = self.services.runs.get(run_id)
        assert run is not None
        if result is not None and result.status == "FAILED" and run.status != "failed":  # failed outside any node
            run = self.services.runs.update(run_id, status="failed", error={"error": result.error, "cause": result.cause})
        try:
            _, state = self.services.hydrator.state(run.thread_id, reducers_of(self.services.graph(run.graph_ref)))  # no index lag
        except ReducerError as exc:  # the run cannot go on, and its state stops at the last foldable event
            if run.status not in ("failed", "cancelled"):
                run = self.services.runs.update(run_id, status="failed", error={"error": "Stepwise.ReducerError", "cause": str(exc)})
            state = {}
        return RunResult(run_id, run.thread_id, run.status, state, run.error, run.waiting, result.transitions if result else 0)

    # -- threads ------------------------------------------------------------------------------
    def _reducers(self, thread_id: str) -> dict[str, str]:
        runs = self.services.runs.list(thread_id=thread_id, limit=1)
        return reducers_of(self.services.graph(runs[0].graph_ref)) if runs else {}

    def state(self, thread_id: str, at: int | None = None) -> tuple[int, dict[str, Any]]:
        head = self.services.events.head(thread_id)
        if head == 0:
            raise StepwiseError(f"no thread {thread_id!r}; list threads with `stepwise runs`")
        if at is not None and not 0 <= at <= head:
            raise StepwiseError(f"thread {thread_id!r} has seqs 1..{head}; pick --at within that range")
        try:
            return self.services.hydrator.state(thread_id, self._reducers(thread_id), (), at=at)
        except ReducerError as exc:
            raise StepwiseError(f"the state of thread {thread_id!r} cannot be computed: {exc}; fork it at an earlier seq") from None

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

    def history(self, thread_id: str) -> list[Event]:
        events = self.services.events.read(thread_id)
        if not events:
            raise StepwiseError(f"no thread {thread_id!r}; list threads with `stepwise runs`")
        return events

    def fork(self, thread_id: str, at: int) -> str:
        """A new thread whose first event holds the state of ``thread_id`` at ``at``."""
        _, state = self.state(thread_id, at=at)
        new_thread = f"thread-{uuid.uuid4().hex[:12]}"
        event = Event(type=FORKED, data={"from": thread_id, "at": at, "state": state})
        self.services.events.append(new_thread, 0, [event])
        return new_thread

    def runs(self, *, thread_id: str | None = None, limit: int = 50) -> list[RunRecord]:
        return self.services.runs.list(thread_id=thread_id, limit=limit)


def _embedded_permissions(home: Path) -> Any:
    """Tool roles in ``<home>/api.db`` and the capability key in ``<home>/capability.key`` (made on first use)."""
    from stepwise.tools.permissions import PermissionManager

    return PermissionManager.embedded(home)
