"""``python -m bench.runs_listing``: one page of a tenant's runs from a store of many runs, the way
``GET /runs`` did it before (read every run record, filter in Python) side by side with the indexed
``RunQuery`` it uses now, on the embedded SQLite store.

    python -m bench.runs_listing --runs 100000 --tenants 10 --repeat 5

The store gets ``--runs`` run records spread over ``--tenants`` tenants, five statuses, four agents,
created one second apart, with LLM costs. Each case lists the newest 100 runs of one tenant: all of
them, only its failed runs, and failed runs of one agent above a cost; then the second page by cursor.
"before" is the previous route's code path (``runs.list(limit=100_000)`` then Python filters), "after"
is ``runs.query(RunQuery(...))``. Both must return the same run ids (checked). Medians of ``--repeat``.
DynamoDB (the ``tenant-created_at`` GSI) is not timed here: moto's speed says nothing about DynamoDB's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepwise.state.ports import RunQuery, RunRecord
from stepwise.state.sqlite import SqliteDatabase, SqliteRunStore

ROOT = Path(__file__).resolve().parents[1]
STATUSES = ("succeeded", "succeeded", "succeeded", "failed", "waiting", "cancelled")
AGENTS = ("triage", "draft", "review", "publish")


def fill(store: SqliteRunStore, runs: int, tenants: int) -> None:
    rng = random.Random(7)
    start = 1_700_000_000.0
    rows = []
    for i in range(runs):
        record = RunRecord(
            run_id=f"run-{i:08d}",
            thread_id=f"thread-{i:08d}",
            graph_ref=f"{rng.choice(AGENTS)}@abc123",
            status=rng.choice(STATUSES),  # type: ignore[arg-type]
            created_at=start + i,
            updated_at=start + i,
            finished_at=start + i + 3,
            tenant=f"tenant-{rng.randrange(tenants)}",
            input={"question": "x" * 80},
            start_cursor={"thread_id": f"thread-{i:08d}", "seq": 1},
            steps=5,
            cost_usd=round(rng.random() * 0.2, 6),
            tokens=rng.randrange(5000),
        )
        rows.append((record.run_id, record.thread_id, record.created_at, record.model_dump_json()))
    conn = store.db.connection()
    with conn:
        conn.executemany("INSERT INTO runs (run_id, thread_id, created_at, body) VALUES (?,?,?,?)", rows)


def before(store: SqliteRunStore, q: RunQuery) -> list[str]:
    """The previous GET /runs: every run record, then tenant and filters in Python, newest first."""
    mine = [r for r in store.list(limit=100_000) if r.tenant == q.tenant]
    chosen = [r for r in mine if q.matches(r)]
    position = q.position()
    if position is not None:
        chosen = [r for r in chosen if (r.created_at, r.run_id) < position]
    return [r.run_id for r in chosen[: q.limit]]


def after(store: SqliteRunStore, q: RunQuery) -> list[str]:
    return [r.run_id for r in store.query(q).runs]


def timed(fn: Callable[[], list[str]], repeat: int) -> tuple[float, list[str]]:
    samples, out = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "runs_listing.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="runs-listing-") as home:  # the store is scratch: removed afterwards
        store = SqliteRunStore(SqliteDatabase(Path(home) / "stepwise.db"))
        fill(store, args.runs, args.tenants)
        tenant = f"tenant-{min(3, args.tenants - 1)}"
        first = RunQuery(tenant=tenant, limit=100, cursor=None)
        cases: dict[str, RunQuery] = {
            "newest 100 of one tenant": first,
            "its failed runs": first.model_copy(update={"status": "failed"}),
            "failed, one agent, cost >= $0.10": first.model_copy(update={"status": "failed", "agent": "triage", "min_cost": 0.1}),
            "second page (cursor)": first.model_copy(update={"cursor": store.query(first).next_cursor}),
        }
        results: list[dict[str, Any]] = []
        for name, q in cases.items():
            old_ms, old_ids = timed(lambda q=q: before(store, q), args.repeat)  # type: ignore[misc]
            new_ms, new_ids = timed(lambda q=q: after(store, q), args.repeat)  # type: ignore[misc]
            if old_ids != new_ids:
                raise SystemExit(f"{name}: the indexed query returned other runs than the full read")
            results.append(
                {
                    "case": name,
                    "rows": len(new_ids),
                    "before_ms": round(old_ms, 2),
                    "after_ms": round(new_ms, 3),
                    "ratio": round(old_ms / new_ms, 1),
                }
            )
            print(f"{name:36s} {len(new_ids):4d} rows  before {old_ms:9.1f} ms  after {new_ms:7.2f} ms  {old_ms / new_ms:8.1f}x")
    load = os.getloadavg()
    doc = {
        "command": f"python -m bench.runs_listing --runs {args.runs} --tenants {args.tenants} --repeat {args.repeat}",
        "store": "SQLite (embedded default), WAL, one file",
        "runs": args.runs,
        "tenants": args.tenants,
        "load_average": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
        "results": results,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs; written to {args.out}")


if __name__ == "__main__":
    main()
