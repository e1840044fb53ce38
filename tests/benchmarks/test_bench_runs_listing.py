"""bench.runs_listing compares the old full read with the indexed query: both must pick the same runs
(the bench refuses to report otherwise). Checked here at a small size; no timings in the test suite."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench import runs_listing

from stepwise.state.ports import RunQuery
from stepwise.state.sqlite import SqliteDatabase, SqliteRunStore


def test_the_old_and_the_indexed_listing_agree(tmp_path: Path) -> None:
    store = SqliteRunStore(SqliteDatabase(tmp_path / "s.db"))
    runs_listing.fill(store, 600, 3)
    first = RunQuery(tenant="tenant-1", limit=25, cursor=None)
    queries = [
        first,
        first.model_copy(update={"status": "failed"}),
        first.model_copy(update={"status": "failed", "agent": "triage", "min_cost": 0.1}),
        first.model_copy(update={"cursor": store.query(first).next_cursor}),
    ]
    for q in queries:
        ids = runs_listing.after(store, q)
        assert ids and ids == runs_listing.before(store, q)


def test_the_bench_writes_its_command_and_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["runs_listing", "--runs", "400", "--tenants", "2", "--repeat", "1", "--out", str(out)])
    runs_listing.main()
    doc = json.loads(out.read_text())
    assert doc["command"].startswith("python -m bench.runs_listing --runs 400") and len(doc["load_average"]) == 3
    assert doc["results"][0]["case"] == "newest 100 of one tenant" and all(r["rows"] for r in doc["results"])
