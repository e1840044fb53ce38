"""A local interpreter of the ASL subset the compiler emits — the embedded stand-in for Step Functions.

Task resources resolve through ``functions`` (Lambda name → Python callable). A
``.waitForTaskToken`` task whose token has no recorded output suspends its branch; the execution
then reports ``WAITING``. Running the same execution again (same name, same input) replays it:
the step is idempotent, so completed tasks return their recorded output at once, and a token that
has been completed in the meantime lets the execution continue. That is how a run survives a
process exit. A token completed with ``task_failure(error, cause)`` (the local SendTaskFailure: how the
local engine applies a wait Task's ``TimeoutSeconds``: the execution has returned, so nothing here times it) fails the Task with that
error, for its Retry and Catch. The clock is injectable so tests never sleep.

Concurrency: a sequential path runs synchronously, with no event loop (the interpreter's coroutines are
driven by hand and never suspend). A Parallel or Map runs its branches as tasks on the calling thread's
event loop: a branch that awaits (an ``async_functions`` entry, e.g. the local step running an
``async def`` node) holds no thread while it waits, so the fan-out costs one latency, not one per
branch. Plain (synchronous) functions called from a branch run on a thread pool, so blocking calls
still overlap. Results keep branch order whatever order branches finish in.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
import threading
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import orjson

from stepwise.aio import run_sync
from stepwise.asl import intrinsics, paths
from stepwise.asl.retry import delay, pick_catcher, pick_retrier
from stepwise.clock import Clock, FakeClock, SystemClock
from stepwise.errors import StepwiseError, asl_error_name

__all__ = ["TASK_FAILURE", "Clock", "ExecutionResult", "FakeClock", "Interpreter", "Parked", "StatesError", "Suspended", "task_failure"]

LambdaFn = Callable[[dict[str, Any]], Any]
AsyncLambdaFn = Callable[[dict[str, Any]], Awaitable[Any]]
T = TypeVar("T")


class TokenStore(Protocol):
    def token_output(self, token: str) -> dict[str, Any] | None: ...


#: The key of a token output that fails its Task instead of completing it (``task_failure``).
TASK_FAILURE = "Stepwise.TaskFailure"


def task_failure(error: str, cause: str) -> dict[str, Any]:
    """A token output that fails the waiting Task with ``error`` (Step Functions' SendTaskFailure, or its
    ``States.Timeout``), stored where an answer would be so a replay in any process sees it."""
    return {TASK_FAILURE: {"Error": error, "Cause": cause}}


class StatesError(StepwiseError):
    """An ASL error with a name (``States.TaskFailed``, ``Stepwise.NodeError``…) and a cause."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


class Suspended(Exception):
    """A branch is waiting for a task token."""


class Parked(Suspended):
    """A retry would wait at least ``park_after`` seconds for an error in ``park_errors`` (an LLM 429 after its
    own retries): instead of holding the process, the execution stops here; the executor records when to
    continue, and the replay then re-runs the state (completed tasks are instant)."""

    def __init__(self, state: str, error: str, seconds: float) -> None:
        super().__init__(f"{state}: {error}, retry in {seconds:g} s")
        self.state, self.error, self.seconds = state, error, seconds


@dataclass
class ExecutionResult:
    """How an execution ended: SUCCEEDED, FAILED or WAITING, with its output or error."""

    status: str  # SUCCEEDED | FAILED | WAITING
    output: Any = None
    error: str | None = None
    cause: str | None = None
    transitions: int = 0


@dataclass
class _Path:
    """Where a branch of execution is, for deterministic task tokens across replays."""

    name: str
    visits: Counter[str] = field(default_factory=Counter)
    live: bool = False  # running as a task on an event loop (inside a Parallel/Map), so it may await

    def child(self, label: str) -> _Path:
        return _Path(f"{self.name}/{label}", live=True)


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a sequential path) without an event loop: ~2 µs, not ~50."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the interpreter suspended outside an event loop")


class Interpreter:
    """Runs an ASL state machine in-process, with Lambda tasks as local functions."""

    def __init__(
        self,
        functions: dict[str, LambdaFn],
        *,
        tokens: TokenStore | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        max_workers: int = 64,
        async_functions: dict[str, AsyncLambdaFn] | None = None,
        pool: ThreadPoolExecutor | None = None,
        park_after: float | None = None,
        park_errors: frozenset[str] = frozenset(),
    ) -> None:
        self.park_after = park_after
        self.park_errors = park_errors
        self.parked: Parked | None = None
        self.functions = functions
        self.async_functions = async_functions or {}
        self.tokens = tokens
        self.clock = clock or SystemClock()
        self._rng = rng  # seeded on first use: seeding a Mersenne Twister costs more than a short run's step
        self.max_workers = max_workers
        self._pool = pool
        self._transitions = 0
        self._lock = threading.Lock()

    @property
    def rng(self) -> random.Random:
        """Jitter for retry delays: deterministic (seed 0) unless a generator was given."""
        if self._rng is None:
            self._rng = random.Random(0)
        return self._rng

    def _threads(self) -> ThreadPoolExecutor:
        """Threads for synchronous functions called from branches (created on first use, grown as needed)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="stepwise-branch")
            return self._pool

    async def _sleep(self, seconds: float, where: _Path) -> None:
        if where.live and isinstance(self.clock, SystemClock):
            import asyncio

            await asyncio.sleep(seconds)  # a waiting branch must not hold up its siblings
        else:
            self.clock.sleep(seconds)

    # -- public -------------------------------------------------------------------------------
    def execute(self, definition: dict[str, Any], input_: Any, *, name: str = "local") -> ExecutionResult:
        self._transitions = 0
        context = {
            "Execution": {"Id": f"arn:aws:states:local:000000000000:execution:stepwise:{name}", "Name": name, "Input": input_},
            "StateMachine": {"Id": "arn:aws:states:local:000000000000:stateMachine:stepwise"},
        }
        try:
            output = _drive(self._run_states(definition, input_, context, _Path(name)))
        except Suspended:
            return ExecutionResult("WAITING", transitions=self._transitions)
        except StatesError as exc:
            return ExecutionResult("FAILED", error=exc.error, cause=exc.cause, transitions=self._transitions)
        return ExecutionResult("SUCCEEDED", output=output, transitions=self._transitions)

    # -- machinery ----------------------------------------------------------------------------
    async def _run_states(self, machine: dict[str, Any], data: Any, context: dict[str, Any], where: _Path) -> Any:
        states = machine["States"]
        name = machine["StartAt"]
        while True:
            state = states[name]
            with self._lock:
                self._transitions += 1
            where.visits[name] += 1
            ctx = {**context, "State": {"Name": name, "EnteredTime": _iso(self.clock.now()), "RetryCount": 0}}
            kind = state["Type"]
            if kind == "Choice":
                nxt = self._choose(state, data)
                name = nxt
                continue
            if kind == "Succeed":
                return self._output(state, self._input(state, data, ctx), ctx)
            if kind == "Fail":
                raise StatesError(state.get("Error", "States.Fail"), state.get("Cause", ""))
            try:
                data = await self._run_state(name, state, data, ctx, where)
            except StatesError as exc:
                catcher = pick_catcher(state.get("Catch", []), exc.error)
                if catcher is None:
                    raise
                data = paths.put(data, catcher.get("ResultPath", "$"), {"Error": exc.error, "Cause": exc.cause})
                name = catcher["Next"]
                continue
            if state.get("End"):
                return data
            name = state["Next"]

    async def _run_state(self, name: str, state: dict[str, Any], data: Any, ctx: dict[str, Any], where: _Path) -> Any:
        attempts: dict[int, int] = {}  # retrier index -> retries so far (a plain dict: most states never retry)
        if state["Type"] == "Task" and state["Resource"].endswith(".waitForTaskToken"):
            digest = hashlib.sha256(f"{where.name}|{name}|{where.visits[name]}".encode()).hexdigest()[:32]
            ctx = {**ctx, "Task": {"Token": f"{ctx['Execution']['Name']}.{digest}"}}
        while True:
            try:
                effective = self._input(state, data, ctx)
                kind = state["Type"]
                if kind == "Pass":
                    result = state.get("Result", effective)
                elif kind == "Wait":
                    by_path = paths.get(data, state["SecondsPath"], ctx) if "SecondsPath" in state else 0
                    seconds = float(state.get("Seconds", 0) or by_path)
                    await self._sleep(seconds, where)
                    return self._output(state, effective, ctx)
                elif kind == "Task":
                    result = await self._task(name, state, effective, ctx, where)
                elif kind == "Parallel":
                    result = await self._parallel(name, state, effective, ctx, where)
                elif kind == "Map":
                    result = await self._map(name, state, effective, ctx, where)
                else:
                    raise StatesError("States.Runtime", f"state {name!r}: unsupported type {kind!r}")
                if "ResultSelector" in state:
                    result = self._parameters(state["ResultSelector"], result, ctx)
                return self._output(state, paths.put(data, state.get("ResultPath", "$"), result), ctx)
            except paths.PathError as exc:
                raise StatesError("States.Runtime", f"state {name!r}: {exc}") from None
            except StatesError as exc:
                index = pick_retrier(state.get("Retry", []), exc.error)
                if index is None:
                    raise
                retrier = state["Retry"][index]
                tried = attempts.get(index, 0)
                if tried >= int(retrier.get("MaxAttempts", 3)):
                    raise
                wait = delay(retrier, tried, self.rng)
                if self.park_after is not None and wait >= self.park_after and exc.error in self.park_errors:
                    self.parked = self.parked or Parked(name, exc.error, wait)
                    raise self.parked from None
                await self._sleep(wait, where)
                attempts[index] = tried + 1
                ctx = {**ctx, "State": {**ctx["State"], "RetryCount": sum(attempts.values())}}

    def _input(self, state: dict[str, Any], data: Any, ctx: dict[str, Any]) -> Any:
        if "InputPath" in state:
            data = None if state["InputPath"] is None else paths.get(data, state["InputPath"], ctx)
        if "Parameters" in state and state["Type"] != "Map":
            data = self._parameters(state["Parameters"], data, ctx)
        return data

    @staticmethod
    def _output(state: dict[str, Any], data: Any, ctx: dict[str, Any]) -> Any:
        if "OutputPath" in state:
            return None if state["OutputPath"] is None else paths.get(data, state["OutputPath"], ctx)
        return data

    @staticmethod
    def _parameters(template: Any, data: Any, ctx: dict[str, Any]) -> Any:
        """A Parameters (or ResultSelector, ItemSelector) template filled in from ``data`` and the context."""
        if isinstance(template, dict | list):
            return _template(template)(data, ctx)
        return template

    # -- Task ---------------------------------------------------------------------------------
    async def _task(self, name: str, state: dict[str, Any], params: Any, ctx: dict[str, Any], where: _Path) -> Any:
        resource: str = state["Resource"]
        wait = resource.endswith(".waitForTaskToken")
        token = ctx.get("Task", {}).get("Token")
        if resource.startswith("arn:aws:states:::lambda:invoke"):
            function_name, payload = params["FunctionName"], params.get("Payload")
        elif resource.startswith("arn:aws:lambda:"):
            function_name, payload = resource, params
        else:
            raise StatesError("States.Runtime", f"state {name!r}: unsupported resource {resource!r}")
        short = _function_short_name(function_name)
        fn = self.functions.get(short)
        afn = self.async_functions.get(short)
        if fn is None and afn is None:
            raise StatesError("Lambda.ResourceNotFoundException", f"Function not found: {function_name}")
        payload = _json_copy(payload)  # what crosses a Lambda boundary is JSON
        timeout = state.get("TimeoutSeconds") if not wait else None
        try:
            if timeout is not None:
                result = await self._timed(name, fn, afn, payload, float(timeout), where)
            elif where.live and afn is not None:
                result = await afn(payload)
            elif where.live:  # a plain function in a branch: on a thread, so blocking calls overlap
                import asyncio

                assert fn is not None
                result = await asyncio.get_running_loop().run_in_executor(self._threads(), fn, payload)
            elif fn is not None:
                result = fn(payload)
            else:
                assert afn is not None
                result = run_sync(_awaited(afn(payload)))
            if type(result) is not dict and inspect.isawaitable(result):
                result = await result if where.live else run_sync(_awaited(result))
        except StatesError:  # the Task's own timeout
            raise
        except Exception as exc:  # noqa: BLE001 - becomes an ASL error like a Lambda FunctionError
            error = asl_error_name(exc)
            # a route jump or a hand-over is control flow, not a failure: no stack to format (~1 ms in 3.11)
            stack = [] if getattr(exc, "control_flow", False) else traceback.format_exception(exc)[-3:]
            cause = json.dumps({"errorType": error, "errorMessage": str(exc), "stackTrace": stack})
            raise StatesError(error, cause) from None
        if wait:
            assert token is not None
            output = self.tokens.token_output(token) if self.tokens else None
            if output is None:
                raise Suspended(token)
            failure = output.get(TASK_FAILURE)
            if isinstance(failure, dict):
                raise StatesError(str(failure.get("Error")), str(failure.get("Cause") or ""))
            return output
        if resource.startswith("arn:aws:states:::lambda:invoke"):
            return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": result}
        return result

    async def _timed(self, name: str, fn: LambdaFn | None, afn: AsyncLambdaFn | None, payload: Any, seconds: float, where: _Path) -> Any:
        """A Task with ``TimeoutSeconds``: fail with ``States.Timeout`` when it has not returned by then, as Step
        Functions does. An async function is cancelled (an ``async def`` node stops at its next await); a blocking
        call on a thread cannot be killed, so the Task only stops waiting for it and drops its result."""
        import asyncio

        async def call() -> Any:
            if afn is not None:
                return await afn(payload)
            assert fn is not None
            return await asyncio.get_running_loop().run_in_executor(self._threads(), fn, payload)

        async def bounded() -> Any:
            try:
                return await asyncio.wait_for(call(), seconds)
            except TimeoutError:
                message = f"state {name!r} did not finish within its TimeoutSeconds ({seconds:g} s)"
                raise StatesError("States.Timeout", json.dumps({"errorType": "States.Timeout", "errorMessage": message})) from None

        return await bounded() if where.live else run_sync(bounded())

    # -- Parallel / Map -----------------------------------------------------------------------
    async def _fan(self, jobs: Sequence[Callable[[], Coroutine[Any, Any, Any]]], limit: int, where: _Path) -> list[Any]:
        """Run branch jobs as tasks on an event loop; results keep the jobs' order whatever order they finish in.

        ``limit`` is Map's MaxConcurrency (0: no limit). On a sequential path this thread's loop runs them;
        inside another branch they join the loop already running.
        """
        gathered = self._gather(jobs, limit)
        outcomes = await gathered if where.live else run_sync(gathered)
        results: list[Any] = []
        failure: StatesError | None = None
        suspended = False
        for outcome in outcomes:
            if isinstance(outcome, StatesError):
                failure = failure or outcome
                results.append(None)
            elif isinstance(outcome, Suspended):
                suspended = True
                results.append(None)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results.append(outcome)
        if failure:
            raise failure
        if suspended:
            raise Suspended()
        return results

    @staticmethod
    async def _gather(jobs: Sequence[Callable[[], Coroutine[Any, Any, Any]]], limit: int) -> list[Any]:
        import asyncio

        if limit and limit < len(jobs):
            gate = asyncio.Semaphore(limit)

            async def gated(job: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
                async with gate:
                    return await job()

            return await asyncio.gather(*(gated(job) for job in jobs), return_exceptions=True)
        return await asyncio.gather(*(job() for job in jobs), return_exceptions=True)

    async def _parallel(self, name: str, state: dict[str, Any], data: Any, ctx: dict[str, Any], where: _Path) -> list[Any]:
        visit = where.visits[name]
        jobs = [
            _job(self._run_states, branch, data, ctx, where.child(f"{name}#{visit}[{i}]")) for i, branch in enumerate(state["Branches"])
        ]
        return await self._fan(jobs, 0, where)

    async def _map(self, name: str, state: dict[str, Any], data: Any, ctx: dict[str, Any], where: _Path) -> list[Any]:
        items = paths.get(data, state.get("ItemsPath", "$"), ctx)
        if not isinstance(items, list):
            raise StatesError("States.Runtime", f"state {name!r}: ItemsPath did not select an array")
        processor = state.get("ItemProcessor") or state["Iterator"]
        selector = state.get("ItemSelector") or state.get("Parameters")
        visit = where.visits[name]
        jobs = []
        for index, item in enumerate(items):
            item_ctx = {**ctx, "Map": {"Item": {"Index": index, "Value": item}}}
            item_input = self._parameters(selector, data, item_ctx) if selector else item
            jobs.append(_job(self._run_states, processor, item_input, ctx, where.child(f"{name}#{visit}[{index}]")))
        tolerated = state.get("ToleratedFailurePercentage")
        if tolerated is None:
            return await self._fan(jobs, int(state.get("MaxConcurrency", 0)), where)
        results = await self._fan([_job(_tolerant, job) for job in jobs], int(state.get("MaxConcurrency", 0)), where)
        failed = sum(1 for r in results if isinstance(r, _ItemFailure))
        if jobs and failed * 100 > float(tolerated) * len(jobs):
            raise StatesError(
                "States.ExceedToleratedFailureThreshold", f"state {name!r}: {failed} of {len(jobs)} items failed, over {tolerated}%"
            )
        return [{"Error": r.error, "Cause": r.cause} if isinstance(r, _ItemFailure) else r for r in results]

    # -- Choice -------------------------------------------------------------------------------
    def _choose(self, state: dict[str, Any], data: Any) -> str:
        for rule in state.get("Choices", []):
            if _test(rule, data):
                return str(rule["Next"])
        if "Default" in state:
            return str(state["Default"])
        raise StatesError("States.NoChoiceMatched", f"no choice matched and there is no Default (input: {json.dumps(data)[:200]})")


@dataclass
class _ItemFailure:
    error: str
    cause: str


async def _tolerant(job: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """A Map item under ToleratedFailurePercentage: its failure is counted, not raised."""
    try:
        return await job()
    except StatesError as exc:
        return _ItemFailure(exc.error, exc.cause)


_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "StringEquals": lambda a, b: isinstance(a, str) and a == b,
    "StringLessThan": lambda a, b: isinstance(a, str) and a < b,
    "StringGreaterThan": lambda a, b: isinstance(a, str) and a > b,
    "NumericEquals": lambda a, b: _num(a) and a == b,
    "NumericLessThan": lambda a, b: _num(a) and a < b,
    "NumericLessThanEquals": lambda a, b: _num(a) and a <= b,
    "NumericGreaterThan": lambda a, b: _num(a) and a > b,
    "NumericGreaterThanEquals": lambda a, b: _num(a) and a >= b,
    "BooleanEquals": lambda a, b: isinstance(a, bool) and a == b,
}


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _test(rule: dict[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(_test(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(_test(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not _test(rule["Not"], data)
    variable = rule["Variable"]
    if "IsPresent" in rule:
        return bool(paths.exists(data, variable) == rule["IsPresent"])
    if not paths.exists(data, variable):
        return False
    value = paths.get(data, variable)
    for op, fn in _COMPARATORS.items():
        if op in rule:
            return fn(value, rule[op])
        if op + "Path" in rule:
            return fn(value, paths.get(data, rule[op + "Path"]))
    raise StatesError("States.Runtime", f"unsupported Choice rule {json.dumps(rule)}")


@lru_cache(maxsize=1024)
def _function_short_name(function_name: str) -> str:
    """``stepwise-step`` of ``arn:aws:lambda:…:function:stepwise-step[:alias]`` (or of a bare name)."""
    return function_name.split(":function:")[-1].split(":")[0]


_Build = Callable[[Any, dict[str, Any]], Any]
_TEMPLATES: dict[int, tuple[Any, _Build]] = {}  # id(template) -> (template, builder); holding it keeps the id unique
_TEMPLATES_SIZE = 4096


def _template(template: dict[str, Any] | list[Any]) -> _Build:
    """The builder of a Parameters template, compiled once per template object: a state machine's definition
    is immutable once deployed (the client caches it per graph version), so each Task no longer re-walks its
    template, testing every key for ``.$`` and every value's type."""
    hit = _TEMPLATES.get(id(template))
    if hit is not None and hit[0] is template:
        return hit[1]
    build = _compile_template(template)
    if len(_TEMPLATES) >= _TEMPLATES_SIZE:
        _TEMPLATES.clear()
    _TEMPLATES[id(template)] = (template, build)
    return build


def _compile_template(template: Any) -> _Build:
    """A function (data, context) -> value equal to walking ``template`` (fresh dicts and lists each call)."""
    if isinstance(template, list):
        items = [_compile_template(v) for v in template]
        return lambda data, ctx: [item(data, ctx) for item in items]
    if not isinstance(template, dict):
        return lambda data, ctx: template
    entries: list[tuple[str, Any, _Build | None]] = []  # (key, constant, builder): a builder when the value is computed
    for key, value in template.items():
        if key.endswith(".$"):
            entries.append((key[:-2], None, _selector(key, value)))
        elif isinstance(value, dict | list):
            entries.append((key, None, _compile_template(value)))
        else:
            entries.append((key, value, None))

    def build(data: Any, ctx: dict[str, Any]) -> dict[str, Any]:
        return {key: constant if fill is None else fill(data, ctx) for key, constant, fill in entries}

    return build


def _selector(key: str, value: Any) -> _Build:
    """The builder of one ``key.$`` entry: the whole input, a reference path or an intrinsic function."""
    if not isinstance(value, str):

        def refuse(data: Any, ctx: dict[str, Any]) -> Any:
            raise StatesError("States.Runtime", f"{key} must be a path or intrinsic string")

        return refuse
    if value == "$":
        return lambda data, ctx: data
    if intrinsics.is_intrinsic(value):
        return lambda data, ctx: intrinsics.call(value, data, ctx)
    return lambda data, ctx: paths.get(data, value, ctx)


def _job(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Callable[[], Coroutine[Any, Any, Any]]:
    return lambda: fn(*args)


async def _awaited(value: Awaitable[T]) -> T:
    return await value


_SCALARS = (str, int, float, bool, type(None))


_ORJSON_STRICT = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _json_copy(value: Any) -> Any:
    """A copy of a JSON-shaped value as JSON would give it back (tuples become lists, keys become strings).
    orjson's round trip is ~3× faster than walking the value in Python; what orjson will not write the way
    the standard library does (dates, dataclasses, subclasses, integers beyond 64 bits: all raise here)
    takes the walk below. orjson writes NaN/Infinity as null, as Step Functions (strict JSON) would refuse them."""
    try:
        return orjson.loads(orjson.dumps(value, option=_ORJSON_STRICT))
    except TypeError:
        return _json_walk(value)


def _json_walk(value: Any) -> Any:
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _json_key(k): _json_walk(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_walk(v) for v in value]
    if type(value) in _SCALARS:
        return value
    return json.loads(json.dumps(value))  # anything else: exactly what JSON makes of it (or its TypeError)


def _json_key(key: Any) -> str:
    return str(next(iter(json.loads(json.dumps({key: 0})))))


_ISO_SECOND: tuple[int, str] = (-1, "")


def _iso(ts: float) -> str:
    """``2026-01-31T12:00:00.123Z``; the formatted second is reused while it lasts (every state asks for one)."""
    global _ISO_SECOND
    second = int(ts // 1)
    cached = _ISO_SECOND
    if cached[0] != second:
        cached = _ISO_SECOND = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{int((ts - second) * 1000):03d}Z"
