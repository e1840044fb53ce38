"""LLM 429 "queue for later": after the provider router's retries a rate-limited node parks the run (waiting,
with when to continue) instead of failing it; the parked run survives a restart and continues from the log.
On Step Functions the compiled Retry waits the intervals out (tests/integration/test_rate_limit_park_moto.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from stepwise.asl.compiler import RATE_LIMITED_ERROR
from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.llm.errors import RateLimitError

CALLS: dict[str, int] = {}
GRAPH = f"""
name: limited
state: {{log: append}}
graph:
  nodes:
    first: {{fn: "{__name__}:first"}}
    call: {{fn: "{__name__}:call"}}
  edges:
    - {{from: first, to: call}}
  entry: first
"""


def first(state: dict[str, Any]) -> dict[str, Any]:
    CALLS["first"] = CALLS.get("first", 0) + 1
    return {"log": ["first"]}


def call(state: dict[str, Any]) -> dict[str, Any]:
    """Rate-limited (what the LLM router raises once its own 429 retries are spent) until the budget is used."""
    CALLS["call"] = CALLS.get("call", 0) + 1
    if CALLS["call"] <= CALLS.get("limited", 0):
        raise RateLimitError("openai rate-limited the request (HTTP 429)", provider="openai")
    return {"log": ["call"]}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


def test_a_rate_limited_node_parks_the_run_which_survives_a_restart_and_continues(tmp_path: Path) -> None:
    CALLS["limited"] = 1
    spec = load_text(GRAPH)
    before = time.time()
    result = Stepwise.embedded(tmp_path).run(spec, {})
    assert result.status == "waiting", result.error
    assert result.waiting is not None and result.waiting["kind"] == "retry" and result.waiting["node"].startswith("call")
    assert result.waiting["error"] == RATE_LIMITED_ERROR and result.waiting["retry_at"] >= before + 60  # the compiled interval
    assert CALLS == {"limited": 1, "first": 1, "call": 1}  # parked at once: no process slept through the wait

    restarted = Stepwise.embedded(tmp_path)  # a new process over the same home
    assert restarted.continue_parked(result.run_id).status == "waiting"  # not due yet: left alone
    assert [r.run_id for r in restarted.parked_due(now=result.waiting["retry_at"] + 1)] == [result.run_id]
    assert restarted.parked_due() == []
    done = restarted.continue_parked(result.run_id, force=True)
    assert done.status == "succeeded" and done.state["log"] == ["first", "call"]
    assert CALLS["first"] == 1 and CALLS["call"] == 2  # the replay re-ran only the rate-limited node


def test_a_run_still_rate_limited_after_max_parks_fails_with_the_429(tmp_path: Path) -> None:
    CALLS["limited"] = 100
    client = Stepwise.embedded(tmp_path)
    run = client.run(load_text(GRAPH), {})
    for _ in range(Stepwise.MAX_PARKS - 1):
        run = client.continue_parked(run.run_id, force=True)
        assert run.status == "waiting"
    assert run.waiting is not None and run.waiting["parks"] == Stepwise.MAX_PARKS
    failed = client.continue_parked(run.run_id, force=True)
    assert failed.status == "failed" and failed.error is not None and failed.error["error"] == RATE_LIMITED_ERROR


def test_stepwise_resume_continues_a_parked_run_now(tmp_path: Path) -> None:
    CALLS["limited"] = 1
    client = Stepwise.embedded(tmp_path)
    run = client.run(load_text(GRAPH), {})
    assert run.status == "waiting"
    assert client.resume(run.run_id).status == "succeeded"


def test_every_task_state_compiles_the_park_retry() -> None:
    client = Stepwise.in_memory()
    asl = client._asl(client.register(load_text(GRAPH)))
    tasks = [s for s in asl["States"].values() if s["Type"] == "Task" and s["Parameters"]["Payload"]["node"] in ("first", "call")]
    assert len(tasks) == 2 and all(
        {"ErrorEquals": [RATE_LIMITED_ERROR], "IntervalSeconds": 60, "MaxAttempts": 5, "BackoffRate": 2.0, "MaxDelaySeconds": 900}
        in s["Retry"]
        for s in tasks
    )
