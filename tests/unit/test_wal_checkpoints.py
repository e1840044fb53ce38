"""WAL checkpoints stay off a running loop's steps: a stopped run checkpoints inline after its last step; a
node about to call its model lets a thread checkpoint during that wait; a loop that never waits is
checkpointed mid-run only once its WAL passes the limit (and the WAL file is cut back afterwards)."""

import sqlite3
from pathlib import Path
from typing import Any

from tests.support.moto_sfn import wait_for
from tests.unit.test_snapshot_format import _loop_spec

from stepwise.client import Stepwise
from stepwise.graph.loader import parse_dict
from stepwise.settings import Settings
from stepwise.state.sqlite import SqliteDatabase


def _traced(client: Stepwise) -> list[str]:
    statements: list[str] = []
    client.services.events.db.connection().set_trace_callback(statements.append)  # type: ignore[attr-defined]
    return statements


def _thread_checkpoints(db: SqliteDatabase) -> list[str]:
    """The checkpoints the background thread runs (its connection comes from ``db.connect``)."""
    seen: list[str] = []
    connect = db.connect

    def traced() -> sqlite3.Connection:
        conn = connect()
        conn.set_trace_callback(lambda sql: seen.append(sql) if "wal_checkpoint" in sql else None)
        return conn

    db.connect = traced  # type: ignore[method-assign]
    return seen


def test_a_stopped_run_checkpoints_after_its_last_step_and_never_during_it(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    checkpoints = client.services.events.db._checkpoints  # type: ignore[attr-defined]
    checkpoints.every = 40
    spec = _loop_spec()
    client.register(spec)
    statements = _traced(client)
    result = client.run(spec, {"turns": 60})
    assert result.status == "succeeded"
    marks = [i for i, sql in enumerate(statements) if "wal_checkpoint" in sql]
    inserts = [i for i, sql in enumerate(statements) if sql.lstrip().upper().startswith("INSERT INTO EVENTS")]
    assert len(inserts) >= 60 and len(marks) == 1 and marks[0] > max(inserts)  # once, after the run's last event
    assert checkpoints._thread is None  # no checkpointing thread woke beside the steps

    statements.clear()
    client.run(spec, {"turns": 3})  # fewer writes than `every` since the last checkpoint: nothing to do
    assert not any("wal_checkpoint" in sql for sql in statements)


def _small_wal(client: Stepwise, truncate: int) -> SqliteDatabase:
    """Connections opened from here on cut the WAL file back to ``truncate`` bytes after a checkpoint."""
    db: SqliteDatabase = client.services.events.db  # type: ignore[attr-defined]
    db.WAL_TRUNCATE_BYTES = truncate
    db._local.__dict__.clear()
    db._idle.clear()
    return db


def test_a_loop_that_never_waits_is_checkpointed_mid_run_only_past_the_wal_limit(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", sqlite_wal_limit_mb=16)
    client = Stepwise.embedded(settings=settings)
    db = _small_wal(client, 32 * 1024)
    checkpoints = db._checkpoints
    assert checkpoints.limit_bytes == 16 * 2**20  # from STEPWISE_SQLITE_WAL_LIMIT_MB
    checkpoints.every = 8
    seen = _thread_checkpoints(db)
    spec = _loop_spec()
    client.register(spec)
    assert client.run(spec, {"turns": 40}).status == "succeeded"
    assert checkpoints._thread is None  # ~40 steps of WAL are far below 16 MiB: no checkpoint beside a step

    checkpoints.limit_bytes = 256 * 1024  # a WAL of a few dozen steps is now past the limit
    assert client.run(spec, {"turns": 40}).status == "succeeded"
    wait_for(lambda: seen, "the thread's mid-run checkpoint")


def test_the_wal_file_is_cut_back_after_a_checkpoint(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    db = _small_wal(client, 32 * 1024)
    db._checkpoints.every = 40
    spec = _loop_spec()
    client.register(spec)
    assert client.run(spec, {"turns": 120}).status == "succeeded"  # settles with an inline checkpoint
    wal = db.path.with_name(db.path.name + "-wal")
    grown = wal.stat().st_size
    assert grown > 20 * 32 * 1024
    assert client.run(spec, {"turns": 2}).status == "succeeded"  # its first write restarts the WAL, cut back to 32 KiB
    assert wal.stat().st_size < grown // 10  # then holds just the few pages this short run wrote


def think_tick(state: dict[str, Any]) -> dict[str, Any]:
    n = len(state.get("log") or [])
    return {"log": [{"i": n, "text": "x" * 40}], "more": n + 1 < state["turns"]}


def test_a_node_calling_its_model_lets_the_thread_checkpoint_during_the_call(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    db = client.services.events.db  # type: ignore[attr-defined]
    checkpoints = db._checkpoints
    checkpoints.every = 8
    seen = _thread_checkpoints(db)
    order: list[str] = []
    background = checkpoints._background

    def woke() -> None:
        order.append("checkpoint thread woken")
        background()

    checkpoints._background = woke
    client.services.observer = lambda e: order.append(f"{e['kind']} {e.get('node')}") if e.get("kind", "").startswith("node_") else None
    spec = parse_dict(
        {
            "name": "loop-then-think",
            "state": {"log": "append"},
            "graph": {
                "nodes": {
                    "tick": {"kind": "function", "fn": "tests.unit.test_wal_checkpoints:think_tick", "writes": ["log", "more"]},
                    "think": {"kind": "agent", "model": "scripted", "script": ["done"], "output": "answer"},
                },
                "conditional_edges": [{"from": "tick", "conditions": [{"if": "state.more", "then": "tick"}, {"else": "think"}]}],
                "edges": [{"from": "think", "to": "__end__"}],
                "entry": "tick",
                "max_iterations": 100,
            },
        }
    )
    client.register(spec)
    result = client.run(spec, {"turns": 30})
    assert result.status == "succeeded", result.error
    assert order.count("checkpoint thread woken") == 1  # the 30 function steps never woke it
    woken = order.index("checkpoint thread woken")
    assert order[woken - 1] == "node_finished tick" and order[woken + 1] == "node_started think"
    wait_for(lambda: seen, "the checkpoint during the model call")
