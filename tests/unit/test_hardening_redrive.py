"""Redrive: a failed run re-runs from its failed node; the nodes that completed are not run again."""

from __future__ import annotations

from typing import Any

import pytest

from stepwise.client import Stepwise
from stepwise.errors import ConflictingRequestError
from stepwise.graph.loader import load_text

HERE = "tests.unit.test_hardening_redrive"
CALLS: dict[str, int] = {}


def first(state: dict[str, Any]) -> dict[str, Any]:
    CALLS["first"] = CALLS.get("first", 0) + 1
    return {"trail": ["first"]}


def flaky(state: dict[str, Any]) -> dict[str, Any]:
    CALLS["flaky"] = CALLS.get("flaky", 0) + 1
    if CALLS["flaky"] == 1:
        raise RuntimeError("the downstream service is down")
    return {"trail": ["flaky"]}


def last(state: dict[str, Any]) -> dict[str, Any]:
    return {"trail": ["last"]}


GRAPH = f"name: redrive\nmodule: {HERE}\nstate: {{trail: append}}\nnodes: [first, flaky, last]\n"


def test_a_failed_run_is_redriven_from_its_failed_node(tmp_path: Any) -> None:
    started: list[str] = []
    client = Stepwise.embedded(tmp_path / "home", observer=lambda e: started.append(e["node"]) if e["kind"] == "node_started" else None)
    failed = client.run(load_text(GRAPH), {})
    assert started == ["first", "flaky"]
    started.clear()
    assert failed.status == "failed" and failed.error is not None and failed.error["node"] == "flaky"
    done = client.redrive(failed.run_id)
    assert done.status == "succeeded" and done.state["trail"] == ["first", "flaky", "last"]
    assert started == ["flaky", "last"]  # `first` was not run again
    events = [(e.type, e.node) for e in client.history(done.thread_id) if e.node]
    assert events.count(("node_failed", "flaky")) == 1 and events.count(("node_update", "flaky")) == 1
    with pytest.raises(ConflictingRequestError, match="only a failed run"):
        client.redrive(failed.run_id)


def split(state: dict[str, Any]) -> dict[str, Any]:
    return {}


def steady(state: dict[str, Any]) -> dict[str, Any]:
    return {"m": {"steady": 1}}


def flaky_branch(state: dict[str, Any]) -> dict[str, Any]:
    CALLS["flaky_branch"] = CALLS.get("flaky_branch", 0) + 1
    if CALLS["flaky_branch"] == 1:
        raise ConnectionError("down")
    return {"m": {"flaky": 1}}


def join(state: dict[str, Any]) -> dict[str, Any]:
    return {"seen": sorted(state["m"])}


FAN_OUT = f"""name: redrive-fan-out
state: {{m: merge}}
graph:
  nodes:
    split: {{fn: "{HERE}:split"}}
    steady: {{fn: "{HERE}:steady"}}
    flaky_branch: {{fn: "{HERE}:flaky_branch"}}
    join: {{fn: "{HERE}:join"}}
  edges: [{{from: split, to: [steady, flaky_branch]}}, {{from: [steady, flaky_branch], to: join}}]
  entry: split
"""


def test_a_redriven_fan_out_does_not_report_the_failure_it_made_good(tmp_path: Any) -> None:
    """The join read every branch event since the block began, the failed attempt's too: after a redrive that
    succeeded, the state still had a ``failures`` channel naming the branch that had failed."""
    client = Stepwise.embedded(tmp_path / "home")
    failed = client.run(load_text(FAN_OUT), {})  # the branch's first call fails (the engine imports this module by name)
    assert failed.status == "failed"
    done = client.redrive(failed.run_id)
    assert done.status == "succeeded" and done.state["seen"] == ["flaky", "steady"]
    assert "failures" not in done.state
