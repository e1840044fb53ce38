"""The planner's dependency-wave loop (a compiler addition) runs the same on moto's Step Functions
interpreter as on the local engine: same final state, same node visits, same events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from tests.support.moto_sfn import MotoExecutor, moto_stepfunctions, wait_execution

from stepwise.asl.interpreter import FakeClock
from stepwise.client import Stepwise
from stepwise.executors.stepfunctions import task_error
from stepwise.graph.loader import load_text
from stepwise.runtime.step import step
from stepwise.state.events import NODE_UPDATE

DAG = """
name: dag-moto
state: {findings: merge, messages: append}
graph:
  nodes:
    plan:
      kind: planner
      model: scripted
      workers: {research: researcher, code: coder}
      config: {dag: true}
      max_concurrency: 2
      script:
        - subtasks:
            - {id: code, kind: code, title: "write the patch", depends_on: [r1, r2]}
            - {id: r1, kind: research, title: "read the docs"}
            - {id: r2, kind: research, title: "read the logs"}
            - {id: test, kind: code, title: "write the test", depends_on: [code]}
    researcher: {kind: agent, model: scripted, output: findings, script: ["notes: {task}"]}
    coder: {kind: agent, model: scripted, output: findings, script: ["code: {task}"]}
    combine: {kind: synthesizer, model: scripted, script: [{content: "shipped", quality: 1.0}]}
  edges:
    - {from: plan, to: combine}
  entry: plan
  max_iterations: 10
"""


@pytest.fixture
def moto_client() -> Iterator[tuple[Stepwise, MotoExecutor, Any]]:
    with moto_stepfunctions() as router:
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        executor = MotoExecutor(sfn)
        client = Stepwise.in_memory(executor=executor)

        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            try:
                return step(client.services, event)
            except Exception as exc:
                raise task_error(exc) from exc

        router.route(None, handler)
        yield client, executor, sfn


def test_dependency_waves_run_the_same_on_moto(moto_client: tuple[Stepwise, MotoExecutor, Any]) -> None:
    spec = load_text(DAG)
    local = Stepwise.in_memory(clock=FakeClock())
    mine = local.run(spec, {"messages": [{"role": "user", "content": "ship the fix"}]})
    assert mine.status == "succeeded", mine.error

    client, executor, sfn = moto_client
    started = client.run(spec, {"messages": [{"role": "user", "content": "ship the fix"}]})
    description = wait_execution(sfn, executor.executions[started.run_id])
    assert description["status"] == "SUCCEEDED", description
    _, theirs = client.state(started.thread_id)

    assert theirs == mine.state
    assert theirs["findings"] == {
        "r1": "notes: read the docs",
        "r2": "notes: read the logs",
        "code": "code: write the patch",
        "test": "code: write the test",
    }

    def visits(c: Stepwise, thread: str) -> Counter[str | None]:
        return Counter(e.node for e in c.history(thread) if e.type == NODE_UPDATE)

    assert visits(client, started.thread_id) == visits(local, mine.thread_id) == {"plan": 3, "researcher": 2, "coder": 2, "combine": 1}
