"""Double texting ``enqueue``: the drain's rivals check ("nothing in flight on the thread") and the claim of
the next queued run are one atomic step on every store (SQLite: one transaction; DynamoDB on moto: one
``TransactWriteItems`` with ``run_started`` at exactly the head it checked), so a ``reject``/``interrupt`` run
begun in between never runs beside the drained one. And the queued lookups read indexes, not the newest
1,000 runs.

The gap is held open deterministically: the drainer's read of the thread's runs is wrapped so that, right
after it, a rival run begins in another thread, and the drainer goes on only once that rival has finished
or is blocked on the store's write lock (SQLite's claim holds it): no sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pytest
from tests.aws import test_state_contract as contract
from tests.aws.test_state_contract import Stores

from stepwise.client import Stepwise
from stepwise.errors import ThreadBusyError
from stepwise.graph.spec import GraphSpec
from stepwise.state.events import RUN_STARTED, Event
from stepwise.state.ports import RunRecord, RunStore, process_owner
from stepwise.state.sqlite import SqliteDatabase

aws_env, stores = contract.aws_env, contract.stores  # the state contract's fixtures: memory, SQLite, moto DynamoDB
THREAD = "thread-q"


def lease() -> dict[str, Any]:
    return {"owner": process_owner(), "lease_until": time.time() + 60}


def cursor(run: RunRecord, seq: int) -> dict[str, Any]:
    return {"thread_id": run.thread_id, "run_id": run.run_id, "seq": seq, "base": seq}


def queue(runs: RunStore, thread: str, n: int, *, at: float = 1000.0, tenant: str = "acme") -> list[RunRecord]:
    records = [
        RunRecord(run_id=f"q-{thread}-{i}", thread_id=thread, graph_ref="g@1", status="queued", created_at=at + i, tenant=tenant)
        for i in range(n)
    ]
    for r in records:
        runs.put(r)
    return records


def begin_rival(s: Stores, thread: str = THREAD) -> RunRecord | ThreadBusyError:
    """What ``reject``/``interrupt`` do once they decided the thread is free: ``RunStore.begin``."""
    record = RunRecord(run_id="rival", thread_id=thread, graph_ref="g@1", created_at=time.time(), **lease())
    started = Event(type=RUN_STARTED, run_id="rival", data={"update": {}, "graph": "g@1"})
    try:
        return s.runs.begin(record, s.events, started, lambda seq: {"seq": seq})
    except ThreadBusyError as exc:
        return exc


class _WatchedLock:
    """The SQLite database's write lock, telling the test when the rival has to wait for it."""

    def __init__(self, lock: Any, rival_waits: threading.Event) -> None:
        self.lock, self.rival_waits = lock, rival_waits

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            if threading.current_thread().name == "rival":
                self.rival_waits.set()
            self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def hold_the_gap(s: Stores, monkeypatch: pytest.MonkeyPatch, rival: Callable[[], object]) -> dict[str, Any]:
    """After the drainer's first read of the thread's runs (``thread_runs``, or ``list(thread_id=…)`` as the
    old drain read them), begin ``rival`` in another thread and go on once it ended or waits for the lock."""
    settled = threading.Event()
    out: dict[str, Any] = {}
    db: SqliteDatabase | None = getattr(s.runs, "db", None) if s.kind == "sqlite" else None
    if db is not None:
        monkeypatch.setattr(db, "write_lock", _WatchedLock(db.write_lock, settled))

    def run_rival() -> None:
        out["rival"] = rival()
        settled.set()

    def after_first_read() -> None:
        if "thread" in out or threading.current_thread().name == "rival":
            return
        out["thread"] = threading.Thread(target=run_rival, name="rival")
        out["thread"].start()
        assert settled.wait(60), "the rival neither finished nor waited for the write lock"

    thread_runs, listing = s.runs.thread_runs, s.runs.list

    def watched_thread_runs(thread_id: str, statuses: Collection[str]) -> list[RunRecord]:
        found = thread_runs(thread_id, statuses)
        after_first_read()
        return found

    def watched_list(*, thread_id: str | None = None, limit: int = 50) -> list[RunRecord]:
        found = listing(thread_id=thread_id, limit=limit)
        if thread_id is not None:
            after_first_read()
        return found

    monkeypatch.setattr(s.runs, "thread_runs", watched_thread_runs)
    monkeypatch.setattr(s.runs, "list", watched_list)
    return out


def in_flight(runs: RunStore, thread: str) -> list[str]:
    return sorted(r.run_id for r in runs.list(thread_id=thread, limit=1000) if r.status in ("running", "waiting"))


def test_a_rival_begun_inside_the_claim_waits_and_then_finds_the_thread_busy(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    (first, second) = queue(stores.runs, THREAD, 2)
    out = hold_the_gap(stores, monkeypatch, lambda: begin_rival(stores))

    claimed = stores.runs.claim_queued(stores.events, THREAD, cursor, **lease())
    out["thread"].join(60)

    rival = out["rival"]
    if claimed is None:  # DynamoDB / memory: the rival's run_started moved the head first; the claim looked again
        assert isinstance(rival, RunRecord) and rival.status == "running"
        assert in_flight(stores.runs, THREAD) == ["rival"]
        assert stores.runs.get(first.run_id).status == "queued"  # type: ignore[union-attr]
    else:  # SQLite: the claim's transaction held the lock; the rival, let in after it, found the thread busy
        assert claimed.run_id == first.run_id and claimed.status == "running"
        assert isinstance(rival, ThreadBusyError)
        assert in_flight(stores.runs, THREAD) == [first.run_id]
        assert claimed.start_cursor["seq"] == stores.events.head(THREAD)
    assert stores.runs.get(second.run_id).status == "queued"  # type: ignore[union-attr]
    starts = [e.run_id for e in stores.events.read(THREAD) if e.type == RUN_STARTED]
    assert len(starts) == 1  # exactly one of the two began


def test_two_drainers_in_the_same_gap_start_the_queued_run_once(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rival is a second drainer (serve's run end and its scheduler; the step Lambda and the sweeper)."""
    (first, second) = queue(stores.runs, THREAD, 2)
    out = hold_the_gap(stores, monkeypatch, lambda: stores.runs.claim_queued(stores.events, THREAD, cursor, **lease()))

    mine = stores.runs.claim_queued(stores.events, THREAD, cursor, **lease())
    out["thread"].join(60)

    claimed = [r for r in (mine, out["rival"]) if r is not None]
    assert [r.run_id for r in claimed] == [first.run_id]
    assert in_flight(stores.runs, THREAD) == [first.run_id]
    assert stores.runs.get(second.run_id).status == "queued"  # type: ignore[union-attr]
    assert [e.run_id for e in stores.events.read(THREAD) if e.type == RUN_STARTED] == [first.run_id]


def test_a_claim_after_a_rival_began_claims_nothing(stores: Stores) -> None:
    queue(stores.runs, THREAD, 1)
    assert isinstance(begin_rival(stores), RunRecord)
    assert stores.runs.claim_queued(stores.events, THREAD, cursor, **lease()) is None
    assert in_flight(stores.runs, THREAD) == ["rival"]


def test_a_waiting_run_holds_the_queue_and_two_claims_take_one_run_each_in_order(stores: Stores) -> None:
    waiting = RunRecord(run_id="w", thread_id=THREAD, graph_ref="g@1", status="waiting", created_at=1.0)
    stores.runs.put(waiting)
    (first, second) = queue(stores.runs, THREAD, 2)
    assert stores.runs.claim_queued(stores.events, THREAD, cursor, **lease()) is None
    stores.runs.update("w", status="succeeded")
    claimed = stores.runs.claim_queued(stores.events, THREAD, cursor, **lease())
    assert claimed is not None and claimed.run_id == first.run_id
    assert stores.runs.claim_queued(stores.events, THREAD, cursor, **lease()) is None  # first is running
    stores.runs.update(first.run_id, status="succeeded")
    again = stores.runs.claim_queued(stores.events, THREAD, cursor, **lease())
    assert again is not None and again.run_id == second.run_id
    assert [e.run_id for e in stores.events.read(THREAD) if e.type == RUN_STARTED] == [first.run_id, second.run_id]


def test_queued_runs_older_than_the_newest_thousand_are_found(stores: Stores) -> None:
    """A queued run (and, on another thread, a waiting one holding its queue) older than 1,000 newer runs."""
    (old,) = queue(stores.runs, "t-old", 1, at=10.0)
    stores.runs.put(RunRecord(run_id="held", thread_id="t-held", graph_ref="g@1", status="waiting", created_at=5.0))
    queue(stores.runs, "t-held", 1, at=11.0)
    for i in range(1001):
        for thread in ("t-old", "t-held"):
            done = RunRecord(run_id=f"done-{thread}-{i}", thread_id=thread, graph_ref="g@1", status="succeeded", created_at=100.0 + i)
            stores.runs.put(done)

    assert stores.runs.queued_threads() == ["t-held", "t-old"]
    assert stores.runs.claim_queued(stores.events, "t-held", cursor, **lease()) is None  # the waiting run holds it
    claimed = stores.runs.claim_queued(stores.events, "t-old", cursor, **lease())
    assert claimed is not None and claimed.run_id == old.run_id
    assert stores.runs.queued_threads() == ["t-held"]


GRAPH = {"name": "queued", "state": {}, "graph": {"nodes": {"a": {"fn": "stepwise.examples.nodes:fetch"}}, "edges": [], "entry": "a"}}


def test_the_engine_drain_never_runs_a_queued_run_beside_a_run_begun_in_its_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Stepwise.drain_queue`` on SQLite: a rival begun right after the drain looked at the thread."""
    sw = Stepwise.embedded(tmp_path)
    spec = GraphSpec.model_validate(GRAPH)
    queued = sw.enqueue(spec, {}, thread_id=THREAD)
    s = Stores("sqlite", sw.services.events, sw.services.snapshots, sw.services.runs, sw.services.registry)
    out = hold_the_gap(s, monkeypatch, lambda: sw.start(spec, {}, thread_id=THREAD))

    drained = sw.drain_queue(THREAD)
    out["thread"].join(60)

    rival = out["rival"]
    assert isinstance(rival, RunRecord) and rival.status == "running"  # began before the claim: it has the thread
    assert drained == []
    assert sw.services.runs.get(queued.run_id).status == "queued"  # type: ignore[union-attr]
    assert [e.run_id for e in sw.services.events.read(THREAD) if e.type == RUN_STARTED] == [rival.run_id]


def lagging_index(runs: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB's thread index is eventually consistent: from now on it answers as it did at this moment."""
    then = runs.thread_runs(THREAD, ("running", "waiting", "queued"))

    def as_then(thread_id: str, statuses: Collection[str]) -> list[RunRecord]:
        return [r for r in then if r.status in statuses]

    monkeypatch.setattr(runs, "thread_runs", as_then)


def test_dynamodb_a_lagging_thread_index_hides_no_rival_from_the_claim(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    s = contract.dynamo_stores()
    (first,) = queue(s.runs, THREAD, 1)
    lagging_index(s.runs, monkeypatch)  # it shows the queued run only
    assert isinstance(begin_rival(s), RunRecord)
    assert s.runs.claim_queued(s.events, THREAD, cursor, **lease()) is None  # the log's latest run_started is the rival's
    assert s.runs.get(first.run_id).status == "queued"  # type: ignore[union-attr]


def test_dynamodb_a_lagging_thread_index_hides_no_claimed_run_from_a_start(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    s = contract.dynamo_stores()
    (first,) = queue(s.runs, THREAD, 1)
    lagging_index(s.runs, monkeypatch)  # it still shows the run as queued after the claim
    claimed = s.runs.claim_queued(s.events, THREAD, cursor, **lease())
    assert claimed is not None and claimed.run_id == first.run_id
    assert isinstance(begin_rival(s), ThreadBusyError)
    assert [e.run_id for e in s.events.read(THREAD) if e.type == RUN_STARTED] == [first.run_id]
