"""The one invariant: what runs locally is what deploys.

Every example's compiled ASL runs twice — in the local engine and in moto's Step Functions interpreter
(an independent implementation: LocalStack's, vendored), whose Lambda invokes reach the same stateless
step in-process — and both runs must end with the same status, the same final state and the same
multiset of node visits (``node_update`` events per node) and of recorded events.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.support.moto_sfn import MotoExecutor, moto_stepfunctions, wait_execution, wait_for

from stepwise.asl.interpreter import FakeClock
from stepwise.client import RunResult, Stepwise
from stepwise.executors.stepfunctions import task_error
from stepwise.graph.loader import load_file, load_text
from stepwise.graph.spec import GraphSpec
from stepwise.runtime.step import resume_step, step
from stepwise.state.events import NODE_FAILED, NODE_UPDATE, RUN_FAILED

EXAMPLES = Path(__file__).resolve().parents[2] / "statemachines" / "examples"

# example -> inputs to run it with (each input is one conformance case)
CASES: dict[str, list[dict[str, Any]]] = {
    "sequential": [{}, {"text": "  One  TWO three four five SIX  "}],
    "conditional": [{"ticket": "refund please"}, {"ticket": "found a bug"}, {"ticket": "hello"}, {"type": "B", "ticket": "x"}],
    "parallel": [{"query": "event sourcing"}],
    "hierarchical": [{}],
    "react": [{"messages": [{"role": "user", "content": "What is 17 * 23?"}]}],
    "multi_agent": [{"question": "How should our payment client retry failed calls?"}],
    "subgraph": [{"text": "please refund my order"}],
    # no preference in the message, so nothing is retrieved in either engine (episodes are not a retrieved strategy)
    "memory": [{"user_id": "conformance-user", "messages": [{"role": "user", "content": "Book me a flight to Rome."}]}],
}
HUMAN = "human_approval"


def visits(client: Stepwise, thread_id: str) -> Counter[str | None]:
    return Counter(e.node for e in client.history(thread_id) if e.type == NODE_UPDATE)


def event_kinds(client: Stepwise, thread_id: str) -> Counter[tuple[str, str | None]]:
    return Counter((e.type, e.node) for e in client.history(thread_id))


def step_lambda(client: Stepwise) -> Any:
    """The step behind a Lambda-style handler, naming errors as ``functions/step/handler.py`` does."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            return step(client.services, event)
        except Exception as exc:
            raise task_error(exc) from exc

    return handler


@dataclass
class MotoEngine:
    client: Stepwise
    executor: MotoExecutor
    sfn: Any

    def finish(self, run_id: str) -> RunResult:
        """Wait for the execution to end in moto, then read the run like the local client does."""
        description = wait_execution(self.sfn, self.executor.executions[run_id])
        run = self.client.services.runs.get(run_id)
        assert run is not None
        expected = {"succeeded": "SUCCEEDED", "failed": "FAILED"}.get(run.status)
        assert description["status"] == expected, (run.status, description)
        _, state = self.client.state(run.thread_id)
        return RunResult(run_id, run.thread_id, run.status, state, run.error)

    def wait_until_waiting(self, run_id: str, after_token: str | None = None) -> dict[str, Any]:
        def parked() -> dict[str, Any] | None:
            run = self.client.services.runs.get(run_id)
            assert run is not None and run.status not in ("failed", "succeeded"), run
            waiting = run.waiting if run.status == "waiting" else None
            return waiting if waiting and waiting["token"] != after_token else None

        return wait_for(parked, f"run {run_id} to wait at its human node")  # type: ignore[no-any-return]

    def resume(self, run_id: str, waiting: dict[str, Any], decision: dict[str, Any]) -> None:
        """What a resume does on AWS: compute the human node's output, then SendTaskSuccess with the token."""
        services = self.client.services
        output = resume_step(services, waiting, decision)
        services.runs.update(run_id, status="running", waiting=None)
        self.sfn.send_task_success(taskToken=waiting["token"], output=json.dumps(output))


@pytest.fixture
def moto() -> Iterator[MotoEngine]:
    with moto_stepfunctions() as router:
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        executor = MotoExecutor(sfn)
        client = Stepwise.in_memory(executor=executor)
        router.route(None, step_lambda(client))
        yield MotoEngine(client, executor, sfn)


@pytest.fixture
def local() -> Stepwise:
    return Stepwise.in_memory(clock=FakeClock())


def assert_same_run(local: Stepwise, mine: RunResult, moto: MotoEngine, theirs: RunResult) -> None:
    assert theirs.status == mine.status
    assert theirs.state == mine.state
    assert visits(moto.client, theirs.thread_id) == visits(local, mine.thread_id)
    assert event_kinds(moto.client, theirs.thread_id) == event_kinds(local, mine.thread_id)


def test_every_example_has_a_conformance_case() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.yaml")} == set(CASES) | {HUMAN}


@pytest.mark.parametrize(("example", "input_"), [(name, case) for name, cases in CASES.items() for case in cases])
def test_example_runs_the_same_on_moto(example: str, input_: dict[str, Any], local: Stepwise, moto: MotoEngine) -> None:
    spec = load_file(EXAMPLES / f"{example}.yaml")
    mine = local.run(spec, input_)
    assert mine.status == "succeeded", mine.error

    started = moto.client.run(spec, input_)
    theirs = moto.finish(started.run_id)

    assert_same_run(local, mine, moto, theirs)
    assert sum(visits(local, mine.thread_id).values()) >= min(2, len(spec.graph.nodes))  # the case really walked the graph


@pytest.mark.parametrize("decisions", [[{"decision": "yes"}], [{"decision": "revise"}, {"decision": "no", "comment": "too high"}]])
def test_human_approval_waits_and_resumes_the_same_on_moto(decisions: list[dict[str, Any]], local: Stepwise, moto: MotoEngine) -> None:
    spec = load_file(EXAMPLES / f"{HUMAN}.yaml")
    mine = local.run(spec, {"amount": 120})
    started = moto.client.run(spec, {"amount": 120})
    token = None
    for decision in decisions:
        assert mine.status == "waiting" and mine.waiting is not None
        waiting = moto.wait_until_waiting(started.run_id, after_token=token)
        assert waiting["node"] == mine.waiting["node"] == "approve"
        assert waiting["prompt"] == mine.waiting["prompt"]
        _, state = moto.client.state(started.thread_id)
        assert state == local.state(mine.thread_id)[1]  # the same state while parked
        mine = local.resume(mine.run_id, decision)
        moto.resume(started.run_id, waiting, decision)
        token = waiting["token"]

    theirs = moto.finish(started.run_id)
    assert mine.status == "succeeded"
    assert_same_run(local, mine, moto, theirs)
    assert visits(local, mine.thread_id)["approve"] == len(decisions)


FAILING = """
name: failing
state: {trail: append}
graph:
  nodes:
    evaluate: {kind: function, fn: "statemachines.examples.nodes:evaluate"}
    explode:  {kind: function, fn: "statemachines.examples.nodes:fail_on_purpose"%s}
  edges:
    - {from: evaluate, to: explode}
  entry: evaluate
"""


@pytest.mark.parametrize("retry", ["", ", retry: {max_attempts: 2, interval_seconds: 1}"], ids=["no-retry", "retry-2"])
def test_failing_node_fails_the_run_the_same_on_moto(retry: str, local: Stepwise, moto: MotoEngine) -> None:
    spec: GraphSpec = load_text(FAILING % retry, source="failing.yaml")
    mine = local.run(spec, {"ticket": "T-9"})
    started = moto.client.run(spec, {"ticket": "T-9"})
    theirs = moto.finish(started.run_id)

    assert mine.status == theirs.status == "failed"
    assert theirs.state == mine.state == {"ticket": "T-9", "type": "other", "trail": ["evaluate"]}
    assert mine.error is not None and theirs.error is not None
    for key in ("node", "message", "error"):
        assert theirs.error[key] == mine.error[key], key
    assert theirs.error["node"] == "explode" and theirs.error["error"] == "Stepwise.NodeError"
    assert "cannot process ticket 'T-9'" in theirs.error["message"]
    assert "fail_on_purpose" in theirs.error["traceback"]
    # the node's Retry matched the Lambda's errorType, so both engines ran it 1 + max_attempts times
    attempts = 3 if retry else 1
    for client, result in ((local, mine), (moto.client, theirs)):
        failures = [e for e in client.history(result.thread_id) if e.type == NODE_FAILED]
        assert [e.node for e in failures] == ["explode"] * attempts
        assert [e.type for e in client.history(result.thread_id)][-1] == RUN_FAILED
    assert_same_run(local, mine, moto, theirs)


def test_nested_fan_outs_in_a_loop_run_the_same_on_moto(local: Stepwise, moto: MotoEngine) -> None:
    from tests.support.graphs import NESTED_LOOP, NESTED_LOOP_TRAIL

    spec = load_text(NESTED_LOOP)
    mine = local.run(spec, {})
    theirs = moto.finish(moto.client.run(spec, {}).run_id)
    assert mine.state["trail"] == NESTED_LOOP_TRAIL
    assert_same_run(local, mine, moto, theirs)


def test_human_in_a_branch_runs_the_same_on_moto(local: Stepwise, moto: MotoEngine) -> None:
    from tests.support.graphs import HUMAN_IN_BRANCH

    spec = load_text(HUMAN_IN_BRANCH)
    mine = local.run(spec, {})
    started = moto.client.run(spec, {})
    waiting = moto.wait_until_waiting(started.run_id)
    assert mine.waiting is not None and waiting["node"] == mine.waiting["node"] == "ask"
    mine = local.resume(mine.run_id, {"go": True})
    moto.resume(started.run_id, waiting, {"go": True})
    theirs = moto.finish(started.run_id)
    assert mine.status == "succeeded"
    assert_same_run(local, mine, moto, theirs)


def test_seed_parallel_form_in_a_loop_runs_the_same_on_moto(local: Stepwise, moto: MotoEngine) -> None:
    from tests.support.graphs import SEED_PARALLEL_LOOP, SEED_PARALLEL_LOOP_TRAIL

    spec = load_text(SEED_PARALLEL_LOOP)
    mine = local.run(spec, {})
    theirs = moto.finish(moto.client.run(spec, {}).run_id)
    assert mine.status == "succeeded" and mine.state["trail"] == SEED_PARALLEL_LOOP_TRAIL
    assert_same_run(local, mine, moto, theirs)


TIMED_HUMAN = """
name: timed-human
graph:
  nodes:
    draft: {kind: function, fn: "stepwise.examples.nodes:draft"}
    approve: {kind: human, prompt: "Approve?", config: {timeout_seconds: 1}}
    publish: {kind: function, fn: "stepwise.examples.nodes:publish"}
  edges:
    - {from: draft, to: approve}
    - {from: approve, to: publish}
  entry: draft
"""


def test_an_unanswered_human_wait_times_out_the_same_on_moto(local: Stepwise, moto: MotoEngine) -> None:
    """Step Functions fails the wait's Task with States.Timeout after its TimeoutSeconds (moto keeps that time
    for real: one second here), and the Catch fails the run; locally the deadline passes on the fake clock."""
    spec = load_text(TIMED_HUMAN)
    mine = local.run(spec, {})
    assert mine.status == "waiting" and mine.waiting is not None and mine.waiting["timeout_seconds"] == 1
    assert isinstance(local.services.clock, FakeClock)
    local.services.clock.t = mine.waiting["deadline"]
    mine = local.expire_wait(mine.run_id)
    theirs = moto.finish(moto.client.run(spec, {}).run_id)  # no answer is sent: moto's timer ends the wait

    assert mine.status == theirs.status == "failed"
    assert mine.error is not None and theirs.error is not None
    for key in ("error", "node", "message", "cause", "timeout_seconds"):
        assert theirs.error[key] == mine.error[key], key
    assert theirs.error["error"] == "States.Timeout" and theirs.error["node"] == "approve"
    assert theirs.error["message"] == "human node 'approve' waited 1 s with no answer (config.timeout_seconds: 1)"
    for client, result in ((local, mine), (moto.client, theirs)):
        run = client.get_run(result.run_id)
        assert run is not None and run.waiting is None and run.interrupt_id is None  # not left "waiting"
    assert_same_run(local, mine, moto, theirs)
