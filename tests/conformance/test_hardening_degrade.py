"""Graceful degradation: a fan-out marked ``on_error: continue`` lets the other branches finish, and the
join receives their results with the failures named — locally and on moto (the same compiled ASL).
A Map under ``ToleratedFailurePercentage`` fails only past its threshold."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conformance.test_moto_conformance import MotoEngine, local, moto  # noqa: F401 - fixtures

from stepwise.asl.interpreter import Interpreter
from stepwise.client import Stepwise
from stepwise.clock import FakeClock
from stepwise.graph.loader import load_text

HERE = "tests.conformance.test_hardening_degrade"


def split(state: dict[str, Any]) -> dict[str, Any]:
    return {"trail": ["split"]}


def good(state: dict[str, Any]) -> dict[str, Any]:
    return {"found": {"good": 1}, "trail": ["good"]}


def other(state: dict[str, Any]) -> dict[str, Any]:
    return {"found": {"other": 2}, "trail": ["other"]}


def broken(state: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("the search index is down")


def join(state: dict[str, Any]) -> dict[str, Any]:
    names = sorted(f["node"] for f in state.get("failures") or [])
    return {"summary": f"{len(state.get('found') or {})} results, failed: {names}", "trail": ["join"]}


GRAPH = f"""
name: degrade
state: {{found: merge, trail: append}}
graph:
  nodes:
    split:  {{fn: "{HERE}:split"%s}}
    good:   {{fn: "{HERE}:good"}}
    broken: {{fn: "{HERE}:broken"}}
    other:  {{fn: "{HERE}:other"}}
    join:   {{fn: "{HERE}:join"}}
  parallel_nodes:
    - {{from: split, to: [good, broken, other]}}
    - {{from: [good, broken, other], to: join}}
  entry: split
"""
TOLERANT = GRAPH % ", on_error: continue"
STRICT = GRAPH % ""


def _check(result: Any) -> None:
    assert result.status == "succeeded", result.error
    assert result.state["found"] == {"good": 1, "other": 2}
    assert result.state["failures"] == [{"branch": "1", "node": "broken", "error": "RuntimeError: the search index is down"}]
    assert result.state["summary"] == "2 results, failed: ['broken']"


def test_a_tolerant_fan_out_joins_partial_results_locally() -> None:
    client = Stepwise.in_memory()
    _check(client.run(load_text(TOLERANT), {}))
    assert client.run(load_text(STRICT), {}).status == "failed"  # without it, one failure fails the run


def test_a_tolerant_fan_out_joins_partial_results_on_moto(moto: MotoEngine) -> None:  # noqa: F811
    started = moto.client.run(load_text(TOLERANT), {})
    _check(moto.finish(started.run_id))


def _map_asl(tolerated: float) -> dict[str, Any]:
    return {
        "StartAt": "m",
        "States": {
            "m": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ToleratedFailurePercentage": tolerated,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "t",
                    "States": {"t": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": True}},
                },
                "End": True,
            }
        },
    }


def _f(item: Any) -> Any:
    if item < 0:
        raise ValueError("negative")
    return item * 2


@pytest.mark.parametrize(("items", "tolerated", "ok"), [([1, -1, 2, 3], 25, True), ([1, -1, -2, 3], 25, False), ([-1], 100, True)])
def test_map_tolerated_failure_percentage(items: list[int], tolerated: float, ok: bool) -> None:
    interpreter = Interpreter({"f": _f}, clock=FakeClock())
    result = interpreter.execute(_map_asl(tolerated), {"items": items})
    if ok:
        assert result.status == "SUCCEEDED", result
    else:
        assert result.status == "FAILED" and result.error == "States.ExceedToleratedFailureThreshold"
