"""The Step Functions executor (deploy → version → alias, start, tokens, stop) and Lambda error naming."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.conftest import EXAMPLES
from tests.support.aws import TEST_REGION, aws_settings
from tests.support.moto_sfn import moto_stepfunctions, wait_execution, wait_for

from stepwise import awsclients
from stepwise.asl.compiler import compile_graph
from stepwise.client import Stepwise
from stepwise.errors import MaxIterationsError, NodeError, StateConflictError
from stepwise.executors.stepfunctions import ALIAS, StepFunctionsExecutor, bind_step_arn, run_of_execution, task_error
from stepwise.graph.loader import load_file
from stepwise.runtime.step import step
from stepwise.state.events import NODE_UPDATE


# -- error naming ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "name"),
    [
        (NodeError("node 'x' failed"), "Stepwise.NodeError"),
        (StateConflictError("thread-1", 3), "Stepwise.StateConflict"),
        (MaxIterationsError("too many"), "Stepwise.MaxIterationsExceeded"),
    ],
)
def test_task_error_names_the_exception_class_after_its_asl_error(exc: Exception, name: str) -> None:
    """Lambda reports errorType = the raised class's name, and Retry/Catch match on it."""
    converted = task_error(exc)
    assert type(converted).__name__ == name and str(converted) == str(exc)
    assert type(task_error(type(exc)("again"))) is type(converted)  # one class per name


def test_task_error_keeps_other_exceptions() -> None:
    exc = ValueError("bad")
    assert task_error(exc) is exc


# -- binding the deployed step ----------------------------------------------------------------------
def test_bind_step_arn_reaches_every_task_also_inside_parallel_and_map() -> None:
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:prod-step"
    seen: list[str] = []

    def collect(states: dict[str, Any]) -> None:
        for state in states.values():
            if state["Type"] == "Task":
                seen.append(state["Parameters"]["FunctionName"])
            for branch in state.get("Branches", []):
                collect(branch["States"])
            if "ItemProcessor" in state:
                collect(state["ItemProcessor"]["States"])

    for example in ("parallel", "hierarchical", "human_approval"):
        asl = compile_graph(load_file(EXAMPLES / f"{example}.yaml"))
        assert bind_step_arn(asl, arn) is asl
        collect(asl["States"])
    assert len(seen) == 20 and set(seen) == {arn}


def test_names_and_arns_derive_from_the_step_arn_and_prefix() -> None:
    executor = StepFunctionsExecutor(Stepwise.in_memory().services, aws_settings(name_prefix="acme-prod"), client=object())
    assert executor.machine_name("support.router@abc") == "acme-prod-support-router"
    assert executor.alias_arn("g@1") == "arn:aws:states:us-east-1:123456789012:stateMachine:acme-prod-g:live"
    assert executor.execution_arn("g@1", "run-1") == "arn:aws:states:us-east-1:123456789012:execution:acme-prod-g:run-1"
    long = executor.machine_name("x" * 80 + "@abc")
    assert len(long) == 80 and long != executor.machine_name("x" * 79 + "y@abc")
    with pytest.raises(ValueError, match="STEPWISE_STEP_FUNCTION_ARN"):
        StepFunctionsExecutor(Stepwise.in_memory().services, aws_settings(step_function_arn="stepwise-step"), client=object())


# -- against moto -------------------------------------------------------------------------------------
@dataclass
class Deployed:
    client: Stepwise
    executor: StepFunctionsExecutor
    sfn: Any


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    with moto_stepfunctions() as router:
        settings = aws_settings()
        client = Stepwise.in_memory()
        executor = StepFunctionsExecutor(client.services, settings)
        client.executor = executor
        router.route("test-step", lambda event, context: step(client.services, event))
        yield Deployed(client, executor, awsclients.client("stepfunctions"))


def test_each_registered_version_is_published_and_live_moves(deployed: Deployed) -> None:
    v1 = load_file(EXAMPLES / "sequential.yaml")
    v2 = v1.model_copy(deep=True)
    v2.graph.max_iterations = 7
    ref1, ref2 = deployed.client.register(v1), deployed.client.register(v2)
    alias_arn = deployed.executor.alias_arn(ref1)
    assert alias_arn == deployed.executor.alias_arn(ref2)  # one state machine per graph name
    live = deployed.sfn.describe_state_machine_alias(stateMachineAliasArn=alias_arn)["routingConfiguration"]
    assert live == [{"stateMachineVersionArn": alias_arn.replace(f":{ALIAS}", ":2"), "weight": 100}]
    for number, ref in ((1, ref1), (2, ref2)):
        version = deployed.sfn.describe_state_machine(stateMachineArn=alias_arn.replace(f":{ALIAS}", f":{number}"))
        assert version["description"] == ref
        assert json.loads(version["definition"]) == deployed.client.services.registry.get(ref)[1]  # type: ignore[index]


def test_a_cold_executor_finds_an_older_version_by_its_description(deployed: Deployed) -> None:
    v1 = load_file(EXAMPLES / "sequential.yaml")
    v2 = v1.model_copy(deep=True)
    v2.state["log"] = "replace"
    deployed.client.register(v1)
    deployed.client.register(v2)
    cold = StepFunctionsExecutor(deployed.client.services, deployed.executor.settings)  # another container: no cache
    deployed.client.executor = cold
    run = deployed.client.run(v1, {})
    execution = wait_execution(deployed.sfn, cold.execution_arn(v1.ref, run.run_id))
    assert execution["status"] == "SUCCEEDED" and execution["stateMachineArn"].endswith(":1")
    assert deployed.client.state(run.thread_id)[1]["log"] == ["fetch", "clean", "summarize"]


def test_start_is_idempotent_per_run(deployed: Deployed) -> None:
    spec = load_file(EXAMPLES / "sequential.yaml")
    run = deployed.client.run(spec, {})
    record = deployed.client.services.runs.get(run.run_id)
    assert record is not None
    deployed.executor.start(record, {})  # a re-sent start: same execution name, no second run
    wait_execution(deployed.sfn, str(record.execution_arn))
    deployed.executor.start(record, {})  # even once it has finished
    arn = deployed.executor.machine_arn(spec.ref)
    assert [e["name"] for e in deployed.sfn.list_executions(stateMachineArn=arn)["executions"]] == [run.run_id]


def test_stop_aborts_a_waiting_execution(deployed: Deployed) -> None:
    run = deployed.client.run(load_file(EXAMPLES / "human_approval.yaml"), {})
    record = wait_for(lambda: (r := deployed.client.services.runs.get(run.run_id)) and r.status == "waiting" and r, "the approval")
    deployed.executor.stop(record, cause="changed my mind")
    # moto notices a stop only when the parked worker wakes up; the token wakes it (AWS aborts at once)
    deployed.sfn.send_task_success(taskToken=record.waiting["token"], output=json.dumps(record.waiting["payload"]["cursor"]))
    execution = wait_execution(deployed.sfn, str(record.execution_arn))
    assert execution["status"] == "ABORTED"
    nodes = [e.node for e in deployed.client.history(run.thread_id) if e.type == NODE_UPDATE]
    assert nodes == ["draft"]  # nothing ran after the stop


@pytest.mark.parametrize(
    ("name", "run_id"),
    [
        ("run-5d1c", "run-5d1c"),  # the run's first execution
        ("run-5d1c--c3", "run-5d1c"),  # its third continuation (runtime.step's hand-over)
        ("run-5d1c--r12", "run-5d1c"),  # its twelfth redrive (Stepwise.redrive, the recover function)
        ("my--run", "my--run"),  # a run id with a double dash of its own
        ("my--c", "my--c"),
    ],
)
def test_an_execution_names_its_run(name: str, run_id: str) -> None:
    """The recover function finds the run of an execution from the name in Step Functions' status-change event."""
    assert run_of_execution(name) == run_id
