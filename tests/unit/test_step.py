"""The stateless step: idempotency, failure records, iteration bounds, concurrent writers."""

from pathlib import Path

import pytest

from stepwise.client import Stepwise
from stepwise.errors import MaxIterationsError, NodeError, StateConflictError
from stepwise.graph.loader import load_text
from stepwise.runtime.step import Cursor, step
from stepwise.state.events import NODE_FAILED, NODE_UPDATE, RUN_STARTED, Event

EXAMPLES_NODES = Path(__file__).resolve().parents[2] / "statemachines" / "examples" / "nodes.py"

SEQ = """
name: seq
module: statemachines.examples.nodes
state: {log: append}
nodes: [fetch, clean, summarize]
"""


def start(client: Stepwise, text: str, state: dict) -> dict:
    spec = load_text(text)
    ref = client.register(spec)
    client.services.events.append("t1", 0, [Event(type=RUN_STARTED, run_id="r1", data={"update": state})])
    from stepwise.state.ports import RunRecord

    cursor = Cursor(thread_id="t1", run_id="r1", graph=ref, seq=1).model_dump(exclude_none=True)
    client.services.runs.put(RunRecord(run_id="r1", thread_id="t1", graph_ref=ref, start_cursor=cursor))
    return cursor


def test_step_appends_a_delta_and_returns_the_next_cursor(memory_client: Stepwise):
    cursor = start(memory_client, SEQ, {"text": "A  B"})
    out = step(memory_client.services, {"node": "fetch", "cursor": cursor})
    assert out["seq"] == 2 and out["route"] == "clean" and out["visits"] == {"fetch": 1}
    event = memory_client.services.events.read("t1")[-1]
    assert event.type == NODE_UPDATE and event.data["update"] == {"text": "A  B", "log": ["fetch"]}  # a delta, not the state


def test_a_retried_step_returns_its_recorded_output_without_rerunning(memory_client: Stepwise):
    cursor = start(memory_client, SEQ, {})
    first = step(memory_client.services, {"node": "fetch", "cursor": cursor})
    again = step(memory_client.services, {"node": "fetch", "cursor": cursor})
    assert again == first
    assert memory_client.services.events.head("t1") == 2


def test_a_failing_node_is_recorded_with_traceback(memory_client: Stepwise):
    text = SEQ.replace("nodes: [fetch, clean, summarize]", "nodes: [fetch, fail_on_purpose]")
    cursor = start(memory_client, text, {"ticket": "T-1"})
    out = step(memory_client.services, {"node": "fetch", "cursor": cursor})
    with pytest.raises(NodeError, match="cannot process ticket 'T-1'"):
        step(memory_client.services, {"node": "fail_on_purpose", "cursor": out})
    failed = memory_client.services.events.read("t1")[-1]
    assert failed.type == NODE_FAILED and failed.node == "fail_on_purpose"
    assert "ValueError" in failed.data["error"] and "Traceback" in failed.data["traceback"]


def test_max_iterations_bounds_every_node(memory_client: Stepwise):
    cursor = start(memory_client, SEQ, {})
    cursor["visits"] = {"fetch": 25}
    with pytest.raises(MaxIterationsError, match="max_iterations=25"):
        step(memory_client.services, {"node": "fetch", "cursor": cursor})


def test_a_writer_that_missed_a_visible_update_must_rerun(memory_client: Stepwise):
    cursor = start(memory_client, SEQ, {})
    services = memory_client.services
    services.hydrator.state("t1", {"log": "append"})  # warm cache at seq 1
    original = services.hydrator.state

    def stale_read(*args, **kwargs):
        seq, state = original(*args, **kwargs)
        # another writer sneaks in on the main scope between this step's read and its append
        services.events.append(
            "t1", services.events.head("t1"), [Event(type=NODE_UPDATE, run_id="other", node="x", data={"update": {"text": "theirs"}})]
        )
        return seq, state

    services.hydrator.state = stale_read  # type: ignore[method-assign]
    with pytest.raises(StateConflictError):
        step(services, {"node": "fetch", "cursor": cursor})
    assert [e.run_id for e in services.events.read("t1")] == ["r1", "other"]  # nothing overwritten


def test_a_branch_writer_moves_past_sibling_writes(memory_client: Stepwise):
    cursor = start(memory_client, SEQ, {})
    services = memory_client.services
    original = services.hydrator.state

    raced = []

    def racing_read(*args, **kwargs):
        seq, state = original(*args, **kwargs)
        if not raced:
            raced.append(seq)
            services.events.append(
                "t1",
                services.events.head("t1"),
                [Event(type=NODE_UPDATE, run_id="r1", node="sib", scope="p:x/1", data={"update": {"a": 1}})],
            )
        return seq, state

    services.hydrator.state = racing_read  # type: ignore[method-assign]
    out = step(services, {"node": "fetch", "cursor": cursor, "enter": "p:x/0"})
    assert out["seq"] == 3 and out["frames"] == [["p:x/0", 1]]
    assert [e.scope for e in services.events.read("t1")] == ["", "p:x/1", "p:x/0"]


def test_bad_payload_is_rejected_by_validation(memory_client: Stepwise):
    with pytest.raises(Exception, match="cursor"):
        step(memory_client.services, {"node": "fetch"})


def test_a_failure_records_where_in_user_code_and_the_fix(memory_client: Stepwise):
    text = SEQ.replace("nodes: [fetch, clean, summarize]", "nodes: [fetch, fail_on_purpose]")
    cursor = start(memory_client, text, {"ticket": "T-1"})
    out = step(memory_client.services, {"node": "fetch", "cursor": cursor})
    with pytest.raises(NodeError):
        step(memory_client.services, {"node": "fail_on_purpose", "cursor": out})
    failed = memory_client.services.events.read("t1")[-1].data
    assert failed["where"].startswith(f"{EXAMPLES_NODES}:") and failed["where"].endswith(" in fail_on_purpose")
    assert failed["fix"] == f"correct the code at {failed['where']}, then run the graph again"
    step(memory_client.services, {"node": "__failed__", "mode": "fail", "cursor": out})
    run = memory_client.services.runs.get("r1")
    assert run is not None and run.error is not None
    assert run.error["node"] == "fail_on_purpose" and run.error["where"] == failed["where"] and run.error["fix"] == failed["fix"]


def test_a_run_that_failed_outside_any_node_keeps_the_cause(memory_client: Stepwise):
    cursor = start(memory_client, SEQ, {})
    cause = '{"errorType": "Lambda.ServiceException", "errorMessage": "Rate exceeded", "stackTrace": []}'
    cursor["error"] = {"Error": "Lambda.ServiceException", "Cause": cause}
    step(memory_client.services, {"node": "__failed__", "mode": "fail", "cursor": cursor})
    run = memory_client.services.runs.get("r1")
    assert run is not None and run.error == {"error": "Lambda.ServiceException", "cause": cause, "message": "Rate exceeded"}
