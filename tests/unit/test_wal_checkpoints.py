"""WAL checkpoints stay out of a running loop's steps: a stopped run checkpoints inline after its last step;
only a WAL grown past the run bound is checkpointed (on a thread) while a run goes on."""

from pathlib import Path

from tests.unit.test_snapshot_format import _loop_spec

from stepwise.client import Stepwise


def _traced(client: Stepwise) -> list[str]:
    statements: list[str] = []
    client.services.events.db.connection().set_trace_callback(statements.append)  # type: ignore[attr-defined]
    return statements


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


def test_a_wal_past_the_run_bound_is_checkpointed_during_the_run(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    checkpoints = client.services.events.db._checkpoints  # type: ignore[attr-defined]
    checkpoints.run_bound = 30
    spec = _loop_spec()
    client.register(spec)
    assert client.run(spec, {"turns": 40}).status == "succeeded"
    assert checkpoints._thread is not None  # the bound was crossed mid-run: the thread took the checkpoint
