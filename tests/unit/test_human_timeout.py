"""A human node's ``config.timeout_seconds`` on the local engine: the wait records its deadline, and once it has
passed the run fails with ``States.Timeout`` naming the node, as the compiled Task's ``TimeoutSeconds`` makes it
fail on Step Functions (tests/conformance/test_moto_conformance.py compares the two). An answer after the deadline
is refused (library, API); ``stepwise serve``'s scheduler ends overdue waits on time. Time is a FakeClock
throughout: nothing sleeps."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.moto_sfn import wait_for
from tests.unit.test_api_routes import error_code, make

from stepwise.api.triggers import TriggerScheduler
from stepwise.asl.interpreter import FakeClock
from stepwise.client import Stepwise
from stepwise.errors import ConflictingRequestError, WaitTimedOutError
from stepwise.graph.loader import load_text
from stepwise.graph.spec import GraphSpec
from stepwise.state.events import INTERRUPT

TIMED_YAML = """
name: timed-approval
graph:
  nodes:
    draft: {kind: function, fn: "stepwise.examples.nodes:draft"}
    approve:
      kind: human
      prompt: "Approve?"
      input: {decision: {enum: ["yes", "no"]}}
      config: {timeout_seconds: 60}
    publish: {kind: function, fn: "stepwise.examples.nodes:publish"}
  edges:
    - {from: draft, to: approve}
    - {from: approve, to: publish}
  entry: draft
"""
MESSAGE = "human node 'approve' waited 60 s with no answer (config.timeout_seconds: 60)"


def timed(seconds: int = 60) -> GraphSpec:
    return load_text(TIMED_YAML.replace("timeout_seconds: 60", f"timeout_seconds: {seconds}"))


def untimed() -> GraphSpec:
    return load_text(TIMED_YAML.replace("      config: {timeout_seconds: 60}\n", "").replace("timed-approval", "untimed-approval"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(clock: FakeClock) -> Stepwise:
    return Stepwise.in_memory(clock=clock)


def assert_timed_out(client: Stepwise, run_id: str) -> None:
    run = client.get_run(run_id)
    assert run is not None and run.status == "failed"
    assert run.error is not None
    assert run.error["error"] == "States.Timeout" and run.error["node"] == "approve"
    assert run.error["message"] == run.error["cause"] == MESSAGE and run.error["timeout_seconds"] == 60
    assert f"stepwise redrive {run_id}" in run.error["fix"]
    assert run.waiting is None and run.interrupt_id is None
    kinds = [e.type for e in client.run_events(run_id)]
    assert kinds == ["run_started", "node_update", "interrupt", "run_failed"]  # the answer never became an update
    _, state = client.state(run.thread_id)
    assert "decision" not in state and "published" not in state


def test_a_wait_records_its_deadline_in_the_interrupt_and_the_run(client: Stepwise, clock: FakeClock) -> None:
    started = clock.now()
    result = client.run(timed(), {})
    assert result.status == "waiting" and result.waiting is not None
    assert result.waiting["timeout_seconds"] == 60 and result.waiting["deadline"] == started + 60
    [interrupt] = [e for e in client.run_events(result.run_id) if e.type == INTERRUPT]
    assert interrupt.data["deadline"] == started + 60  # in the log too: any process reading it can tell
    assert result.to_json()["waiting"]["deadline"] == started + 60  # what `stepwise run -o json` prints
    plain = client.run(untimed(), {})
    assert plain.waiting is not None and "deadline" not in plain.waiting  # no timeout: it waits until answered
    assert "deadline" not in plain.to_json()["waiting"]


def test_an_answer_before_the_deadline_continues_the_run(client: Stepwise, clock: FakeClock) -> None:
    waiting = client.run(timed(), {})
    clock.t += 59
    assert client.expire_overdue() == []
    done = client.resume(waiting.run_id, {"decision": "yes"})
    assert done.status == "succeeded" and done.state["decision"] == "yes"


def test_an_answer_after_the_deadline_is_refused_and_the_run_fails_as_timed_out(client: Stepwise, clock: FakeClock) -> None:
    waiting = client.run(timed(), {})
    clock.t += 60
    with pytest.raises(WaitTimedOutError) as refused:
        client.resume(waiting.run_id, {"decision": "yes"})
    assert refused.value.code == "wait_timed_out" and isinstance(refused.value, ConflictingRequestError)
    message = str(refused.value)
    assert "States.Timeout" in message and "'approve'" in message and "60 s" in message and "not applied" in message
    assert_timed_out(client, waiting.run_id)
    with pytest.raises(WaitTimedOutError, match=r"failed with States\.Timeout"):  # asked again: the same refusal
        client.resume(waiting.run_id, {"decision": "yes"})


def test_expire_overdue_ends_only_waits_past_their_deadline(client: Stepwise, clock: FakeClock) -> None:
    short = client.run(timed(10), {})
    long = client.run(timed(), {})
    forever = client.run(untimed(), {})
    clock.t += 30
    assert [r.run_id for r in client.overdue_waits()] == [short.run_id]
    assert client.next_deadline() == clock.t + 30  # the long wait's, still ahead: what serve's scheduler wakes at
    [ended] = client.expire_overdue()
    assert ended.run_id == short.run_id and ended.status == "failed"
    assert ended.error is not None and ended.error["message"] == MESSAGE.replace("60", "10")
    for other in (long, forever):
        record = client.get_run(other.run_id)
        assert record is not None and record.status == "waiting"
    clock.t += 10_000
    assert {r.run_id for r in client.expire_overdue()} == {long.run_id}  # a wait without timeout_seconds never expires
    assert client.expire_wait(long.run_id).status == "failed"  # again: nothing to do


def test_an_answer_that_lands_first_wins_over_the_expiry(client: Stepwise, clock: FakeClock) -> None:
    waiting = client.run(timed(), {})
    assert client.resume(waiting.run_id, {"decision": "no"}).status == "succeeded"
    clock.t += 61
    assert client.expire_wait(waiting.run_id).status == "succeeded"  # the answered run is left alone


def test_the_deadline_outlives_the_process_and_a_redrive_waits_again(tmp_path: Path) -> None:
    first = Stepwise.embedded(tmp_path, clock=FakeClock())
    waiting = first.run(timed(), {})
    later = Stepwise.embedded(tmp_path, clock=FakeClock(t=FakeClock().t + 61))  # another process, a minute on
    assert [r.run_id for r in later.overdue_waits()] == [waiting.run_id]
    later.expire_overdue()
    assert_timed_out(later, waiting.run_id)
    again = later.redrive(waiting.run_id)  # a new execution: a new token and a timer of its own, as on Step Functions
    assert again.status == "waiting" and again.waiting is not None
    assert again.waiting["deadline"] == later.services.clock.now() + 60
    assert later.resume(waiting.run_id, {"decision": "yes"}).status == "succeeded"


PARALLEL_YAML = """
name: timed-branch
graph:
  nodes:
    split: {kind: function, fn: "stepwise.examples.nodes:draft"}
    approve: {kind: human, prompt: "ok?", config: {timeout_seconds: 60}}
    other: {kind: function, fn: "stepwise.examples.nodes:publish"}
    join: {kind: function, fn: "stepwise.examples.nodes:publish"}
  edges:
    - {from: split, to: [approve, other]}
    - {from: approve, to: join}
    - {from: other, to: join}
  entry: split
"""


def test_a_wait_in_a_parallel_branch_times_out_through_its_block(client: Stepwise, clock: FakeClock) -> None:
    waiting = client.run(load_text(PARALLEL_YAML), {})
    assert waiting.status == "waiting" and waiting.waiting is not None and waiting.waiting["node"] == "approve"
    clock.t += 60
    ended = client.expire_wait(waiting.run_id)
    assert ended.status == "failed" and ended.error is not None
    assert ended.error["error"] == "States.Timeout" and ended.error["node"] == "approve" and ended.error["message"] == MESSAGE


# -- the API and serve's scheduler --------------------------------------------------------------------
def test_the_api_shows_the_deadline_and_refuses_a_late_answer_with_409(clock: FakeClock) -> None:
    h = make(client=Stepwise.in_memory(clock=clock))
    assert h("POST", "/agents", {"yaml": TIMED_YAML}).status == 201
    run = h("POST", "/agents/timed-approval/execute", {"input": {}}).body
    assert run["status"] == "waiting" and run["waiting"]["deadline"] == clock.now() + 60
    assert h("GET", f"/runs/{run['run_id']}").body["waiting"]["deadline"] == clock.now() + 60
    clock.t += 61
    late = h("POST", f"/runs/{run['run_id']}/resume", {"input": {"decision": "yes"}})
    assert late.status == 409 and error_code(late) == "wait_timed_out", late.body
    assert "States.Timeout" in late.body["error"]["message"]
    after = h("GET", f"/runs/{run['run_id']}").body
    assert after["status"] == "failed" and after["error"]["error"] == "States.Timeout" and after["error"]["node"] == "approve"
    again = h("POST", f"/runs/{run['run_id']}/resume", {"input": {"decision": "yes"}})
    assert again.status == 409 and error_code(again) == "wait_timed_out"  # not run_not_waiting: the reason stays
    kinds = [k for k, _, _ in h.sink.events]
    assert kinds == ["agent.registered", "run.started", "run.waiting", "run.failed"]  # failed once, never resumed


def test_the_serve_scheduler_fails_an_overdue_wait_at_its_deadline(clock: FakeClock) -> None:
    h = make(client=Stepwise.in_memory(clock=clock))
    assert h("POST", "/agents", {"yaml": TIMED_YAML}).status == 201
    run_id = h("POST", "/agents/timed-approval/execute", {"input": {}}).body["run_id"]
    scheduler = TriggerScheduler(h.api, now=lambda: datetime.fromtimestamp(clock.now(), UTC))
    clock.t += 59
    assert scheduler.tick() == [] and scheduler.expire_waits() == []
    assert scheduler.next_wake() == 1.0  # it wakes at the deadline, not a poll (30 s) or a minute boundary (41 s) later
    clock.t += 1
    scheduler.tick()

    def ended() -> Any:
        found = h.client.get_run(run_id)
        return found if found is not None and found.status == "failed" else None

    run = wait_for(ended, f"run {run_id} to fail at its deadline")  # expired on the API's background threads
    assert run.error["error"] == "States.Timeout" and run.error["message"] == MESSAGE
    assert ("run.failed", "acme") in [(kind, tenant) for kind, tenant, _ in h.sink.events]


def test_a_wait_begun_while_the_scheduler_sleeps_wakes_it_for_its_deadline() -> None:
    """The loop sleeps up to ``poll`` (30 s) when nothing is due; a run that begins to wait wakes it, so a 1 s
    timeout ends about a second later, not up to 30 s late (real time: the loop's own sleeping is under test)."""
    h = make(client=Stepwise.in_memory())
    assert h("POST", "/agents", {"yaml": TIMED_YAML.replace("timeout_seconds: 60", "timeout_seconds: 1")}).status == 201
    scheduler = TriggerScheduler(h.api, poll=30.0)
    scheduler.start()
    try:
        assert scheduler.next_wake() > 1.5  # asleep for a poll or a minute boundary: nothing is waiting yet
        run_id = h("POST", "/agents/timed-approval/execute", {"input": {}}).body["run_id"]

        def failed() -> Any:
            found = h.client.get_run(run_id)
            return found if found is not None and found.status == "failed" else None

        run = wait_for(failed, f"run {run_id} to fail a second after it began to wait", timeout=10)
        assert run.error["error"] == "States.Timeout" and run.error["node"] == "approve"
    finally:
        scheduler.stop()
