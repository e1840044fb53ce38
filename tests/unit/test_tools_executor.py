"""Action executor: parallel tool calls, per-tool timeouts, 2 retries with linear 500 ms waits (injected,
never slept), errors returned as observations, policy vetoes, idempotency keys journalled and replayed."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from stepwise.llm.base import ToolCall
from stepwise.state.events import TOOL_CALL
from stepwise.state.journal import Journal
from stepwise.state.memory import MemoryEventStore
from stepwise.tools.executor import ActionExecutor, ToolInvocation
from stepwise.tools.registry import ToolError

T = TypeVar("T")


class StubRegistry:
    """Just the two methods the executor uses; ``behaviour`` decides each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.hangs: dict[str, int] = {}
        self.barrier: asyncio.Barrier | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run(coro)

    async def acall(self, name: str, arguments: dict[str, Any], *, idempotency_key: str, timeout: float | None = None) -> Any:
        self.calls.append((name, arguments, idempotency_key))
        if name == "parallel":
            assert self.barrier is not None
            await self.barrier.wait()  # only completes if both calls are in flight together
            return arguments["x"] * 2
        if self.hangs.get(name, 0) > 0:
            self.hangs[name] -= 1
            await asyncio.Event().wait()
        if name == "broken":
            raise ToolError("disk full")
        if name == "transport":
            raise ConnectionError("server went away")
        return {"echo": arguments}


class Waits:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def call(name: str, cid: str, **args: Any) -> ToolCall:
    return ToolCall(id=cid, name=name, arguments=args)


def test_parallel_calls_run_concurrently_and_keep_order() -> None:
    reg = StubRegistry()
    reg.barrier = asyncio.Barrier(2)
    outcomes = ActionExecutor(reg, default_timeout=5).run([call("parallel", "a", x=1), call("parallel", "b", x=2)], key_prefix="k")  # type: ignore[arg-type]
    assert [o.result for o in outcomes] == [2, 4] and all(o.ok for o in outcomes)


def test_timeouts_retry_twice_with_linear_backoff_then_become_an_observation() -> None:
    reg, waits = StubRegistry(), Waits()
    reg.hangs["slow"] = 10
    executor = ActionExecutor(reg, timeouts={"slow": 0.05}, sleep=waits)  # type: ignore[arg-type]
    [outcome] = executor.run([call("slow", "c1")], key_prefix="k")
    assert not outcome.ok and outcome.attempts == 3 and waits.waits == [0.5, 1.0]
    assert outcome.error == "timed out after 0.05s (after 3 attempts)"
    assert outcome.message() == {
        "role": "tool",
        "tool_call_id": "c1",
        "name": "slow",
        "content": "error: timed out after 0.05s (after 3 attempts)",
    }


def test_a_timeout_that_clears_on_retry_succeeds() -> None:
    reg, waits = StubRegistry(), Waits()
    reg.hangs["slow"] = 1
    [outcome] = ActionExecutor(reg, timeouts={"slow": 0.05}, sleep=waits).run([call("slow", "c1", q=1)], key_prefix="k")  # type: ignore[arg-type]
    assert outcome.ok and outcome.attempts == 2 and waits.waits == [0.5] and outcome.result == {"echo": {"q": 1}}


def test_tool_errors_are_not_retried_transport_errors_are() -> None:
    reg, waits = StubRegistry(), Waits()
    broken, transport = ActionExecutor(reg, sleep=waits).run([call("broken", "a"), call("transport", "b")], key_prefix="k")  # type: ignore[arg-type]
    assert broken.attempts == 1 and "disk full" in str(broken.error)
    assert transport.attempts == 3 and "ConnectionError" in str(transport.error)
    assert sorted(waits.waits) == [0.5, 1.0]


def test_policy_can_veto_a_call() -> None:
    class NoWrites:
        def check(self, invocation: ToolInvocation) -> None:
            if invocation.name.startswith("fs/"):
                raise PermissionError(f"{invocation.name} is not allowed for node {invocation.node}")

    reg = StubRegistry()
    [outcome] = ActionExecutor(reg, policy=NoWrites()).run([call("fs/write", "a")], key_prefix="k", node="agent")  # type: ignore[arg-type]
    assert not outcome.ok and outcome.error == "denied: fs/write is not allowed for node agent" and reg.calls == []


def test_idempotency_keys_are_sent_journalled_and_replayed() -> None:
    store = MemoryEventStore()
    reg = StubRegistry()
    executor = ActionExecutor(reg)  # type: ignore[arg-type]
    journal = Journal(store, thread_id="th", run_id="r1", node="act", scope="")
    first = executor.run([call("lookup", "c7", id=3)], key_prefix="r1||act|run|4", journal=journal)
    assert reg.calls == [("lookup", {"id": 3}, "r1||act|run|4|tool|c7")]
    [event] = [e for e in store.read("th") if e.type == TOOL_CALL]
    assert (
        event.key == "r1||act|run|4|tool|c7" and event.data["idempotency_key"] == event.key and event.data["result"] == {"echo": {"id": 3}}
    )
    # a retried step: a fresh journal over the same log reads the result back instead of calling again
    again = executor.run(
        [call("lookup", "c7", id=3)], key_prefix="r1||act|run|4", journal=Journal(store, thread_id="th", run_id="r1", node="act", scope="")
    )
    assert len(reg.calls) == 1 and again[0].replayed and again[0].result == first[0].result
