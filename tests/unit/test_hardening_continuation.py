"""Long runs hand over to continuation executions; forks continue at the forked node; redrives start at the
failed state. Locally (the embedded interpreter) and on Step Functions (moto runs the same ASL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support import counted

from stepwise.asl.compiler import compile_graph, start_points
from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.state.events import NODE_UPDATE

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
    with pytest.raises(ValueError, match=r"STEPWISE_CONTINUE_AFTER_EVENTS='-1' is not a whole number ≥ 0"):
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


def test_a_continuation_started_at_the_head_skips_the_completed_task_lookups_a_replay_still_makes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every task key names its input seq, so a continuation execution that starts at the thread's head has
    no completed task to find: it runs fresh, like a new run (no lookup a step). A replay of the run, whose
    tasks are all written past its start cursor, still finds each one and runs none again."""
    lookups: list[str] = []
    client = Stepwise.in_memory()
    client.services.continue_after = 4
    by_key = client.services.events.by_key
    monkeypatch.setattr(client.services.events, "by_key", lambda thread, key: lookups.append(key) or by_key(thread, key))
    result = client.run(load_text(LOOP), {})
    assert result.status == "succeeded", result.error
    assert result.state["trail"] == ["tick"] * 12 + ["done"]
    assert lookups == []  # three executions or more, none of them looked a task up
    run = client.get_run(result.run_id)
    assert run is not None and run.start_cursor["execution"] != result.run_id  # the run ended in a continuation

    client.services.runs.update(result.run_id, status="running", owner="elsewhere:1:x", lease_until=1.0)  # its process died
    replayed = client.resume(result.run_id)
    assert replayed.status == "succeeded" and replayed.state["trail"] == result.state["trail"]
    assert lookups  # the replay looked its tasks up…
    assert CALLS == {"tick": 12, "done": 1}  # …and found them: no node ran twice
