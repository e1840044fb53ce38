"""Run status transitions are compare-and-set on every adapter; races have one winner; a thread runs one
run at a time; a run whose process died is detectable and continuable; a stale answer is refused."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import statemachines.examples.nodes as example_nodes
from tests.aws.test_state_contract import Stores, aws_env, run, stores  # noqa: F401 - the adapter fixtures
from tests.support.moto_sfn import wait_for
from tests.unit.test_api_routes import EXAMPLES, error_code, make

from stepwise.client import ConflictingRequestError, StaleAnswerError, Stepwise, ThreadBusyError
from stepwise.errors import StepwiseError
from stepwise.graph.loader import load_file, load_text
from stepwise.state.ports import RunTransitionError, is_stale

HUMAN = EXAMPLES / "human_approval.yaml"


def test_status_changes_are_compare_and_set(stores: Stores) -> None:  # noqa: F811
    stores.runs.put(run("r1", status="waiting", interrupt_id="a" * 16))
    with pytest.raises(RunTransitionError, match="is waiting"):
        stores.runs.update("r1", expect=("running",), status="succeeded")
    with pytest.raises(RunTransitionError):
        stores.runs.update("r1", expect=("waiting",), expect_interrupt="b" * 16, status="running")
    done = stores.runs.update("r1", expect=("waiting",), expect_interrupt="a" * 16, status="cancelled")
    assert done.status == "cancelled"
    with pytest.raises(RunTransitionError, match="is cancelled"):
        stores.runs.update("r1", expect=("running", "waiting"), status="cancelled")
    got = stores.runs.get("r1")
    assert got is not None and got.status == "cancelled"


def test_concurrent_transitions_have_exactly_one_winner(stores: Stores) -> None:  # noqa: F811
    if stores.kind == "dynamodb":
        pytest.skip("moto's in-process server is not thread-safe across clients; the condition itself is tested above")
    winners: list[str] = []
    for trial in range(10):
        rid = f"r{trial}"
        stores.runs.put(run(rid, status="waiting"))
        barrier = threading.Barrier(2)

        def attempt(target: str, rid: str = rid, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                stores.runs.update(rid, expect=("waiting",), status=target)
                winners.append(target)
            except RunTransitionError:
                pass

        threads = [threading.Thread(target=attempt, args=(t,)) for t in ("running", "cancelled")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        record = stores.runs.get(rid)
        assert record is not None and record.status == winners[-1]
    assert len(winners) == 10


def _waiting(client: Stepwise) -> Any:
    result = client.run(load_file(HUMAN), {"amount": 10})
    assert result.status == "waiting"
    return result


@pytest.mark.parametrize("trials", [20])
def test_cancel_and_resume_races_stay_consistent(tmp_path: Path, trials: int) -> None:
    h = make(client=Stepwise.embedded(tmp_path / "home"))
    h.register("human_approval")
    consistent = 0
    for _ in range(trials):
        started = h("POST", "/agents/human-approval/execute", {"input": {"amount": 5}}).body
        rid = started["run_id"]
        barrier = threading.Barrier(2)
        replies: dict[str, Any] = {}

        def call(kind: str, rid: str = rid, barrier: threading.Barrier = barrier, replies: dict[str, Any] = replies) -> None:
            barrier.wait()
            path = f"/runs/{rid}/cancel" if kind == "cancel" else f"/runs/{rid}/resume"
            replies[kind] = h("POST", path, {} if kind == "cancel" else {"input": {"decision": "yes"}})

        threads = [threading.Thread(target=call, args=(k,)) for k in ("cancel", "resume")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = h("GET", f"/runs/{rid}").body
        cancel_won = replies["cancel"].status == 200
        resume_won = replies["resume"].status == 200
        assert cancel_won or resume_won
        assert all(r.status in (200, 409) for r in replies.values()), {k: (r.status, r.body) for k, r in replies.items()}
        if cancel_won and not resume_won:
            assert final["status"] == "cancelled" and not final["state"].get("published")
        if resume_won and not cancel_won:
            history = [(e.seq, e.type, e.node, e.data.get("update")) for e in h.client.history(started["thread_id"])]
            if final["state"].get("published") is not True:
                Path("/tmp/racefail.txt").write_text(repr((replies, history)))
            assert final["status"] == "succeeded" and final["state"]["published"] is True
        if cancel_won and resume_won:  # the cancel landed while the resumed run was running: it stays cancelled
            assert final["status"] == "cancelled"
        consistent += 1
    assert consistent == trials


def test_two_answers_to_one_question_record_one(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    for _ in range(5):
        waiting = _waiting(client)
        question = waiting.waiting["interrupt_id"]
        outcomes: list[str] = []
        barrier = threading.Barrier(2)

        def answer(
            decision: str,
            rid: str = waiting.run_id,
            barrier: threading.Barrier = barrier,
            outcomes: list[str] = outcomes,
            question: str = question,
        ) -> None:
            barrier.wait()
            try:
                client.resume(rid, {"decision": decision}, interrupt_id=question)
                outcomes.append(decision)
            except ConflictingRequestError:
                outcomes.append("409")

        threads = [threading.Thread(target=answer, args=(d,)) for d in ("revise", "yes")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes).count("409") == 1, outcomes
        answers = [e for e in client.history(waiting.thread_id) if e.node == "approve" and e.type == "node_update"]
        assert len(answers) == 1


def test_a_stale_answer_is_refused(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    first = _waiting(client)
    old_id = first.waiting["interrupt_id"]  # type: ignore[index]
    again = client.resume(first.run_id, {"decision": "revise"}, interrupt_id=old_id)  # back to draft, then waits again
    assert again.status == "waiting" and again.waiting["interrupt_id"] != old_id  # type: ignore[index]
    with pytest.raises(StaleAnswerError, match="not interrupt"):
        client.resume(first.run_id, {"decision": "yes"}, interrupt_id=old_id)
    done = client.resume(first.run_id, {"decision": "yes"}, interrupt_id=again.waiting["interrupt_id"])  # type: ignore[index]
    assert done.status == "succeeded"


def test_the_api_refuses_a_stale_answer_with_409(tmp_path: Path) -> None:
    h = make(client=Stepwise.embedded(tmp_path / "home"))
    h.register("human_approval")
    run1 = h("POST", "/agents/human-approval/execute", {}).body
    first = run1["waiting"]["interrupt_id"]
    revised = h("POST", f"/runs/{run1['run_id']}/resume", {"input": {"decision": "revise"}, "interrupt_id": first}).body
    assert revised["status"] == "waiting"
    stale = h("POST", f"/runs/{run1['run_id']}/resume", {"input": {"decision": "yes"}, "interrupt_id": first})
    assert stale.status == 409 and error_code(stale) == "stale_interrupt"


def _lose_the_waiting_write(client: Stepwise, run_id: str) -> None:
    """What a kill between the interrupt event and the status write leaves: running, lease run out."""
    client.services.runs.update(run_id, status="running", waiting=None, interrupt_id=None, owner="elsewhere:1:x", lease_until=1.0)


def test_a_run_killed_before_it_became_waiting_is_stale_and_resume_re_waits_it(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    waiting = _waiting(client)
    interrupt = waiting.waiting["interrupt_id"]  # type: ignore[index]
    _lose_the_waiting_write(client, waiting.run_id)
    assert [r.run_id for r in client.stale_runs()] == [waiting.run_id]
    again = client.resume(waiting.run_id)  # no answer: recover only
    assert again.status == "waiting" and again.waiting["interrupt_id"] == interrupt  # type: ignore[index]
    assert client.stale_runs() == []
    done = client.resume(waiting.run_id, {"decision": "yes"}, interrupt_id=interrupt)
    assert done.status == "succeeded" and done.state["published"] is True


def test_an_answer_recorded_before_a_kill_is_handed_over_on_recovery(tmp_path: Path) -> None:
    from stepwise.runtime.step import resume_step

    client = Stepwise.embedded(tmp_path / "home")
    waiting = _waiting(client)
    record = client.services.runs.get(waiting.run_id)
    assert record is not None and record.waiting is not None
    resume_step(client.services, record.waiting, {"decision": "yes"})  # the answer's event is written...
    _lose_the_waiting_write(client, waiting.run_id)  # ...and the process dies before it continues
    done = client.resume(waiting.run_id)
    assert done.status == "succeeded" and done.state["published"] is True
    answers = [e for e in client.history(waiting.thread_id) if e.node == "approve" and e.type == "node_update"]
    assert len(answers) == 1


def test_the_api_resumes_a_dead_run_and_refuses_a_live_one(tmp_path: Path) -> None:
    h = make(client=Stepwise.embedded(tmp_path / "home"))
    h.register("human_approval")
    started = h("POST", "/agents/human-approval/execute", {}).body
    rid = started["run_id"]
    h.client.SETTLE_SECONDS = 0.05  # the run's last event is its interrupt: do not wait long for a waiting write
    h.client.services.runs.update(
        rid, status="running", waiting=None, interrupt_id=None, owner="elsewhere:1:x", lease_until=time.time() + 60
    )
    live = h("POST", f"/runs/{rid}/resume", {"input": {"decision": "yes"}})
    assert live.status == 409 and error_code(live) == "run_running"
    h.client.services.runs.update(rid, lease_until=1.0)
    done = h("POST", f"/runs/{rid}/resume", {"input": {"decision": "yes"}})
    assert done.status == 200 and done.body["status"] == "succeeded", done.body


def test_an_answer_sent_between_the_interrupt_event_and_the_waiting_write_is_taken(tmp_path: Path) -> None:
    """The interrupt is logged before the run's record says ``waiting``: a client that answers as soon as
    the stream shows the interrupt must not get 409 ``run_running``. The waiting write is held until the
    answer has read the run as ``running``, then let through."""
    client = Stepwise.embedded(tmp_path / "home")
    runs, answered_early = client.services.runs, threading.Event()
    write, read_status = runs.update, runs.status
    main = threading.current_thread()

    def held(run_id: str, **fields: Any) -> Any:
        if fields.get("status") == "waiting":
            assert answered_early.wait(30), "the answer never read the run while it was still running"
        return write(run_id, **fields)

    def status(run_id: str) -> Any:
        found = read_status(run_id)
        if threading.current_thread() is main and found == "running":
            answered_early.set()
        return found

    runs.update, runs.status = held, status  # type: ignore[method-assign]
    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.append(client.run(load_file(HUMAN), {"amount": 3})))
    runner.start()
    thread_id = wait_for(lambda: next(iter(client.services.events.threads()), None), "the run's thread")
    wait_for(lambda: any(e.type == "interrupt" for e in client.history(thread_id)), "the interrupt event")
    run_id = client.history(thread_id)[0].run_id
    assert client.services.runs.get(run_id).status == "running"  # type: ignore[union-attr]
    done = client.resume(run_id, {"decision": "yes"})
    runner.join(30)
    assert answered_early.is_set() and done.status == "succeeded" and done.state["published"] is True
    assert results and results[0].status == "waiting"


def test_an_answer_that_saw_an_earlier_question_is_not_given_to_the_next_one(tmp_path: Path) -> None:
    """An answer arriving while another answer ("revise") is being applied reads ``running`` with the old
    interrupt last in the log; when the run then waits at a new question, that answer is refused (409),
    never applied to a question it did not see. The winner is held just after its compare-and-set until
    the second answer has read the run as ``running``."""
    client = Stepwise.embedded(tmp_path / "home")
    first = _waiting(client)
    runs, second_read = client.services.runs, threading.Event()
    write, read_status = runs.update, runs.status
    main = threading.current_thread()

    def held(run_id: str, **fields: Any) -> Any:
        out = write(run_id, **fields)
        if fields.get("status") == "running" and threading.current_thread() is not main:
            assert second_read.wait(30), "the second answer never read the run"
        return out

    def status(run_id: str) -> Any:
        found = read_status(run_id)
        if threading.current_thread() is main and found == "running":
            second_read.set()
        return found

    runs.update, runs.status = held, status  # type: ignore[method-assign]
    winner: list[Any] = []
    revising = threading.Thread(target=lambda: winner.append(client.resume(first.run_id, {"decision": "revise"})))
    revising.start()
    wait_for(lambda: read_status(first.run_id) == "running", "the winning answer's compare-and-set")
    with pytest.raises(ConflictingRequestError, match="went on past the question"):
        client.resume(first.run_id, {"decision": "yes"})
    revising.join(30)
    assert winner and winner[0].status == "waiting" and winner[0].waiting["interrupt_id"] != first.waiting["interrupt_id"]
    answers = [e.data for e in client.history(first.thread_id) if e.node == "approve" and e.type == "node_update"]
    assert len(answers) == 1  # only the winner's


def test_a_live_run_is_not_stale_and_a_dead_one_is() -> None:
    assert not is_stale(run("r", status="running", lease_until=time.time() + 30))
    assert is_stale(run("r", status="running", lease_until=time.time() - 1))
    assert not is_stale(run("r", status="waiting", lease_until=1.0))


SLOW = """
name: slow
graph:
  nodes:
    a: {fn: "statemachines.examples.nodes:gate"}
  entry: a
"""


def test_a_second_run_on_a_busy_thread_gets_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()

    def gate(state: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        release.wait(60)
        return {"done": True}

    gate.__module__ = "statemachines.examples.nodes"
    monkeypatch.setattr(example_nodes, "gate", gate, raising=False)
    client = Stepwise.embedded(tmp_path / "home")
    spec = load_text(SLOW)
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(client.run(spec, {}, thread_id="T")))
    first.start()
    assert entered.wait(60)
    with pytest.raises(ThreadBusyError, match="thread 'T' is busy"):
        client.run(spec, {}, thread_id="T")
    release.set()
    first.join()
    assert results[0].status == "succeeded"
    assert client.run(spec, {}, thread_id="T").status == "succeeded"  # free again


def test_the_api_answers_thread_busy_with_409(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    h = make(client=client)
    h.register("sequential")
    reply = h("POST", "/agents/sequential/execute", {}).body
    client.services.runs.update(reply["run_id"], status="running", owner="elsewhere:1:x", lease_until=time.time() + 60)
    busy = h("POST", "/agents/sequential/execute", {"thread_id": reply["thread_id"]})
    assert busy.status == 409 and error_code(busy) == "thread_busy"


def test_a_run_record_counts_its_steps_when_it_waits_fails_or_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``steps`` (the runs list, the API's run view) counts the nodes that completed, whatever the run's end:
    a run waiting at its human node and a failed run showed 0 though nodes had run."""
    client = Stepwise.embedded(tmp_path / "home")
    waiting = client.run(load_file(HUMAN), {"amount": 3})
    assert waiting.status == "waiting"
    record = client.get_run(waiting.run_id)
    assert record is not None and record.steps == 1  # draft ran; approve waits
    done = client.resume(waiting.run_id, {"decision": "yes"})
    record = client.get_run(done.run_id)
    assert done.status == "succeeded" and record is not None and record.steps == 3
    (tmp_path / "steps_boom.py").write_text("def ok(state):\n    return {'x': 1}\n\n\ndef boom(state):\n    raise ValueError('bad')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    failing = load_text(
        "name: boom\nstate: {x: replace}\ngraph:\n  nodes:\n"
        "    a: {kind: function, fn: 'steps_boom:ok', writes: [x]}\n"
        "    b: {kind: function, fn: 'steps_boom:boom', writes: [x]}\n"
        "    c: {kind: function, fn: 'steps_boom:ok', writes: [x]}\n"
        "  edges: [{from: a, to: b}, {from: b, to: c}]\n  entry: a\n"
    )
    failed = client.run(failing, {})
    record = client.get_run(failed.run_id)
    assert failed.status == "failed" and record is not None and record.steps == 1  # a ran; b failed; c never ran


def test_rolling_back_a_run_twice_does_not_discard_what_later_runs_wrote(tmp_path: Path) -> None:
    """A second rollback of the same run appended a second marker restating the thread as it was before that
    run, which silently dropped the writes of every run since."""
    client = Stepwise.embedded(tmp_path / "home")
    seq = load_file(EXAMPLES / "sequential.yaml")
    first = client.run(seq, {})
    second = client.run(seq, {}, thread_id=first.thread_id)
    rolled = client.rollback(second.run_id)
    assert (rolled.error or {}).get("error") == "Stepwise.RolledBack"
    kept = client.state(first.thread_id)[1]
    third = client.run(seq, {}, thread_id=first.thread_id)
    after_third = client.state(first.thread_id)[1]
    assert after_third != kept  # the third run wrote
    head = client.head(first.thread_id)
    again = client.rollback(second.run_id)
    assert again.error == rolled.error and client.head(first.thread_id) == head  # nothing appended
    assert client.state(first.thread_id)[1] == after_third == third.state


def test_clear_words_for_a_second_cancel_and_for_seq_zero(tmp_path: Path) -> None:
    """A second cancel said "another request changed it first" (no other request had); ``state(at=0)`` and
    ``fork(thread, 0)`` said the thread did not exist."""
    client = Stepwise.embedded(tmp_path / "home")
    waiting = client.run(load_file(HUMAN), {"amount": 3})
    client.cancel(waiting.run_id)
    with pytest.raises(RunTransitionError, match="is cancelled, not running or waiting or queued: it has already ended"):
        client.cancel(waiting.run_id)
    head = client.head(waiting.thread_id)
    for call in (lambda: client.state(waiting.thread_id, at=0), lambda: client.fork(waiting.thread_id, 0)):
        with pytest.raises(StepwiseError, match=rf"has seqs 1\.\.{head}; pick --at within that range"):
            call()


def test_an_empty_thread_id_is_refused_not_replaced(tmp_path: Path) -> None:
    """``thread_id=""`` ran on a new thread under a made-up id, so the caller's next run on "" found nothing."""
    client = Stepwise.embedded(tmp_path / "home")
    for empty in ("", "  "):
        with pytest.raises(StepwiseError, match="thread_id is empty"):
            client.run(load_file(HUMAN), {"amount": 3}, thread_id=empty)
    assert client.runs() == []
