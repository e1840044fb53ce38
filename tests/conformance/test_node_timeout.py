"""``config.timeout_seconds`` on a function node is its Task's ``TimeoutSeconds``: Step Functions fails the Task
with ``States.Timeout`` after that long, and so does the local interpreter — an ``async def`` node is cancelled,
a blocking one is no longer waited for, and the update either finishes with late is dropped (the step checks)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from tests.conformance.test_moto_conformance import MotoEngine, moto  # noqa: F401 - fixtures

from stepwise.asl.compiler import compile_graph
from stepwise.client import Stepwise
from stepwise.graph.errors import GraphError
from stepwise.graph.loader import load_text
from stepwise.state.events import NODE_UPDATE

HERE = __name__
FINISHED: list[str] = []
RELEASE = threading.Event()


def blocking(state: dict[str, Any]) -> dict[str, Any]:
    RELEASE.wait(10)
    FINISHED.append("blocking")
    return {"late": True}


async def awaiting(state: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(10)
    FINISHED.append("awaiting")
    return {"late": True}


def quick(state: dict[str, Any]) -> dict[str, Any]:
    return {"quick": True}


def graph(fn: str, timeout: Any = 1, fanout: bool = False) -> str:
    nodes = f"""    slow: {{fn: "{HERE}:{fn}", config: {{timeout_seconds: {timeout}}}}}
    after: {{fn: "{HERE}:quick"}}"""
    if fanout:
        return f"""
name: timeouts
graph:
  nodes:
    split: {{fn: "{HERE}:quick"}}
{nodes}
    other: {{fn: "{HERE}:quick"}}
  parallel_nodes:
    - {{from: split, to: [slow, other]}}
    - {{from: [slow, other], to: after}}
  entry: split
"""
    return f"""
name: timeouts
graph:
  nodes:
{nodes}
  edges:
    - {{from: slow, to: after}}
  entry: slow
"""


def _timed_out(client: Stepwise, fn: str, fanout: bool = False) -> None:
    FINISHED.clear()
    RELEASE.clear()
    began = time.monotonic()
    result = client.run(load_text(graph(fn, fanout=fanout)), {})
    took = time.monotonic() - began
    assert result.status == "failed" and result.error is not None, result
    assert result.error["error"] == "States.Timeout", result.error
    if fanout:  # a branch's timeout fails its Parallel block, whose Catch carries the interpreter's cause
        assert "did not finish within its TimeoutSeconds (1 s)" in result.error["message"], result.error
    else:  # a top-level node's Task times out into a Pass that names it
        assert result.error["node"] == "slow" and result.error["redrive"]["start_at"] == "slow", result.error
        assert result.error["message"] == "node 'slow' did not finish within its config.timeout_seconds (1 s)"
    assert "timeout_seconds" in result.error["fix"]
    assert 0.9 < took < 5, took  # stopped waiting after the timeout, not after the node's 10 s
    RELEASE.set()  # the blocking node's thread finishes now: its late update must not be written
    time.sleep(0.3)
    assert "late" not in client.state(result.thread_id)[1]
    assert [e.node for e in client.history(result.thread_id) if e.type == NODE_UPDATE and e.node == "slow"] == []


@pytest.mark.parametrize("fanout", [False, True])
def test_a_blocking_function_times_out_locally(fanout: bool) -> None:
    _timed_out(Stepwise.in_memory(), "blocking", fanout)
    assert FINISHED == ["blocking"]  # it ran on, and was not waited for


@pytest.mark.parametrize("fanout", [False, True])
def test_an_async_function_is_cancelled_at_its_timeout(fanout: bool) -> None:
    _timed_out(Stepwise.in_memory(), "awaiting", fanout)
    assert FINISHED == []  # cancelled at its await, not merely abandoned


def test_a_function_within_its_timeout_runs_as_before() -> None:
    result = Stepwise.in_memory().run(load_text(graph("quick", timeout=5)), {})
    assert result.status == "succeeded" and result.state == {"quick": True}


def test_the_timeout_is_the_tasks_timeout_seconds() -> None:
    asl = compile_graph(load_text(graph("blocking", timeout=30)))
    assert asl["States"]["slow"]["TimeoutSeconds"] == 30 and "TimeoutSeconds" not in asl["States"]["after"]
    assert asl["States"]["slow"]["Catch"][0] == {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "slow.timed_out"}
    assert asl["States"]["slow.timed_out"] == {"Type": "Pass", "Result": "slow", "ResultPath": "$.timed_out", "Next": "__failed__"}
    split = compile_graph(
        load_text(graph("blocking", timeout=30, fanout=True).replace("split: {", "split: {config: {timeout_seconds: 7}, "))
    )
    assert split["States"]["split"]["TimeoutSeconds"] == 7 and "TimeoutSeconds" not in split["States"].get("split.join", {})


@pytest.mark.parametrize("bad", ["0", "1.5", "-3", "true", "soon"])
def test_a_timeout_that_is_not_whole_seconds_is_refused(bad: str) -> None:
    with pytest.raises(GraphError, match=r"node 'slow': config.timeout_seconds of a function node is .*; it must be a whole number"):
        load_text(graph("blocking", timeout=bad))


def test_a_blocking_function_times_out_on_moto(moto: MotoEngine) -> None:  # noqa: F811
    FINISHED.clear()
    RELEASE.clear()
    started = moto.client.run(load_text(graph("blocking")), {})
    result = moto.finish(started.run_id)
    assert result.status == "failed" and result.error is not None and result.error["error"] == "States.Timeout", result.error
    assert result.error["node"] == "slow" and "did not finish within its config.timeout_seconds (1 s)" in result.error["message"]
    RELEASE.set()
    time.sleep(0.5)
    assert "late" not in moto.client.state(result.thread_id)[1]


def test_a_timed_out_node_is_redriven_from_itself() -> None:
    """The error's redrive point is the node: once it is quick enough, a redrive runs it and goes on."""
    FINISHED.clear()
    RELEASE.clear()
    client = Stepwise.in_memory()
    failed = client.run(load_text(graph("blocking")), {})
    assert failed.status == "failed" and failed.error is not None and failed.error["redrive"]["start_at"] == "slow"
    RELEASE.set()  # the node now returns at once
    again = client.redrive(failed.run_id)
    assert again.status == "succeeded" and again.state == {"late": True, "quick": True}
