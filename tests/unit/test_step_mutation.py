"""A node that changes its ``state`` in place instead of returning the change fails, and nothing of the change
reaches the log, the cache or a retry (``stepwise.runtime.mutation``)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.runtime.mutation import changed_in_place, shape

ATTEMPTS: list[list[str]] = []


def start(state: dict[str, Any]) -> dict[str, Any]:
    return {}


def appends(state: dict[str, Any]) -> dict[str, Any]:
    state["log"].append("appended in place")
    return {}


def assigns(state: dict[str, Any]) -> dict[str, Any]:
    state["extra"] = 1
    return {"log": ["returned"]}


def appends_then_fails_once(state: dict[str, Any]) -> dict[str, Any]:
    ATTEMPTS.append(list(state["log"]))
    if len(ATTEMPTS) == 1:
        state["log"].append("left behind by the failed attempt")
        raise RuntimeError("first attempt fails")
    return {"log": ["returned"]}


def graph(fn: str, retry: str = "") -> Any:
    return load_text(
        f"""
name: inplace
state: {{log: append}}
graph:
  nodes:
    start: {{kind: function, fn: "tests.unit.test_step_mutation:start"}}
    bad: {{kind: function, fn: "tests.unit.test_step_mutation:{fn}"{retry}}}
  edges: [{{from: start, to: bad}}]
  entry: start
""",
        source="inplace.yaml",
    )


@pytest.mark.parametrize(("fn", "said"), [("appends", "changed the size of 'log' (1 → 2 items)"), ("assigns", "added 'extra' to it")])
def test_a_node_that_changes_its_state_in_place_fails_and_nothing_of_it_is_stored(fn: str, said: str) -> None:
    client = Stepwise.in_memory()
    result = client.run(graph(fn), {"log": ["given"]})
    assert result.status == "failed" and result.error["node"] == "bad"
    assert f"node 'bad' changed the state it was given in place ({said}); such a change is not stored" in result.error["message"]
    assert "return the change from node 'bad'" in result.error["fix"]
    _, stored = client.state(result.thread_id)
    assert stored["log"] == ["given"] and "extra" not in stored


def test_a_retry_after_an_in_place_change_sees_the_logged_state() -> None:
    attempts = importlib.import_module("tests.unit.test_step_mutation").ATTEMPTS  # the module the graph imports
    attempts.clear()
    client = Stepwise.in_memory()
    result = client.run(graph("appends_then_fails_once", ", retry: {max_attempts: 1, interval_seconds: 0}"), {"log": ["given"]})
    assert result.status == "succeeded", result.error
    assert attempts == [["given"], ["given"]]  # not the cached state the first attempt changed
    assert client.state(result.thread_id)[1]["log"] == ["given", "returned"]


def test_shape_tells_what_changed() -> None:
    state: dict[str, Any] = {"a": [1], "b": {"k": 1}, "c": "text"}
    before = shape(state)
    assert changed_in_place(state, before) is None
    state["b"]["k"] = 2  # same size: not seen (the check is one pass, no copy)
    assert changed_in_place(state, before) is None
    state["b"]["j"] = 3
    assert changed_in_place(state, before) == "changed the size of 'b' (1 → 2 items)"
    state = {"a": [1], "c": "text"}
    assert changed_in_place({"a": state["a"], "c": "other"}, shape(state)) == "assigned 'c'"
    assert changed_in_place({"c": "text"}, shape(state)) == "deleted 'a' from it"
