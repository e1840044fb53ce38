"""The stateless step: hydrate → run node → append the delta (conditional write) → route.

The same function serves the local engine and the ``step`` Lambda. Its input is the Task payload
``{node, cursor, mode?, enter?, index?, item?, join?, token?}``; its output is the next cursor. It is
idempotent: a step's events carry a key derived from (run, scope, node, input seq), so a retried or
replayed step returns the output it recorded instead of running again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sysconfig
import time
import traceback
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field

from stepwise.errors import MaxIterationsError, NodeError, NodeTimeoutError, RateLimitedError, StateConflictError, TaskError
from stepwise.extras import LLM_KINDS
from stepwise.graph.conditions import evaluate
from stepwise.graph.limits import LimitError, Limits, a_or_an, check_value
from stepwise.graph.spec import END, FAILED, GraphSpec
from stepwise.graph.topology import is_end, locate, topology
from stepwise.runtime.graph_cache import per_spec, reducers_of
from stepwise.runtime.mutation import Shape, changed_in_place, shape
from stepwise.runtime.nodes import NodeContext, Offload, run_node, run_node_async
from stepwise.runtime.services import Services
from stepwise.state import fold as folding
from stepwise.state import reducers as reducing
from stepwise.state.events import INTERRUPT, JOIN, NODE_FAILED, NODE_UPDATE, RUN_FAILED, RUN_FINISHED, RUN_STARTED, Event
from stepwise.state.ports import DuplicateKeyError, RunStatus, RunTransitionError
from stepwise.state.waits import TIMEOUT_ERROR, timeout_error, wait_deadline

APPEND_ATTEMPTS = 20


class Cursor(BaseModel):
    """The whole Step Functions payload between states: references and routing, never state."""

    model_config = ConfigDict(extra="allow")
    thread_id: str
    run_id: str
    graph: str
    seq: int = Field(ge=0)
    route: str | None = None
    frames: list[tuple[str, int]] = Field(default_factory=list)
    visits: dict[str, int] = Field(default_factory=dict)
    items: list[dict[str, Any]] | None = None


class StepInput(BaseModel):
    """What the step is invoked with: the node, the cursor and its mode."""

    model_config = ConfigDict(extra="forbid")
    node: str
    cursor: Cursor
    mode: Literal["run", "finish", "fail", "join"] = "run"
    enter: str | None = None
    index: int | None = None
    item: dict[str, Any] | None = None
    join: str | None = None
    token: str | None = None
    stay: str | None = None  # the route that is the Task's Next
    jump: dict[str, str] | None = None  # any other route -> the error name its Catch matches
    handover: bool = False  # a top-level node Task: may hand the run over to a continuation execution


def route_after(spec: GraphSpec, node: str, state: dict[str, Any]) -> str:
    """The next node by the node's outgoing conditions (first match wins), else its plain edge, else END."""
    topo = per_spec("topology", spec, topology)
    for cond in topo.conditions.get(node, []):
        if cond.when is None or evaluate(cond.when, state):
            return END if is_end(cond.target) else cond.target
    edges = topo.edges.get(node, [])
    return (END if is_end(edges[0]) else edges[0]) if edges else END


def task_key(cursor: Cursor, scope: str, node: str, mode: str) -> str:
    """Idempotency key of one logical task: (run, scope, node, mode, input seq). It also prefixes the keys of
    the LLM and tool calls the task makes, so it is unique beyond the thread too."""
    return f"{cursor.run_id}|{scope}|{node}|{mode}|{cursor.seq}"


def next_cursor(cursor: Cursor, node: str, frames: list[Any], changes: dict[str, Any], seq: int) -> dict[str, Any]:
    """The step's output: its input cursor moved on. Only ``changes`` (route, items…) is stored with the
    event; everything else is rebuilt from the input, so replaying a step gives back the same cursor."""
    out = cursor.model_dump(exclude_none=True)
    out.pop("item", None)
    visits = dict(cursor.visits)
    visits[node] = visits.get(node, 0) + 1
    out.update(changes, frames=[list(f) for f in frames], visits=visits, seq=seq)
    return out


@dataclass
class _Pending:
    """A step that has hydrated its state and built its context; only the node itself remains to run."""

    cursor: Cursor
    node: str
    local: str
    spec: GraphSpec
    frames: list[Any]
    scope: str
    key: str
    seq: int
    state: dict[str, Any]
    reducer_names: dict[str, str]
    ctx: NodeContext
    started: float = 0.0
    arrived: float = 0.0  # when the step began, for the node's timeout (the engine's clock started a little earlier)
    before: Shape = field(default_factory=lambda: ({}, []))  # the state's shape as the node got it (``runtime.mutation``)


def step(services: Services, payload: dict[str, Any], *, resume_input: dict[str, Any] | None = None, fresh: bool = False) -> dict[str, Any]:
    """Run one Task. ``fresh`` (the local engine's first pass over a new run, where no task can have
    completed yet) skips the completed-task lookup; the unique key still guards the append."""
    payload = arrived(payload)
    pending = _begin(services, payload, resume_input, fresh)
    if isinstance(pending, dict):
        return leave(payload, pending)
    try:
        update = run_node(pending.state, pending.ctx)
    except Exception as exc:  # noqa: BLE001 - any node error is recorded, then re-raised as NodeError
        _failed(services, pending, exc)
    return leave(payload, _end(services, pending, update))


async def astep(services: Services, payload: dict[str, Any], *, fresh: bool = False, offload: Offload | None = None) -> dict[str, Any]:
    """``step`` for a branch on the local engine's event loop: an ``async def`` node is awaited (its wait
    holds no thread); a blocking node runs on ``offload``'s threads; quick ones run inline."""
    payload = arrived(payload)
    pending = _begin(services, payload, None, fresh)
    if isinstance(pending, dict):
        return leave(payload, pending)
    try:
        update = await run_node_async(pending.state, pending.ctx, offload)
    except Exception as exc:  # noqa: BLE001 - any node error is recorded, then re-raised as NodeError
        _failed(services, pending, exc)
    return leave(payload, _end(services, pending, update))


def _begin(services: Services, payload: dict[str, Any], resume_input: dict[str, Any] | None, fresh: bool) -> _Pending | dict[str, Any]:
    """Everything before the node runs; a dict is the step's whole output (finish, fail, join, a replay)."""
    arrived = time.perf_counter()
    req = StepInput.model_validate(payload)
    known = services.heads.pop(req.cursor.thread_id, None)  # whatever this step is, the hint is for it alone
    if req.mode == "finish":
        return _finish(services, req)
    if req.mode == "fail":
        return _fail(services, req)
    cursor = req.cursor
    frames = [tuple(f) for f in cursor.frames]
    if req.enter is not None:
        segment = req.enter if req.index is None else f"{req.enter}/{req.index}"
        parent = folding.scope_of(frames)
        frames.append((f"{parent}/{segment}" if parent else segment, cursor.seq))
    scope = folding.scope_of(frames)
    key = task_key(cursor, scope, req.node, req.mode)
    done = None if fresh else services.events.by_key(cursor.thread_id, key)
    if done is not None:  # replay or retry: never run a completed step twice
        out = next_cursor(cursor, req.node, frames, done.data["next"], done.seq)
        if req.token is not None and services.runs.token_output(req.token) is None:
            services.runs.complete_token(req.token, out)  # a human's answer recorded before a crash: hand it over
        return out

    if req.handover and req.mode == "run" and not frames and req.token is None:
        _maybe_hand_over(services, req)

    root = services.graph(cursor.graph)
    spec, local = locate(root, req.node) if req.mode != "join" else (root, req.node)
    reducer_names = reducers_of(root)
    if req.join is not None:
        try:
            _join(services, cursor, frames, scope, req.join, reducer_names, key)
        except NodeError as exc:  # recorded like a node's failure, so the run's error names the join and the fix
            _record_failure(services, cursor, scope, req.node, exc, "", state=f"{req.node}.join" if req.mode == "join" else None)
            raise
    if req.mode == "join":
        return cursor.model_dump(exclude_none=True) | {"route": END}

    node_spec = spec.graph.nodes[local]
    if node_spec.kind == "human" and req.token is not None:
        return _interrupt(services, req, scope, key, frames)
    skip = known is not None and known[1] == cursor.run_id and not frames and req.mode == "run" and cursor.run_id not in services.cancelling
    after = known[0] if skip and known is not None else None
    seq, state = _hydrate(services, cursor, reducer_names, frames, check=resume_input is None, known=after)
    visits = dict(cursor.visits)
    visits[req.node] = visits.get(req.node, 0) + 1
    limit = spec.graph.max_iterations
    if visits[req.node] > limit:
        message = (
            f"node {req.node!r} would run {visits[req.node]} times, over graph.max_iterations={limit}; "
            "raise max_iterations or add an exit condition to the cycle"
        )
        error = MaxIterationsError(message)
        error.fix = f"raise graph.max_iterations above {limit}, or add a condition that leaves the cycle sooner"
        _record_failure(services, cursor, scope, req.node, error, "")
        raise error

    ctx = NodeContext(
        run_id=cursor.run_id,
        thread_id=cursor.thread_id,
        node=req.node,
        scope=scope,
        turn=visits[req.node] - 1,
        key=key,
        spec=spec,
        node_spec=node_spec,
        item=req.item,
        resume_input=resume_input,
        services=services,
    )
    if node_spec.kind in LLM_KINDS:
        services.events.quiet()  # its model call's wait hides the store's upkeep (a WAL checkpoint)
    if services.observer is not None:
        services.notify(kind="node_started", run_id=cursor.run_id, node=req.node, scope=scope)
    before = shape(state)
    return _Pending(cursor, req.node, local, spec, frames, scope, key, seq, state, reducer_names, ctx, time.perf_counter(), arrived, before)


def _hydrate(
    services: Services, cursor: Cursor, reducer_names: dict[str, str], frames: folding.Frames, *, check: bool, known: int | None = None
) -> tuple[int, dict[str, Any]]:
    """The step's state; ``check``: the cancel check too, read with the state's tail (one statement where
    the store can): a cancelled run starts no further node. ``known``: the seq of the previous node's append,
    made by this process with the run not cancelled as it committed (``Services.heads``): if the cached state
    is at that seq, nothing is read (a writer that appended meanwhile makes this step's conditional append
    fail, and the step is retried with a fresh read)."""
    if not check:
        return services.hydrator.state(cursor.thread_id, reducer_names, frames)
    cancelled: list[bool] = []

    def read(after: int, scopes: Collection[str]) -> tuple[list[Event], int]:
        if after == known:
            cancelled.append(False)
            return [], after
        tail, head, found = services.runs.tail_and_cancelled(services.events, cursor.thread_id, after, scopes, cursor.run_id)
        cancelled.append(found)
        return tail, head

    seq, state = services.hydrator.state(cursor.thread_id, reducer_names, frames, read=read)
    if cancelled[0] if cancelled else services.runs.status(cursor.run_id) == "cancelled":
        raise RunCancelledError(f"run {cursor.run_id!r} was cancelled; no further node runs")
    return seq, state


def _failed(services: Services, p: _Pending, exc: Exception) -> NoReturn:
    tb = traceback.format_exc()
    if changed_in_place(p.state, p.before):  # the cache holds what the node did to it: the retry reads the log
        services.hydrator.forget(p.cursor.thread_id)
    _record_failure(services, p.cursor, p.scope, p.node, exc, tb)
    services.notify(kind="node_failed", run_id=p.cursor.run_id, node=p.node, error=f"{type(exc).__name__}: {exc}")
    if getattr(exc, "error_name", None) == RateLimitedError.error_name:  # queue for later, not a failure
        raise RateLimitedError(f"node {p.node!r} is rate-limited: {exc}") from exc
    raise NodeError(f"node {p.node!r} failed: {type(exc).__name__}: {exc}") from exc


def _end(services: Services, p: _Pending, update: dict[str, Any]) -> dict[str, Any]:
    """Fold the update, route, append (conditional write) and move the cursor on."""
    cursor = p.cursor
    _overran(services, p)
    try:
        _unchanged(p)
        check_update(p.node, update)
        new_state = reducing.apply(p.state, update, p.reducer_names)
        route = route_after(p.spec, p.local, new_state)
    except Exception as exc:  # noqa: BLE001 - a reducer or condition error fails the node the same way
        _failed(services, p, exc)
    ctx = p.ctx
    changes: dict[str, Any] = {"route": route}
    if ctx.items is not None:
        changes["items"] = ctx.items
    changes.update(ctx.cursor)
    elapsed_ms = round((time.perf_counter() - p.started) * 1000, 3)
    node_event = Event(
        type=NODE_UPDATE,
        run_id=cursor.run_id,
        node=p.node,
        scope=p.scope,
        key=p.key,
        data={"update": update, "next": changes, "ms": elapsed_ms},
    )
    recorded, cancelled = _append(services, cursor.thread_id, p.seq, [*ctx.records, node_event], p.frames)
    new_seq = recorded.seq
    if recorded is node_event:
        services.hydrator.remember(cursor.thread_id, p.frames, new_seq, new_state, p.reducer_names)
        if cancelled is False:  # the next node of this run may skip its read (see Services.heads)
            if len(services.heads) >= 4096:
                services.heads.clear()
            services.heads[cursor.thread_id] = (new_seq, cursor.run_id)
        _after_commit(services, ctx)
    if services.observer is not None:
        services.notify(
            kind="node_finished",
            run_id=cursor.run_id,
            node=p.node,
            scope=p.scope,
            seq=new_seq,
            route=route,
            update=update,
            ms=elapsed_ms,
        )
    return next_cursor(cursor, p.node, p.frames, recorded.data["next"], new_seq)


def _unchanged(p: _Pending) -> None:
    """Refuse a node that changed its ``state`` in place: the change is in no update, so it is never logged, and
    a resumed run would not have it (``runtime.mutation``). A NodeError, like a bad return value."""
    change = changed_in_place(p.state, p.before)
    if change is not None:
        error = NodeError(f"node {p.node!r} changed the state it was given in place ({change}); such a change is not stored")
        error.fix = f"leave `state` as it is and return the change from node {p.node!r}, e.g. {{'messages': [new_message]}}"
        raise error


def _overran(services: Services, p: _Pending) -> None:
    """A function node that finished past its ``config.timeout_seconds`` finished too late: the engine (Step
    Functions, or the local interpreter) has failed its Task with ``States.Timeout`` and the run has moved on,
    so its update is dropped, not appended after the run failed. On AWS the Lambda runs on after the Task
    times out; locally a blocking function's thread does. The engine's clock started before the step's (the
    invocation), so a node finishing just inside its time by the step's clock may already have been given up
    on: the run's status (failed by then) settles those."""
    node = p.ctx.node_spec
    limit = node.config.get("timeout_seconds") if node.kind == "function" else None
    if limit and (time.perf_counter() - p.arrived > float(limit) or services.runs.status(p.cursor.run_id) == "failed"):
        raise NodeTimeoutError(f"node {p.node!r} ran past its config.timeout_seconds ({limit} s); its update is dropped")


#: What a node's update is held to: what the log can store and read back (the ceilings of ``Limits``, past which
#: JSON encoding itself fails), not the admission limits for a run's input, which a node's own data may exceed.
STORABLE = Limits(values=100_000_000, depth=256, int_digits=4_300)


def check_update(node: str, update: dict[str, Any]) -> None:
    """Refuse an update that would not read back as written: the log stores JSON, so a set came back as its
    str() and NaN as null. A NodeError, like a node's bad return type, naming the node, the channel path and
    what to return instead."""
    for channel, value in update.items():
        if not isinstance(channel, str):  # JSON keys are text: 1 read back as "1", a tuple failed the append
            kind = type(channel).__name__
            error = NodeError(f"node {node!r} returned {a_or_an(kind)} {kind} key {channel!r}; channel names are text")
            error.fix = f"return {{{str(channel)!r}: ...}}, a channel name as a string"
            raise error
        try:
            check_value(value, STORABLE, what=f"the update of node {node!r}", where=channel, verb="return")
        except LimitError as exc:
            error = NodeError(str(exc))
            error.fix = f"make node {node!r} return JSON values only (objects, lists, text, numbers, booleans, null)"
            raise error from None


def _after_commit(services: Services, ctx: NodeContext) -> None:
    """Work the node deferred until its update is in the log (``NodeContext.after_commit``: "Consolidate to
    Long-term" after the checkpoint). A duplicate that lost on the key skips it: the winner ran it. It never
    fails the step, whose update is already committed."""
    for work in ctx.after_commit:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - the checkpoint stands; report and go on
            services.notify(kind="after_commit_failed", run_id=ctx.run_id, node=ctx.node, error=f"{type(exc).__name__}: {exc}")


def _append(services: Services, thread_id: str, seq: int, events: list[Event], frames: list[Any]) -> tuple[Event, bool | None]:
    """Append the step's events; return its node event as stored (a duplicate's, if it lost on the key), and
    for a main-flow append, whether the run was cancelled as it committed (None: not known).

    A branch (Parallel/Map) only sees its ancestors up to its fork, which are suspended, and its own
    scope, whose steps run one at a time (a duplicate of the same task loses on the key): it appends at
    the head, whatever its siblings wrote. The main flow appends only if nothing it can see was written
    since it read (a conditional write); if something was, the step must re-run with fresh state.
    """
    try:
        if frames:
            return services.events.append_at_head(thread_id, events)[-1], None
        view = folding.levels(frames)
        expected = seq
        for _ in range(APPEND_ATTEMPTS):
            try:
                appended, cancelled = services.runs.append_and_cancelled(services.events, thread_id, expected, events, events[-1].run_id)
                return appended[-1], cancelled
            except StateConflictError:
                head = services.events.head(thread_id)
                newer = services.events.read(thread_id, after=expected, upto=head)
                if any(folding.is_visible(e, view) and e.type in (NODE_UPDATE, JOIN, RUN_STARTED) for e in newer):
                    raise StateConflictError(
                        thread_id, expected, detail=f"thread {thread_id!r} changed under this step; it will be retried"
                    ) from None
                expected = head
    except DuplicateKeyError:
        done = services.events.by_key(thread_id, str(events[-1].key))
        assert done is not None
        return done, None
    raise StateConflictError(thread_id, detail=f"thread {thread_id!r}: too many concurrent writers; the step will be retried")


def _join(services: Services, cursor: Cursor, frames: list[Any], scope: str, block: str, reducer_names: dict[str, str], key: str) -> None:
    join_key = f"{key}|join"
    if services.events.by_key(cursor.thread_id, join_key) is not None:
        return
    branch_events = services.events.read(cursor.thread_id, after=cursor.seq)
    refs = folding.join_refs(branch_events, scope, block)
    by_seq = {e.seq: e for e in branch_events}
    prefix = f"{scope}/{block}/" if scope else f"{block}/"
    conflicts = folding.replace_conflicts([by_seq[s] for s in refs], reducer_names, len(prefix))
    if conflicts:
        channel, a, b = conflicts[0]
        error = NodeError(
            f"{_branch_name(services, cursor, block, a)} and {_branch_name(services, cursor, block, b)} both wrote channel "
            f"{channel!r}, whose reducer is replace, so the result would depend on which finished last"
        )
        error.fix = f"declare `{channel}: append` (or merge/add) under `state:`, or let the branches write different channels"
        raise error
    event = Event(type=JOIN, run_id=cursor.run_id, scope=scope, key=join_key, data={"block": block, "refs": refs})
    events = [event]
    # a failure a redrive has since made good (the node's update came after it) is not one the join reports
    updated = {(e.scope, e.node): e.seq for e in branch_events if e.type == NODE_UPDATE}
    failures = [
        {"branch": e.scope[len(prefix) :], "node": e.node, "error": e.data.get("error")}
        for e in branch_events
        if e.type == NODE_FAILED and e.scope.startswith(prefix) and updated.get((e.scope, e.node), 0) < e.seq
    ]
    if failures:  # on_error: continue — the join (and whatever reads the state next) sees who failed and why
        update = {"failures": failures}
        events.append(Event(type=NODE_UPDATE, run_id=cursor.run_id, scope=scope, key=f"{join_key}|failures", data={"update": update}))
    head = services.events.head(cursor.thread_id)
    try:
        services.events.append(cursor.thread_id, head, events)
    except DuplicateKeyError:
        return
    except StateConflictError:
        raise StateConflictError(cursor.thread_id, head, detail="the join raced another writer; it will be retried") from None


def _branch_name(services: Services, cursor: Cursor, block: str, branch: str) -> str:
    """``branch 'search_web'`` for the first branch of ``p:split`` (``Map item 2`` of a Map), for error messages."""
    index = branch.split("/", 1)[0]
    if block.startswith("m:"):
        return f"Map item {index}"
    with contextlib.suppress(LookupError, ValueError, IndexError):
        spec, split = locate(services.graph(cursor.graph), block[2:])
        return f"branch {topology(spec).fanout[split][int(index)]!r}"
    return f"branch {index} of {block}"


class HandoverError(TaskError):
    """Not a failure: the run goes on in a continuation execution that starts at this Task; the compiled
    Catch for ``Stepwise.Continue`` ends this execution at its ``Continued`` state."""

    error_name = "Stepwise.Continue"
    control_flow = True  # the local interpreter formats no stack trace for it


def _maybe_hand_over(services: Services, req: StepInput) -> None:
    """Before a top-level node runs: if this execution has appended ``services.continue_after`` events or
    more (Step Functions stops an execution at 25,000 history events), start a continuation execution at
    this node with this cursor, then end this one. Nothing is lost (the cursor is the whole payload) and
    nothing is repeated (this node has not run; every step's write is keyed)."""
    cursor = req.cursor
    extra = cursor.model_extra or {}
    base = extra.get("base")
    limit = services.continue_after
    if services.handover is None or limit <= 0 or not isinstance(base, int) or cursor.seq - base < limit:
        return
    number = int(extra.get("continuation", 0)) + 1
    drop = {"handover", "jumped", "error", "start_at"}
    nxt = {k: v for k, v in cursor.model_dump(exclude_none=True).items() if k not in drop}
    nxt.update(start_at=req.node, base=cursor.seq, continuation=number, execution=f"{cursor.run_id}--c{number}")
    services.handover(cursor.run_id, nxt, number)
    services.notify(kind="continued", run_id=cursor.run_id, node=req.node, seq=cursor.seq, continuation=number)
    raise HandoverError(f"run {cursor.run_id!r} continues in execution {number} at {req.node!r} (seq {cursor.seq})")


class RunCancelledError(RuntimeError):
    """The run was cancelled: no further node starts (a node already running finishes its own write)."""

    error_name = "Stepwise.RunCancelled"


def interrupt_id(token: str) -> str:
    """A short, stable id for one wait (the same across replays), safe to show: not the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _interrupt(services: Services, req: StepInput, scope: str, key: str, frames: list[Any]) -> dict[str, Any]:
    """First half of a human node: record the interrupt and park the run until a resume sends the token.

    Replays come here too (the local engine re-walks a run from its start). Recovery cases, after a
    process died between two writes: the answer was recorded but never handed to the token → hand it
    over now; the interrupt was recorded but the run never became ``waiting`` → make it wait again."""
    cursor = req.cursor
    assert req.token is not None
    if services.runs.token_output(req.token) is not None:
        return {"waiting": req.node}  # answered: the interpreter reads the token's output and goes on
    answered = services.events.by_key(cursor.thread_id, key)
    if answered is not None:
        services.runs.complete_token(req.token, next_cursor(cursor, req.node, frames, answered.data["next"], answered.seq))
        return {"waiting": req.node}
    interrupt_key = f"{key}|interrupt"
    found = services.events.by_key(cursor.thread_id, interrupt_key)
    if found is None:
        spec, local = locate(services.graph(cursor.graph), req.node)
        waiting = {
            "node": req.node,
            "prompt": spec.graph.nodes[local].prompt or f"Input needed at {req.node}",
            "token": req.token,
            "interrupt_id": interrupt_id(req.token),
            "payload": req.model_dump(exclude_none=True, exclude={"token"}) | {"frames_at": [list(f) for f in frames]},
            # config.timeout_seconds: when the wait fails with States.Timeout (the Task's TimeoutSeconds on AWS)
            **wait_deadline(spec.graph.nodes[local].config.get("timeout_seconds"), services.clock.now()),
        }
        event = Event(type=INTERRUPT, run_id=cursor.run_id, node=req.node, scope=scope, key=interrupt_key, data=waiting)
        services.events.append_at_head(cursor.thread_id, [event])
        expect: tuple[RunStatus, ...] = ("running", "waiting")  # a second human in a parallel block waits too
    else:
        waiting = dict(found.data)
        waiting.setdefault("interrupt_id", interrupt_id(req.token))
        if found.data.get("token") != req.token:  # a new execution (a redrive) waits with a token, and a timer, of its own
            waiting.update(wait_deadline(found.data.get("timeout_seconds"), services.clock.now()))
        waiting["token"] = req.token
        expect = ("running",)  # re-wait only a run whose "waiting" write was lost
    with contextlib.suppress(RunTransitionError):  # cancelled (or already waiting): leave it so
        services.runs.update(
            cursor.run_id,
            expect=expect,
            status="waiting",
            waiting=waiting,
            interrupt_id=waiting["interrupt_id"],
            owner=None,
            lease_until=None,
            steps=sum(cursor.visits.values()),  # the nodes that ran before this one waits
            **run_spend(services, cursor.run_id, cursor.thread_id),
        )
        services.notify(kind="waiting", run_id=cursor.run_id, node=req.node, prompt=waiting["prompt"])
    return {"waiting": req.node}


def resume_step(services: Services, waiting: dict[str, Any], resume_input: dict[str, Any]) -> dict[str, Any]:
    """Second half of a human node: apply the input as the node's update and compute the next cursor."""
    payload = {k: v for k, v in waiting["payload"].items() if k != "frames_at"}
    return step(services, payload, resume_input=resume_input)


def _record_failure(
    services: Services, cursor: Cursor, scope: str, node: str, exc: BaseException, tb: str, *, state: str | None = None
) -> None:
    data = {"error": f"{type(exc).__name__}: {exc}", "type": type(exc).__name__, "traceback": tb}
    if state is not None:  # the failed Task is not the node's own (a block's join Task): where a redrive starts
        data["state"] = state
    where = user_frame(exc)
    fix = getattr(exc, "fix", None) or (f"correct the code at {where}, then run the graph again" if where else None)
    data.update({k: v for k, v in {"where": where, "fix": fix}.items() if v})
    services.events.append_at_head(cursor.thread_id, [Event(type=NODE_FAILED, run_id=cursor.run_id, node=node, scope=scope, data=data)])


_LIBRARY = (str(Path(__file__).resolve().parents[1]), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"])


def user_frame(exc: BaseException) -> str | None:
    """``file:line in function`` of the innermost traceback frame in the user's own code (not Stepwise's,
    not an installed library's), or None when the error did not come from user code."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = str(Path(frame.filename).resolve())
        if not path.startswith(_LIBRARY) and not frame.filename.startswith("<"):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return None


def cause_message(cause: str) -> str:
    """The message inside a Step Functions ``Cause`` (a Lambda error is JSON with ``errorMessage``)."""
    try:
        data = json.loads(cause)
    except ValueError:
        return cause
    return str(data.get("errorMessage") or cause) if isinstance(data, dict) else cause


def run_spend(services: Services, run_id: str, thread_id: str) -> dict[str, Any]:
    """The run's LLM spend so far (``cost_usd``, ``tokens``) from its ``llm_call`` events, written onto
    its record when it waits or ends so a runs list can filter and chart by cost from an index."""

    def start() -> int:
        run = services.runs.get(run_id)
        return int((run.start_cursor if run is not None else {}).get("seq", 0) or 0)

    cost, tokens = services.events.spend(thread_id, run_id, start)
    return {"cost_usd": round(cost, 9), "tokens": tokens}


def _finish(services: Services, req: StepInput) -> dict[str, Any]:
    cursor = req.cursor
    finished = Event(type=RUN_FINISHED, run_id=cursor.run_id, key=task_key(cursor, "", END, "finish"), data={"seq": cursor.seq})
    try:  # compare-and-set with the final event (one transaction where the store can): a cancel that landed first wins
        services.runs.end(
            services.events,
            cursor.thread_id,
            finished,
            expect=("running",),
            status="succeeded",
            finished_at=time.time(),
            waiting=None,
            steps=sum(cursor.visits.values()),
            lease_until=None,
        )
    except RunTransitionError as exc:
        if exc.status == "cancelled":
            raise RunCancelledError(f"run {cursor.run_id!r} was cancelled; no further node runs") from None
        if exc.status != "succeeded":  # succeeded: a replay, already recorded
            raise
    services.notify(kind="run_finished", run_id=cursor.run_id)
    return cursor.model_dump(exclude_none=True)


def _fail(services: Services, req: StepInput) -> dict[str, Any]:
    cursor = req.cursor
    raw = (cursor.model_extra or {}).get("error") or {}
    after = services.events.read(cursor.thread_id, after=cursor.seq)
    failed = [e for e in after if e.type == NODE_FAILED and e.run_id == cursor.run_id]
    error: dict[str, Any] = {"error": raw.get("Error"), "cause": raw.get("Cause")}
    timeout = timeout_error(after, cursor.run_id) if raw.get("Error") == TIMEOUT_ERROR else None
    if failed:
        last = failed[-1]
        error.update(node=last.node, message=last.data.get("error"), traceback=last.data.get("traceback"))
        error.update({k: last.data[k] for k in ("where", "fix") if last.data.get(k)})
    elif timeout is not None:  # a human wait's deadline passed (Step Functions' own Cause is empty)
        error.update(timeout)
    elif raw.get("Cause"):  # failed outside any node (a Lambda error, a timeout): the cause is all there is
        error["message"] = cause_message(str(raw["Cause"]))
    timed_out = (cursor.model_extra or {}).get("timed_out")  # the function node whose Task timed out (compiler)
    if raw.get("Error") == TIMEOUT_ERROR and not failed and timeout is None:  # a function node's run, not a wait
        if isinstance(timed_out, str):
            limit = _timeout_of(services, cursor, timed_out)
            error.update(node=timed_out, message=f"node {timed_out!r} did not finish within its config.timeout_seconds ({limit} s)")
        error["message"] = error.get("message") or "a Task did not finish within its TimeoutSeconds"
        error["fix"] = "raise the node's config.timeout_seconds, or make it finish sooner"
    point = _redrive_point(cursor, failed[-1] if failed else None) or _timed_out_point(cursor, timed_out)
    if point is not None:
        error["redrive"] = point
    final = Event(type=RUN_FAILED, run_id=cursor.run_id, key=task_key(cursor, "", FAILED, "fail"), data=error)
    try:  # compare-and-set with the final event: a cancelled run stays cancelled
        services.runs.end(
            services.events,
            cursor.thread_id,
            final,
            expect=("running", "waiting"),  # waiting: a wait timed out, or a branch failed beside one (Step Functions)
            status="failed",
            finished_at=time.time(),
            error=error,
            waiting=None,
            interrupt_id=None,
            steps=sum(cursor.visits.values()),  # the nodes that completed before the failure
        )
    except RunTransitionError as exc:
        with contextlib.suppress(DuplicateKeyError):  # the failure is logged whatever the record says (a replay's already is)
            services.events.append_at_head(cursor.thread_id, [final])
        if exc.status not in ("failed", "cancelled"):
            raise
    services.notify(kind="run_failed", run_id=cursor.run_id, error=error)
    return cursor.model_dump(exclude_none=True)


_BLOCK = re.compile(r"^(?P<kind>[pm]):(?P<name>.+?)/\d+(?:/|$)")
_NOT_CURSOR = ("error", "handover", "jumped", "start_at", "execution", "timed_out")


def _timeout_of(services: Services, cursor: Cursor, node: str) -> Any:
    spec = services.graph(cursor.graph).graph.nodes.get(node)
    return spec.config.get("timeout_seconds") if spec is not None else "?"


def _timed_out_point(cursor: Cursor, node: Any) -> dict[str, Any] | None:
    """A top-level function node that timed out is redriven from its own Task, with the cursor that entered it."""
    return {"start_at": node, "cursor": _entered(cursor)} if isinstance(node, str) else None


def _entered(cursor: Cursor) -> dict[str, Any]:
    """The cursor that entered the failed state: the fail step's input without what the Catch and Pass added."""
    return {k: v for k, v in cursor.model_dump(exclude_none=True).items() if k not in _NOT_CURSOR}


def _redrive_point(cursor: Cursor, failed: Event | None) -> dict[str, Any] | None:
    """Where a redrive of this failed run starts: the top-level state that failed (the node's Task, a block's
    join Task, or the Parallel/Map block a branch failed in) with the cursor that entered it. None when the
    run failed outside any node (a timeout): the redrive replays from the run's start cursor instead."""
    if failed is None or not failed.node:
        return None
    state: str | None = failed.data.get("state") or failed.node
    if failed.scope:
        match = _BLOCK.match(failed.scope)
        state = f"{match['name']}.{'fanout' if match['kind'] == 'p' else 'map'}" if match else None
    if state is None:
        return None
    return {"start_at": state, "cursor": _entered(cursor)}


class RouteJump(TaskError):
    """Not a failure: the node routed to a target other than its Task's ``Next``. The compiled Catch for
    ``error_name`` goes there; the message is the next cursor, which the target's step reads back."""

    control_flow = True  # the local interpreter formats no stack trace for it

    def __init__(self, error_name: str, cursor: dict[str, Any]) -> None:
        super().__init__(json.dumps(cursor, separators=(",", ":")))
        self.error_name = error_name  # type: ignore[misc]


def arrived(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with its real cursor: after a route jump the input is the jumping Task's input plus the
    caught error (``jumped``), whose message is the cursor the jumping step returned."""
    cursor = payload.get("cursor")
    if not isinstance(cursor, dict) or "jumped" not in cursor:
        return payload
    try:
        message = json.loads(cursor["jumped"]["Cause"])["errorMessage"]
        return {**payload, "cursor": json.loads(message)}
    except (KeyError, TypeError, ValueError) as exc:
        raise NodeError(f"a route jump arrived without a readable cursor ({type(exc).__name__}: {exc})") from None


def leave(payload: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Return the cursor if its route is the Task's Next; otherwise jump (raise) to the route's Catch."""
    jump = payload.get("jump")
    stay = payload.get("stay")
    route = out.get("route")
    if stay is None or route == stay or "waiting" in out:
        return out
    if jump and route in jump:
        raise RouteJump(jump[route], out)
    raise NodeError(f"node {payload.get('node')!r} routed to {route!r}, which none of its conditions names; add an `else:` condition")
