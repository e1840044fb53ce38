"""Recovery reads EVERY run in flight, not the newest 1,000 runs: ``RunStore.in_flight`` on each adapter (an index
of active runs: SQLite's partial index ``runs_in_flight``, DynamoDB's sparse GSI ``active-created_at``), and a
dead run older than 1,005 finished ones is still found and recovered (before, ``stale_runs`` read
``runs.list(limit=1000)``, newest first, and never saw it). The DynamoDB end to end (the recover Lambda) is in
tests/integration/test_recover_aws.py."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from tests.aws.test_state_contract import Stores, aws_env, run, stores  # noqa: F401 - the adapter fixtures
from tests.unit.test_hardening_runs import _lose_the_waiting_write, _waiting

from stepwise.client import Stepwise
from stepwise.state.sqlite import SqliteDatabase

NEWER = 1_005


def test_in_flight_is_every_active_run_oldest_first_and_follows_status_changes(stores: Stores) -> None:  # noqa: F811
    statuses = ["succeeded", "running", "failed", "waiting", "queued", "cancelled", "running"]
    for i, status in enumerate(statuses):
        stores.runs.put(run(f"r{i}", thread=f"t{i}", created=1_700_000_000.0 + i, status=status))
    stores.runs.put(run("r1b", thread="t9", created=1_700_000_001.0, status="waiting"))  # a created_at tie: run_id decides
    assert [r.run_id for r in stores.runs.in_flight()] == ["r1", "r1b", "r3", "r6"]
    assert [r.run_id for r in stores.runs.in_flight(("queued",))] == ["r4"]
    assert [r.run_id for r in stores.runs.in_flight(("queued", "running"))] == ["r1", "r4", "r6"]
    assert stores.runs.queued_threads() == ["t4"]

    stores.runs.update("r1", expect=("running",), status="waiting")  # still in flight
    stores.runs.update("r3", expect=("waiting",), status="succeeded")  # out
    stores.runs.update("r0", status="running")  # back in (a redrive)
    stores.runs.update("r4", expect=("queued",), status="cancelled")
    assert [(r.run_id, r.status) for r in stores.runs.in_flight()] == [
        ("r0", "running"),
        ("r1", "waiting"),
        ("r1b", "waiting"),
        ("r6", "running"),
    ]
    assert stores.runs.queued_threads() == []
    with pytest.raises(ValueError, match="running, waiting, queued"):
        list(stores.runs.in_flight(("succeeded",)))


def test_in_flight_pages_through_more_runs_than_a_page(tmp_path: Path) -> None:
    """SQLite reads the index 500 runs at a time, each page after the last one's (created_at, run_id)."""
    client = Stepwise.embedded(tmp_path / "home")
    runs = client.services.runs
    for i in range(1_203):
        runs.put(run(f"r{i:05d}", thread=f"t{i}", created=1_700_000_000.0 + i // 3, status=("running", "waiting", "succeeded")[i % 3]))
    active = [r.run_id for r in runs.in_flight()]
    assert active == [f"r{i:05d}" for i in range(1_203) if i % 3 != 2]


def test_a_dead_run_older_than_1005_finished_runs_is_recovered_on_sqlite(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    dead = _waiting(client)
    _lose_the_waiting_write(client, dead.run_id)  # a kill between its interrupt event and its status write
    record = client.get_run(dead.run_id)
    assert record is not None
    now = time.time()
    for i in range(NEWER):  # newer runs, all finished: the old list(limit=1000) saw only these
        client.services.runs.put(run(f"done-{i:05d}", thread=f"t-done-{i}", created=now + 1 + i, status="succeeded"))
    assert all(r.created_at > record.created_at for r in client.services.runs.list(limit=1000))

    assert [r.run_id for r in client.stale_runs()] == [dead.run_id]
    recovered = client.recover_stale()
    assert [(r.run_id, r.status) for r in recovered] == [(dead.run_id, "waiting")]  # re-waits on its interrupt
    assert client.stale_runs() == []
    assert [r.run_id for r in client.services.runs.in_flight()] == [dead.run_id]


def test_stale_runs_limit_takes_the_oldest(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    for i in range(3):
        client.services.runs.put(run(f"dead-{i}", thread=f"t{i}", created=1_700_000_000.0 + i, status="running", lease_until=1.0))
    assert [r.run_id for r in client.stale_runs(limit=2)] == ["dead-0", "dead-1"]
    assert [r.run_id for r in client.stale_runs()] == ["dead-0", "dead-1", "dead-2"]


def test_an_existing_database_file_gets_the_in_flight_index_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "stepwise.db"
    SqliteDatabase(path)
    with sqlite3.connect(path) as conn:  # a file from before the index
        conn.execute("DROP INDEX runs_in_flight")
    SqliteDatabase(path)
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        plan = " ".join(
            str(r[3])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT body FROM runs WHERE json_extract(body, '$.status') IN ('running', 'waiting', 'queued') "
                "ORDER BY created_at, run_id"
            )
        )
    assert "runs_in_flight" in names
    assert "runs_in_flight" in plan
