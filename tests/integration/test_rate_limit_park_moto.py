"""LLM 429 "queue for later" on the AWS path: the compiled Retry on ``Stepwise.RateLimited`` makes Step Functions
wait and run the node again instead of failing the run (moto executes the ASL; the harness makes its retry
waits instant — the 60 s/2x/900 s schedule is what the compiled definition says, asserted below)."""

from __future__ import annotations

from typing import Any

from tests.integration.test_cloud_in_a_box import Cloud
from tests.integration.test_cloud_in_a_box import cloud as cloud

from stepwise.asl.compiler import RATE_LIMITED_ERROR
from stepwise.graph.loader import load_text
from stepwise.llm.errors import RateLimitError

CALLS: dict[str, int] = {}
GRAPH = f"""
name: limited-aws
state: {{log: append}}
graph:
  nodes:
    call: {{fn: "{__name__}:call"}}
  entry: call
"""


def call(state: dict[str, Any]) -> dict[str, Any]:
    CALLS["call"] = CALLS.get("call", 0) + 1
    if CALLS["call"] <= 2:  # what the LLM router raises once its own 429 retries are spent
        raise RateLimitError("anthropic rate-limited the request (HTTP 429)", provider="anthropic")
    return {"log": ["called"]}


def test_step_functions_waits_out_a_rate_limit_and_the_run_succeeds(cloud: Cloud) -> None:
    CALLS.clear()
    spec = load_text(GRAPH)
    started = cloud.client.run(spec, {})
    run = cloud.wait_run(started.run_id, "succeeded", "failed")
    assert run.status == "succeeded", run.error
    assert CALLS["call"] == 3 and cloud.client.state(run.thread_id)[1]["log"] == ["called"]
    kinds = [(e.type, e.node) for e in cloud.client.history(run.thread_id)]
    assert kinds.count(("node_failed", "call")) == 2 and ("node_update", "call") in kinds
    history = cloud.sfn.get_execution_history(executionArn=run.execution_arn)["events"]
    errors = [d["error"] for e in history for k, d in e.items() if k.endswith("EventDetails") and isinstance(d, dict) and "error" in d]
    assert errors == [RATE_LIMITED_ERROR] * 2, errors  # Step Functions saw the 429 twice, retried, and went on
