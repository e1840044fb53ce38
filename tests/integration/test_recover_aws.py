"""The scheduled ``recover`` Lambda on the AWS path, on moto: a Step Functions run whose execution FAILED while its
record still says running is found by ``functions/recover/handler.py`` and recovered (settled, then redriven).

The whole cloud is the one of test_cloud_in_a_box: DynamoDB tables, moto's Step Functions executing the compiled
ASL, the real ``step`` handler behind every Task. The only stand-in is the fault: while ``broken`` the step route
refuses ``__end__`` and ``__failed__`` (the step Lambda unreachable exactly when the run should record its end),
so the execution fails without the run's end. EventBridge cannot deliver to a Lambda on moto, so the test calls
the handler as the schedule would (the rule itself is asserted in tests/infra/test_recover_stack.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from pydantic import ValidationError
from tests.integration.test_cloud_in_a_box import ROOT, Cloud, load_module
from tests.integration.test_cloud_in_a_box import cloud as cloud
from tests.support import counted
from tests.support.moto_sfn import LambdaContext, wait_for
from tests.unit.test_hardening_continuation import CHAIN

from stepwise.graph.loader import load_text
from stepwise.state.events import NODE_UPDATE
from stepwise.state.ports import RunRecord

CONTEXT = LambdaContext(function_name="test-recover", invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:test-recover")


NEWER = 1_005
NO_QUEUE = {"queued_threads": 0, "drained": 0, "drain_failed": 0}
NO_QUEUE_METRICS = {"queued_threads": 0, "drained_runs": 0, "failed_drains": 0}


@pytest.fixture(autouse=True)
def no_leftover_metrics() -> None:
    """Powertools' ``Metrics`` instances share one metric set per process: metrics another test's handler added
    and never flushed (the API handler's, in the same xdist worker) would be printed by the recover function's
    flush. In Lambda each function has a process of its own, so only the tests need this."""
    Metrics().clear_metrics()


def emf_metrics(output: str) -> dict[str, float]:
    """The metric values of the EMF lines Powertools printed."""
    values: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]
                    values[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return values


def stuck_run(cloud: Cloud) -> tuple[RunRecord, str, dict[str, bool]]:
    """A run whose execution FAILED while the step could not record its end (``broken`` on): its record still
    says running, and nothing will ever end it. Returns the record, the execution's ARN and ``broken``."""
    counted.CALLS.clear()
    step_name = cloud.settings.step_function_arn.rsplit(":", 1)[1]
    step_lambda = cloud.router.handlers[step_name]
    broken = {"on": True}

    def flaky_step(event: dict[str, Any], context: Any) -> Any:
        if broken["on"] and event.get("node") in ("__end__", "__failed__"):
            raise ConnectionError("the step Lambda is unreachable")
        return step_lambda(event, context)

    cloud.router.route(step_name, flaky_step)
    client = cloud.client
    spec = load_text(CHAIN)
    client.register(spec)
    run = client.start(spec, {})
    client.execute(run.run_id)
    record = client.get_run(run.run_id)
    assert record is not None and record.execution_arn
    arn = record.execution_arn
    wait_for(lambda: cloud.sfn.describe_execution(executionArn=arn)["status"] == "FAILED", "the execution to fail")
    assert client.get_run(run.run_id).status == "running"  # type: ignore[union-attr]  # stuck: nothing will end it
    return record, arn, broken


def test_the_recover_function_recovers_a_run_whose_execution_failed_with_a_running_record(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    run, arn, broken = stuck_run(cloud)
    client = cloud.client
    recover = load_module(ROOT / "functions" / "recover" / "handler.py")
    broken["on"] = False
    capsys.readouterr()
    answer = recover.handler({}, CONTEXT)
    assert answer == {"stale": 1, "recovered": 1, "skipped": 0, "failed": 0} | NO_QUEUE
    metrics = emf_metrics(capsys.readouterr().out)
    assert metrics == {"stale_runs": 1, "recovered_runs": 1, "skipped_runs": 0, "failed_recoveries": 0} | NO_QUEUE_METRICS

    done = cloud.wait_run(run.run_id, "succeeded", "failed")
    assert done.status == "succeeded", done.error
    assert counted_nodes(cloud, run.thread_id) == {"a": 1, "b": 1, "c": 1}  # the redrive ran no node twice
    failed = [e for e in client.run_events(run.run_id) if e.type == "run_failed"]
    assert failed[-1].data["error"] == "Stepwise.ExecutionFailed" and arn in failed[-1].data["cause"]

    # the next scheduled pass finds nothing to do
    assert recover.handler({}, CONTEXT) == {"stale": 0, "recovered": 0, "skipped": 0, "failed": 0} | NO_QUEUE


def test_a_stuck_run_older_than_1005_finished_runs_is_recovered(cloud: Cloud) -> None:
    """Before, ``stale_runs`` read the newest 1,000 runs (a Scan, sorted, truncated): this run was never seen.
    Now the pass reads the sparse ``active-created_at`` index, which holds only runs in flight."""
    run, _, broken = stuck_run(cloud)
    broken["on"] = False
    runs = cloud.client.services.runs
    for i in range(NEWER):
        runs.put(
            RunRecord(
                run_id=f"done-{i:05d}",
                thread_id=f"t-done-{i}",
                graph_ref=run.graph_ref,
                created_at=run.created_at + 1 + i,
                updated_at=run.created_at + 1 + i,
                status="succeeded",
            )
        )
    assert all(r.created_at > run.created_at for r in runs.list(limit=1000))  # the old window

    recover = load_module(ROOT / "functions" / "recover" / "handler.py")
    assert recover.handler({}, CONTEXT) == {"stale": 1, "recovered": 1, "skipped": 0, "failed": 0} | NO_QUEUE
    assert cloud.wait_run(run.run_id, "succeeded", "failed").status == "succeeded"
    assert counted_nodes(cloud, run.thread_id) == {"a": 1, "b": 1, "c": 1}
    assert list(runs.in_flight()) == []
    assert recover.handler({}, CONTEXT) == {"stale": 0, "recovered": 0, "skipped": 0, "failed": 0} | NO_QUEUE


def test_a_stuck_run_from_before_the_index_is_recovered_after_the_backfill_invocation(cloud: Cloud) -> None:
    """Upgrading: a run in flight written by a version without the ``active`` attribute is not in the index,
    so the scheduled pass cannot see it (docs/reliability.md says so) until the recover function is invoked
    once with ``{"backfill": true}``."""
    run, _, broken = stuck_run(cloud)
    broken["on"] = False
    cloud.dynamodb.update_item(TableName=cloud.settings.runs_table, Key={"run_id": {"S": run.run_id}}, UpdateExpression="REMOVE active")
    recover = load_module(ROOT / "functions" / "recover" / "handler.py")
    nothing = {"stale": 0, "recovered": 0, "skipped": 0, "failed": 0} | NO_QUEUE
    assert recover.handler({}, CONTEXT) == nothing

    answer = recover.handler({"backfill": True}, CONTEXT)
    assert answer == {"stale": 1, "recovered": 1, "skipped": 0, "failed": 0} | NO_QUEUE | {"backfilled": 1}
    assert cloud.wait_run(run.run_id, "succeeded", "failed").status == "succeeded"
    assert recover.handler({"backfill": True}, CONTEXT) == nothing | {"backfilled": 0}


def test_the_recover_function_starts_a_queue_left_behind_one_run_at_a_time(cloud: Cloud, capsys: pytest.CaptureFixture[str]) -> None:
    """Double texting ``enqueue`` when the step's drain never ran (e.g. throttled): two queued runs on an idle
    thread. The scheduled pass starts the oldest; the second starts only after the first ended (by the first's
    end step, or a later pass), never beside it."""
    client = cloud.client
    spec = load_text(CHAIN)
    client.register(spec)
    first = client.enqueue(spec, {}, thread_id="t-swept")
    second = client.enqueue(spec, {}, thread_id="t-swept")
    recover = load_module(ROOT / "functions" / "recover" / "handler.py")
    assert cloud.client.services.runs.queued_threads() == ["t-swept"]

    capsys.readouterr()
    answer = recover.handler({}, CONTEXT)
    assert answer == {"stale": 0, "recovered": 0, "skipped": 0, "failed": 0, "queued_threads": 1, "drained": 1, "drain_failed": 0}
    assert emf_metrics(capsys.readouterr().out)["drained_runs"] == 1
    started = client.get_run(first.run_id)
    assert started is not None and started.status in ("running", "succeeded") and started.execution_arn

    assert cloud.wait_run(second.run_id, "succeeded", "failed").status == "succeeded"
    ends = [(e.type, e.run_id) for e in client.history("t-swept") if e.type in ("run_started", "run_finished")]
    assert ends == [
        ("run_started", first.run_id),
        ("run_finished", first.run_id),
        ("run_started", second.run_id),
        ("run_finished", second.run_id),
    ]
    assert recover.handler({}, CONTEXT) == {"stale": 0, "recovered": 0, "skipped": 0, "failed": 0} | NO_QUEUE


def status_change(cloud: Cloud, arn: str, status: str) -> dict[str, Any]:
    """Step Functions' event for the execution ``arn``, as EventBridge delivers it to the rule's target."""
    described = cloud.sfn.describe_execution(executionArn=arn)
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2026-12-01T14:00:00Z",
        "region": "us-east-1",
        "resources": [arn],
        "detail": {
            "executionArn": arn,
            "stateMachineArn": described["stateMachineArn"],
            "name": described["name"],
            "status": status,
            "startDate": 1764597600000,
            "stopDate": 1764597601000,
            "input": "{}",
            "output": None,
        },
    }


def ended(**counts: int) -> dict[str, int]:
    return {"ended": 1, "recovered": 0, "skipped": 0, "failed": 0, "unknown": 0} | counts


def test_an_execution_that_ended_failed_recovers_its_run_from_its_event(cloud: Cloud, capsys: pytest.CaptureFixture[str]) -> None:
    """The status-change rule's invocation: the one run, at once, without waiting for (or reading every run like)
    the next scheduled pass. A second delivery of the same event (EventBridge delivers at least once) is skipped."""
    run, arn, broken = stuck_run(cloud)
    broken["on"] = False
    recover = load_module(ROOT / "functions" / "recover" / "handler.py")
    event = status_change(cloud, arn, "FAILED")
    capsys.readouterr()
    assert recover.handler(event, CONTEXT) == ended(recovered=1)
    metrics = emf_metrics(capsys.readouterr().out)
    assert metrics == {"ended_executions": 1, "recovered_runs": 1, "skipped_runs": 0, "failed_recoveries": 0}

    done = cloud.wait_run(run.run_id, "succeeded", "failed")
    assert done.status == "succeeded", done.error
    assert counted_nodes(cloud, run.thread_id) == {"a": 1, "b": 1, "c": 1}
    failed = [e for e in cloud.client.run_events(run.run_id) if e.type == "run_failed"]
    assert failed[-1].data["error"] == "Stepwise.ExecutionFailed" and arn in failed[-1].data["cause"]

    assert recover.handler(event, CONTEXT) == ended(skipped=1)  # delivered again: the run ended meanwhile
    assert counted_nodes(cloud, run.thread_id) == {"a": 1, "b": 1, "c": 1}
    assert recover.handler({}, CONTEXT) == {"stale": 0, "recovered": 0, "skipped": 0, "failed": 0} | NO_QUEUE


def test_execution_events_for_runs_that_need_nothing_change_nothing(cloud: Cloud) -> None:
    """A run that recorded its own end, an execution of a run this store does not hold (another stage's, or a
    continuation of a deleted run), a status the rule does not send, and an event that is not one."""
    client = cloud.client
    spec = load_text(CHAIN)
    client.register(spec)
    run = client.start(spec, {})
    client.execute(run.run_id)
    assert cloud.wait_run(run.run_id, "succeeded", "failed").status == "succeeded"
    record = client.get_run(run.run_id)
    assert record is not None and record.execution_arn
    recover = load_module(ROOT / "functions" / "recover" / "handler.py")

    assert recover.handler(status_change(cloud, record.execution_arn, "FAILED"), CONTEXT) == ended(skipped=1)
    after = client.get_run(run.run_id)
    assert after is not None and after.status == "succeeded" and after.updated_at == record.updated_at

    stranger = status_change(cloud, record.execution_arn, "ABORTED")
    stranger["detail"]["name"] = "run-0f3e9a--c2"
    assert recover.handler(stranger, CONTEXT) == ended(unknown=1)

    assert recover.handler(status_change(cloud, record.execution_arn, "SUCCEEDED"), CONTEXT) == ended(ended=0)
    assert counted_nodes(cloud, run.thread_id) == {"a": 1, "b": 1, "c": 1}

    broken = status_change(cloud, record.execution_arn, "FAILED")
    del broken["detail"]["name"]
    with pytest.raises(ValidationError, match=r"detail\.name"):
        recover.handler(broken, CONTEXT)


def test_the_recover_function_refuses_a_bad_limit_naming_it() -> None:
    recover = load_module(ROOT / "functions" / "recover" / "handler.py")
    with pytest.raises(ValidationError, match="limit"):
        recover.handler({"limit": 0}, CONTEXT)
    assert recover._client is None  # refused before touching AWS
    assert recover.Pass.model_validate({"detail-type": "Scheduled Event", "source": "aws.events"}).limit == 1000


def counted_nodes(cloud: Cloud, thread_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in cloud.client.history(thread_id):
        if event.type == NODE_UPDATE and event.node:
            counts[event.node] = counts.get(event.node, 0) + 1
    return counts
