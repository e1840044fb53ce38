"""``async def`` node functions over the API: accepted in the tenant's allowed packages, run like the CLI runs
them; Stepwise's own coroutine functions (tool and model calls) stay refused as bare nodes, and reducers
stay synchronous."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.test_api_routes import error_code, make

from stepwise.api.policy import plain_function_problem


def _graph(fn: str, reducer: str = "append") -> dict[str, Any]:
    return {
        "name": "asyncnode",
        "state": {"trail": reducer},
        "graph": {"nodes": {"look": {"kind": "function", "fn": fn}}, "entry": "look"},
    }


def test_an_async_node_function_is_accepted_and_runs_over_the_api() -> None:
    h = make()
    created = h("POST", "/agents", {"graph": _graph("statemachines.examples.nodes:lookup_async")})
    assert created.status == 201, created.body
    reply = h("POST", "/agents/asyncnode/execute", {"input": {}, "wait_seconds": 10})
    assert reply.status == 200, reply.body
    run = h.client.get_run(reply.body["run_id"])
    assert run is not None and run.status == "succeeded"
    assert h.client.state(run.thread_id)[1]["trail"] == ["lookup_async"]


@pytest.mark.parametrize(
    ("fn", "coroutines", "reason"),
    [
        ("statemachines.examples.nodes:lookup_async", True, None),
        ("statemachines.examples.nodes:lookup_async", False, "not a plain function"),  # e.g. as a reducer
        ("stepwise.tools.builtin:http_fetch", True, "not a plain function"),  # a tool: only through its permissions
    ],
)
def test_coroutine_functions_are_node_functions_only_outside_stepwise(fn: str, coroutines: bool, reason: str | None) -> None:
    problem = plain_function_problem(fn, coroutines=coroutines)
    assert (problem is None) if reason is None else (reason in str(problem)), problem


def test_the_api_refuses_stepwise_coroutines_as_nodes_and_async_reducers() -> None:
    h = make()
    tool = h("POST", "/agents", {"graph": _graph("stepwise.tools.builtin:http_fetch")})
    assert tool.status == 422 and error_code(tool) == "invalid_graph"
    reducer = h("POST", "/agents", {"graph": _graph("statemachines.examples.nodes:tick", "statemachines.examples.nodes:lookup_async")})
    assert reducer.status == 422 and "not a plain function" in reducer.body["error"]["message"]
