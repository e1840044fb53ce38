"""A node's update must read back as it was written: a value JSON cannot carry (a set, NaN, a datetime) fails the
node with an error naming the node, the channel path and what to return instead — on the local engine and
on moto, where the same step runs as the Lambda. Before, ``{"x": {1, 2}}`` was stored and read back as '{1, 2}'."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
from tests.conformance.test_moto_conformance import MotoEngine, local, moto  # noqa: F401 - fixtures

from stepwise.client import Stepwise
from stepwise.graph.loader import load_text

HERE = __name__  # the module pytest imported, whose RETURNS the tests set
RETURNS: dict[str, Any] = {}


def produce(state: dict[str, Any]) -> dict[str, Any]:
    return dict(RETURNS)


def after(state: dict[str, Any]) -> dict[str, Any]:
    return {"after": True}


GRAPH = f"""
name: outputs
graph:
  nodes:
    produce: {{fn: "{HERE}:produce"}}
    after: {{fn: "{HERE}:after"}}
  edges:
    - {{from: produce, to: after}}
  entry: produce
"""


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"x": {1, 2}}, "the update of node 'produce' holds a set at x, which JSON cannot carry; return a list (sorted(...)"),
        ({"x": {"scores": [1.0, math.nan]}}, "holds nan at x.scores[1], which JSON cannot carry; return a finite number, a string or null"),
        ({"x": {"at": [{"when": datetime.date(2024, 1, 2)}]}}, "holds a date at x.at[0].when, which JSON cannot carry; return an ISO 8601"),
        ({"x": math.inf}, "holds inf at x,"),
        ({"x": "\ud800"}, "holds a lone surrogate (like \\ud800) at x, which is not text; return valid Unicode"),
        ({1: "one"}, "node 'produce' returned an int key 1; channel names are text"),
        ({"x": {1: "one"}}, "holds an int key 1 at x, which JSON cannot carry (its keys are text); return the key as text, e.g. '1'"),
        ({"x": [{(1, 2): "a"}]}, "holds a tuple key (1, 2) at x[0], which JSON cannot carry"),
    ],
)
def test_an_update_json_cannot_carry_fails_the_node_locally(update: dict[Any, Any], message: str, local: Stepwise) -> None:  # noqa: F811
    RETURNS.clear()
    RETURNS.update(update)
    result = local.run(load_text(GRAPH), {})
    assert result.status == "failed" and result.error is not None
    assert result.error["error"] == "Stepwise.NodeError" and result.error["node"] == "produce"
    assert message in result.error["message"], result.error["message"]
    assert "return JSON values only" in result.error["fix"] or "channel name as a string" in result.error["fix"]
    assert "x" not in result.state and "after" not in result.state  # nothing of it was stored, and the run stopped there


def test_a_storable_update_still_passes(local: Stepwise) -> None:  # noqa: F811
    RETURNS.clear()
    RETURNS.update({"x": {"big": 2**300, "deep": [[[["ok"]]]], "none": None, "flag": True}})
    result = local.run(load_text(GRAPH), {})
    assert result.status == "succeeded", result.error
    assert result.state["x"] == {"big": 2**300, "deep": [[[["ok"]]]], "none": None, "flag": True}


def test_an_update_json_cannot_carry_fails_the_node_on_moto(moto: MotoEngine) -> None:  # noqa: F811
    RETURNS.clear()
    RETURNS.update({"x": {1, 2}})
    result = moto.finish(moto.client.run(load_text(GRAPH), {}).run_id)
    assert result.status == "failed" and result.error is not None
    assert result.error["error"] == "Stepwise.NodeError" and result.error["node"] == "produce"
    assert "the update of node 'produce' holds a set at x" in result.error["message"]
    assert "x" not in result.state
