"""Long runs hand over to continuation executions; forks continue at the forked node; redrives start at the
failed state. Locally (the embedded interpreter) and on Step Functions (moto runs the same ASL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support import counted
from tests.support.aws import TEST_REGION, aws_settings
from tests.support.moto_sfn import moto_stepfunctions, wait_for

from stepwise import awsclients
from stepwise.asl.compiler import compile_graph, start_points
from stepwise.client import Stepwise
from stepwise.executors.stepfunctions import StepFunctionsExecutor, task_error
from stepwise.graph.loader import load_text
from stepwise.runtime.step import step
from stepwise.state.events import FORKED, NODE_UPDATE

HERE = "tests.support.counted"
CALLS, FAIL_ONCE = counted.CALLS, counted.FAIL_ONCE

LOOP = f"""
name: long-loop
state: {{trail: append}}
graph:
  nodes:
    tick: {{kind: function, fn: "{HERE}:tick"}}
    done: {{kind: function, fn: "{HERE}:done"}}
  conditional_edges:
    - from: tick
      conditions:
        - {{if: "len(state.trail) < 12", then: tick}}
        - {{else: done}}
  entry: tick
  max_iterations: 50
"""

CHAIN = f"""
name: chain
state: {{trail: append}}
graph:
  nodes:
    a: {{kind: function, fn: "{HERE}:a"}}
    b: {{kind: function, fn: "{HERE}:b"}}
    c: {{kind: function, fn: "{HERE}:c"}}
  edges:
    - {{from: a, to: b}}
    - {{from: b, to: c}}
  entry: a
"""

FANOUT = f"""
name: fanout
state: {{trail: append}}
graph:
  nodes:
    split: {{kind: function, fn: "{HERE}:split"}}
    left: {{kind: function, fn: "{HERE}:left"}}
    right: {{kind: function, fn: "{HERE}:right"}}
    join: {{kind: function, fn: "{HERE}:join"}}
  parallel_nodes:
    - {{from: split, to: [left, right]}}
    - {{from: [left, right], to: join}}
  entry: split
"""


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    CALLS.clear()
    FAIL_ONCE.clear()
    yield
    FAIL_ONCE.clear()


def node_updates(client: Stepwise, thread_id: str) -> Counter[str]:
    return Counter(str(e.node) for e in client.history(thread_id) if e.type == NODE_UPDATE and e.node)


# -- the compiled entry point ------------------------------------------------------------------------------
def test_every_top_level_node_and_block_is_a_start_point_and_the_default_is_the_entry() -> None:
    asl = compile_graph(load_text(FANOUT))
    start = asl["States"][asl["StartAt"]]
    assert start["Type"] == "Choice" and start["Default"] == "split"
    assert start["Choices"] == [{"Variable": "$.start_at", "IsPresent": True, "Next": "__start__.at"}]
    assert start_points(asl) == {"split", "split.fanout", "join"}  # not the branch nodes: they run inside the block
    for name in ("split", "join"):
        task = asl["States"][name]
        assert task["Parameters"]["Payload"]["handover"] is True
        assert task["Catch"][0] == {"ErrorEquals": ["Stepwise.Continue"], "ResultPath": "$.handover", "Next": "Continued"}
    for branch in asl["States"]["split.fanout"]["Branches"]:  # branches never hand over (no top-level cursor)
        assert all("handover" not in s["Parameters"]["Payload"] for s in branch["States"].values() if s["Type"] == "Task")


# -- continuation executions -----------------------------------------------------------------------------------
def test_a_long_run_continues_in_new_local_executions_with_nothing_lost_or_repeated() -> None:
    seen: list[dict[str, Any]] = []
    client = Stepwise.in_memory(observer=lambda e: seen.append(e) if e["kind"] == "continued" else None)
    client.services.continue_after = 4  # events one execution may append before handing over
    result = client.run(load_text(LOOP), {})
    assert result.status == "succeeded", result.error
    assert result.state["trail"] == ["tick"] * 12 + ["done"]
    assert len(seen) >= 2, seen  # at least three executions
    assert [e["continuation"] for e in seen] == list(range(1, len(seen) + 1))
    assert CALLS == {"tick": 12, "done": 1}  # every node ran exactly once
    assert node_updates(client, result.thread_id) == {"tick": 12, "done": 1}
    run = client.get_run(result.run_id)
    assert run is not None and run.start_cursor["execution"] == f"{result.run_id}--c{len(seen)}"


def test_continuation_is_off_at_zero_and_the_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    client = Stepwise.in_memory(observer=lambda e: seen.append(e) if e["kind"] == "continued" else None)
    client.services.continue_after = 0
    assert client.run(load_text(LOOP), {}).status == "succeeded" and seen == []
    monkeypatch.setenv("STEPWISE_CONTINUE_AFTER_EVENTS", "7")
    assert Stepwise.in_memory().services.continue_after == 7
    monkeypatch.setenv("STEPWISE_CONTINUE_AFTER_EVENTS", "-1")
    with pytest.raises(ValueError, match="continue_after_events"):
        Stepwise.in_memory()


# -- fork continues at the forked node -------------------------------------------------------------------------
def test_a_fork_continues_at_the_node_after_the_forked_seq() -> None:
    started: list[str] = []
    client = Stepwise.in_memory(observer=lambda e: started.append(e["node"]) if e["kind"] == "node_started" else None)
    spec = load_text(CHAIN)
    first = client.run(spec, {})
    after_a = next(e.seq for e in client.history(first.thread_id) if e.type == NODE_UPDATE and e.node == "a")
    fork = client.fork(first.thread_id, after_a)
    assert client.history(fork)[0].data["next"]["start_at"] == "b"
    started.clear()
    second = client.run(spec, {}, thread_id=fork)
    assert second.status == "succeeded"
    assert started == ["b", "c"]  # not from the entry
    assert second.state["trail"] == ["a", "b", "c"]
    third = client.run(spec, {}, thread_id=fork)  # a later run on the same thread starts at the entry again
    assert third.state["trail"] == ["a", "b", "c", "a", "b", "c"]


def test_a_fork_after_a_split_reruns_its_parallel_block_then_the_join() -> None:
    started: list[str] = []
    client = Stepwise.in_memory(observer=lambda e: started.append(e["node"]) if e["kind"] == "node_started" else None)
    spec = load_text(FANOUT)
    first = client.run(spec, {})
    after_split = next(e.seq for e in client.history(first.thread_id) if e.type == NODE_UPDATE and e.node == "split")
    fork = client.fork(first.thread_id, after_split)
    started.clear()
    second = client.run(spec, {}, thread_id=fork)
    assert second.status == "succeeded", second.error
    assert sorted(started) == ["join", "left", "right"]
    assert sorted(second.state["trail"]) == ["join", "left", "right", "split"]


def test_a_fork_of_a_finished_run_or_for_another_graph_starts_at_the_entry() -> None:
    client = Stepwise.in_memory()
    first = client.run(load_text(CHAIN), {})
    fork = client.fork(first.thread_id, client.head(first.thread_id))
    assert "next" not in client.history(fork)[0].data  # the run had ended: nothing to continue
    after_a = next(e.seq for e in client.history(first.thread_id) if e.type == NODE_UPDATE and e.node == "a")
    other = client.fork(first.thread_id, after_a)
    CALLS.clear()
    result = client.run(load_text(LOOP), {}, thread_id=other)  # no node `b` there: from its entry
    assert result.status == "succeeded" and CALLS["tick"] == 11  # the fork's trail holds one `a` already


# -- redrive from the failed state ------------------------------------------------------------------------------
def test_a_branch_failure_is_redriven_at_its_parallel_block_without_rerunning_the_split() -> None:
    started: list[str] = []
    client = Stepwise.in_memory(observer=lambda e: started.append(e["node"]) if e["kind"] == "node_started" else None)
    FAIL_ONCE.add("right")
    failed = client.run(load_text(FANOUT), {})
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["redrive"]["start_at"] == "split.fanout"
    started.clear()
    done = client.redrive(failed.run_id)
    assert done.status == "succeeded", done.error
    assert "split" not in started and "right" in started and "join" in started
    assert CALLS["split"] == 1 and CALLS["left"] == 1  # left completed before: replayed, not re-run
    assert node_updates(client, done.thread_id) == {"split": 1, "left": 1, "right": 1, "join": 1}


# -- on Step Functions (moto) ----------------------------------------------------------------------------------
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
