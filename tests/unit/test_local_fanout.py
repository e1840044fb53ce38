"""The local engine's fan-out: ``async def`` branches wait together on one thread, blocking ones on threads,
and the join folds the branches in branch order whatever order they finished in."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from tests.support import asyncnodes

from stepwise.client import Stepwise
from stepwise.graph.loader import parse_dict
from stepwise.graph.spec import GraphSpec

MOD = "tests.support.asyncnodes"


def fanout(width: int, fn: str) -> GraphSpec:
    names = [f"b{i}" for i in range(width)]
    nodes: dict[str, Any] = {"split": {"fn": f"{MOD}:split"}, "join": {"fn": f"{MOD}:count"}}
    nodes.update({n: {"fn": f"{MOD}:{fn}"} for n in names})
    return parse_dict(
        {
            "name": f"fan-{fn}-{width}",
            "state": {"results": "append"},
            "graph": {"nodes": nodes, "parallel_nodes": [{"from": "split", "to": names}, {"from": names, "to": "join"}], "entry": "split"},
        }
    )


@pytest.fixture(params=["memory", "embedded"])
def client(request: pytest.FixtureRequest, tmp_path: Any) -> Stepwise:
    return Stepwise.in_memory() if request.param == "memory" else Stepwise.embedded(tmp_path / "home")


def test_async_branches_are_all_in_flight_on_one_thread_and_merge_in_branch_order(client: Stepwise) -> None:
    width = asyncnodes.WIDTH
    asyncnodes.reset(width)
    result = client.run(fanout(width, "together"), {})
    assert result.status == "succeeded", result.error
    assert asyncnodes._gate["order"] == list(reversed(range(width)))  # they finished last-first...
    assert result.state["results"] == list(range(width))  # ...and the join folded them in branch order
    assert result.state["count"] == width
    assert asyncnodes._gate["threads"] == {threading.current_thread().name}  # no thread per waiting branch


def test_blocking_branches_overlap_on_threads(client: Stepwise) -> None:
    asyncnodes.reset()
    result = client.run(fanout(5, "blocking"), {})  # the barrier needs all five blocked at once
    assert result.status == "succeeded", result.error
    assert result.state["results"] == [0, 1, 2, 3, 4]


def test_an_async_node_on_the_main_path() -> None:
    spec = parse_dict(
        {"name": "one-async", "state": {"results": "append"}, "graph": {"nodes": {"a": {"fn": f"{MOD}:single"}}, "entry": "a"}}
    )
    result = Stepwise.in_memory().run(spec, {})
    assert (result.status, result.state["results"]) == ("succeeded", ["async"])


def test_a_function_seen_blocking_stays_on_threads() -> None:
    from stepwise.runtime.nodes import Offload

    offload, fn = Offload(), f"{MOD}:seen-blocking-{threading.get_ident()}"
    offload.observe(fn, wall=0.0001, cpu=0.0001)
    assert offload.inline(fn)  # quick: inline
    offload.observe(fn, wall=0.5, cpu=0.0)
    offload.observe(fn, wall=0.0001, cpu=0.0001)  # the last of the branches at a barrier returns at once
    assert not offload.inline(fn)  # once blocking, always on a thread
