"""Double texting on Step Functions (moto): a new input on a thread whose run waits in an execution.

``interrupt`` stops the waiting execution (StopExecution) and the new run starts from the state it reached;
``rollback`` stops it too and discards what it wrote, so the new run starts from the state before it. Both
through the real ``api`` Lambda handler, with the runs executing in moto's Step Functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.test_cloud_in_a_box import Cloud
from tests.integration.test_cloud_in_a_box import cloud as cloud

ROOT = Path(__file__).resolve().parents[2]


def record_stops(cloud: Cloud) -> list[str]:
    """The executions the API asked Step Functions to stop. (moto 5.2.1 accepts StopExecution but leaves an
    execution parked on .waitForTaskToken RUNNING, so its status cannot show ABORTED here.)"""
    stopped: list[str] = []
    sfn = cloud.client.executor.sfn  # type: ignore[attr-defined]
    sfn.meta.events.register("before-parameter-build.states.StopExecution", lambda params, **_: stopped.append(params["executionArn"]))
    return stopped


def waiting_run(cloud: Cloud, amount: int) -> Any:
    assert cloud.call("POST", "/agents", {"yaml": (ROOT / "statemachines" / "examples" / "human_approval.yaml").read_text()})[0] in (
        201,
        409,
    )
    status, run = cloud.call("POST", "/agents/human-approval/execute", {"thread_id": "t-texting", "input": {"amount": amount}})
    assert status in (200, 202), run
    return cloud.wait_run(run["run_id"], "waiting")


def test_interrupt_stops_the_waiting_execution_and_runs_from_the_state_it_reached(cloud: Cloud) -> None:
    first = waiting_run(cloud, 40)
    stopped = record_stops(cloud)
    status, second = cloud.call(
        "POST", "/agents/human-approval/execute", {"thread_id": "t-texting", "input": {"note": "second"}, "multitask": "interrupt"}
    )
    assert status in (200, 202), second
    assert cloud.wait_run(first.run_id, "cancelled").status == "cancelled"
    assert stopped == [first.execution_arn]  # StopExecution on the waiting execution
    again = cloud.wait_run(second["run_id"], "waiting")
    state = cloud.client.state(again.thread_id)[1]
    assert state["amount"] == 40 and state["note"] == "second"  # the first run's writes stay: interrupt, not rollback


def test_rollback_stops_the_execution_and_discards_its_writes(cloud: Cloud) -> None:
    first = waiting_run(cloud, 40)
    assert cloud.client.state(first.thread_id)[1]["amount"] == 40
    stopped = record_stops(cloud)
    status, second = cloud.call(
        "POST", "/agents/human-approval/execute", {"thread_id": "t-texting", "input": {"note": "second"}, "multitask": "rollback"}
    )
    assert status in (200, 202), second
    assert stopped == [first.execution_arn]
    rolled = cloud.client.get_run(first.run_id)
    assert rolled is not None and rolled.status == "cancelled" and rolled.error["error"] == "Stepwise.RolledBack"
    again = cloud.wait_run(second["run_id"], "waiting")
    state = cloud.client.state(again.thread_id)[1]
    assert "amount" not in state and state["note"] == "second"  # as if the first run never ran
    assert [e.type for e in cloud.client.history(again.thread_id)].count("rolled_back") == 1


def test_enqueue_records_queued_runs_and_the_end_step_starts_them_in_order(cloud: Cloud) -> None:
    first = waiting_run(cloud, 40)
    queued = []
    for note in ("second", "third"):
        body = {"thread_id": "t-texting", "input": {"note": note}, "multitask": "enqueue"}
        status, run = cloud.call("POST", "/agents/human-approval/execute", body)
        assert status == 202 and run["status"] == "queued", run
        queued.append(run["run_id"])
    assert cloud.client.services.runs.get(queued[0]).status == "queued"  # type: ignore[union-attr]  # in the runs table
    status, _ = cloud.call("POST", f"/runs/{first.run_id}/resume", {"input": {"decision": "no"}})
    assert status == 200
    assert cloud.wait_run(first.run_id, "succeeded").status == "succeeded"
    second = cloud.wait_run(queued[0], "waiting")  # the __end__ step started it in Step Functions
    assert second.execution_arn and second.input == {"note": "second"}
    assert cloud.client.services.runs.get(queued[1]).status == "queued"  # type: ignore[union-attr]  # one at a time
    status, _ = cloud.call("POST", f"/runs/{queued[0]}/resume", {"input": {"decision": "no"}})
    assert status == 200
    third = cloud.wait_run(queued[1], "waiting")
    assert third.input == {"note": "third"}
    starts = [e.run_id for e in cloud.client.history("t-texting") if e.type == "run_started"]
    assert starts == [first.run_id, *queued]
