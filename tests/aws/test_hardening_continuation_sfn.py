"""Continuation executions, fork at the forked node, redrive at the failed state, and recovery of runs whose
execution ended without the run's end, on Step Functions: moto executes the very ASL the local engine runs
(the local side of each is in tests/unit/test_hardening_continuation.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.support import counted
from tests.support.aws import TEST_REGION, aws_settings
from tests.support.moto_sfn import moto_stepfunctions, wait_for
from tests.unit.test_hardening_continuation import CHAIN, LOOP, node_updates

from stepwise import awsclients
from stepwise.client import Stepwise
from stepwise.executors.stepfunctions import StepFunctionsExecutor, task_error
from stepwise.graph.loader import load_text
from stepwise.runtime.step import step
from stepwise.state.events import FORKED, NODE_UPDATE

CALLS, FAIL_ONCE = counted.CALLS, counted.FAIL_ONCE


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    CALLS.clear()
    FAIL_ONCE.clear()
    yield
    FAIL_ONCE.clear()


# -- ----------------------------------------------------------------------------------
@pytest.fixture
def sfn_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stepwise, Any]]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    with moto_stepfunctions() as router:
        client = Stepwise.in_memory()
        client.executor = StepFunctionsExecutor(client.services, aws_settings())

        def lambda_handler(event: dict[str, Any], context: Any) -> Any:  # as functions/step/handler.py: ASL error names
            try:
                return step(client.services, event)
            except Exception as exc:
                raise task_error(exc) from exc

        router.route("test-step", lambda_handler)
        yield client, awsclients.client("stepfunctions")


def _settled(client: Stepwise, run_id: str) -> Any:
    return wait_for(lambda: (r := client.get_run(run_id)) and r.status in ("succeeded", "failed") and r, f"run {run_id} to end")


def _executions(sfn: Any, client: Stepwise, ref: str) -> dict[str, str]:
    machine = client.executor.machine_arn(ref)  # type: ignore[attr-defined]
    return {e["name"]: e["status"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]}


def test_on_step_functions_a_long_run_completes_across_continuation_executions(sfn_client: tuple[Stepwise, Any]) -> None:
    client, sfn = sfn_client
    client.services.continue_after = 4
    spec = load_text(LOOP)
    run = client.start(spec, {})
    client.execute(run.run_id)
    record = _settled(client, run.run_id)
    assert record.status == "succeeded", record.error
    names = wait_for(
        lambda: (ex := _executions(sfn, client, spec.ref)) and all(s == "SUCCEEDED" for s in ex.values()) and ex, "executions to end"
    )
    assert len(names) >= 3 and run.run_id in names and f"{run.run_id}--c1" in names and f"{run.run_id}--c2" in names
    assert record.execution_arn.endswith(record.start_cursor["execution"])  # cancel stops the live one
    assert CALLS == {"tick": 12, "done": 1}
    assert node_updates(client, run.thread_id) == {"tick": 12, "done": 1}
    _, state = client.state(run.thread_id)
    assert state["trail"] == ["tick"] * 12 + ["done"]


def test_on_step_functions_a_fork_continues_at_the_node_and_a_redrive_at_the_failed_node(sfn_client: tuple[Stepwise, Any]) -> None:
    client, sfn = sfn_client
    spec = load_text(CHAIN)
    FAIL_ONCE.add("b")
    run = client.start(spec, {})
    client.execute(run.run_id)
    failed = _settled(client, run.run_id)
    assert failed.status == "failed" and failed.error["redrive"]["start_at"] == "b"
    client.redrive(run.run_id)
    redriven = _settled(client, run.run_id)
    assert redriven.status == "succeeded", redriven.error
    assert CALLS == {"a": 1, "b": 2, "c": 1}  # `a` was not run again; `b` failed once, then ran
    assert f"{run.run_id}--r1" in _executions(sfn, client, spec.ref)
    after_a = next(e.seq for e in client.history(run.thread_id) if e.type == NODE_UPDATE and e.node == "a")
    fork = client.fork(run.thread_id, after_a)
    assert client.history(fork)[0].type == FORKED
    CALLS.clear()
    on_fork = client.start(spec, {}, thread_id=fork)
    client.execute(on_fork.run_id)
    assert _settled(client, on_fork.run_id).status == "succeeded"
    assert CALLS == {"b": 1, "c": 1}
    assert client.state(fork)[1]["trail"] == ["a", "b", "c"]


# -- Step Functions runs whose execution ended without the run's end ---------------------------------------------
def test_on_step_functions_a_run_whose_execution_failed_silently_is_stale_then_settled_and_redriven(
    sfn_client: tuple[Stepwise, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step Lambda was broken when the run should have recorded its end (both ``__end__`` and
    ``__failed__`` failed): the execution is FAILED, the run record still says running."""
    client, sfn = sfn_client
    broken = {"on": True}
    real = client.services.runs.update

    def update(run_id: str, **fields: Any) -> Any:
        if broken["on"] and fields.get("status") in ("succeeded", "failed"):
            raise ConnectionError("the runs table is unreachable")
        return real(run_id, **fields)

    monkeypatch.setattr(client.services.runs, "update", update)
    spec = load_text(CHAIN)
    run = client.start(spec, {})
    client.execute(run.run_id)
    arn = client.get_run(run.run_id).execution_arn  # type: ignore[union-attr]
    wait_for(lambda: sfn.describe_execution(executionArn=arn)["status"] == "FAILED", "the execution to fail")
    assert client.get_run(run.run_id).status == "running"  # type: ignore[union-attr]
    assert [r.run_id for r in client.stale_runs()] == [run.run_id]
    broken["on"] = False
    recovered = client.recover(run.run_id)
    assert recovered.status in ("running", "succeeded")
    done = _settled(client, run.run_id)
    assert done.status == "succeeded", done.error
    assert CALLS == {"a": 1, "b": 1, "c": 1}  # the replay ran no node twice
    assert node_updates(client, run.thread_id) == {"a": 1, "b": 1, "c": 1}
    redriven = [name for name in _executions(sfn, client, spec.ref) if name.startswith(f"{run.run_id}--r")]
    assert len(redriven) == 1
    assert client.stale_runs() == []
    failed = [e for e in client.run_events(run.run_id) if e.type == "run_failed"]
    assert failed[-1].data["error"] == "Stepwise.ExecutionFailed" and "ended FAILED" in failed[-1].data["cause"]
