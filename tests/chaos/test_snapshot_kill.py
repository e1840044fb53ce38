"""A process killed while it writes a merged snapshot record (every 8th snapshot folds the deltas before it into
one record written over them) loses nothing: the half-written record fails its checksum, a fresh process
reads the snapshot file up to the record before it and replays the log from there, and the recovered run
ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import builtins
import os
import signal
import time
from pathlib import Path
from typing import IO, Any

from stepwise.client import Stepwise
from stepwise.graph.loader import parse_dict
from stepwise.state import files
from stepwise.state.files import FileSnapshotStore
from stepwise.state.hydrate import CADENCE

TURNS = CADENCE * 8 + 40  # past the first merge (the 8th snapshot after the whole record)


def tick(state: dict[str, Any]) -> dict[str, Any]:
    n = len(state.get("log") or [])
    return {"log": [{"i": n, "text": "x" * 40}], "more": n + 1 < state["turns"]}


def _spec() -> Any:
    return parse_dict(
        {
            "name": "snapshot-kill-loop",
            "state": {"log": "append"},
            "graph": {
                "nodes": {"tick": {"kind": "function", "fn": "tests.chaos.test_snapshot_kill:tick", "writes": ["log", "more"]}},
                "conditional_edges": [{"from": "tick", "conditions": [{"if": "state.more", "then": "tick"}, {"else": "__end__"}]}],
                "entry": "tick",
                "max_iterations": 1000,
            },
        }
    )


class _TornWrite:
    """A file opened to write a merged record over the deltas: writes half of it, then the process dies."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f

    def __enter__(self) -> _TornWrite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()

    def truncate(self, size: int | None = None) -> int:
        return self.f.truncate(size)

    def seek(self, offset: int) -> int:
        return self.f.seek(offset)

    def write(self, blob: bytes) -> None:
        self.f.write(blob[: len(blob) // 2])
        self.f.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _run_killed_in_the_first_merge(home: Path) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child

        def torn_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            f = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 - returned to the caller, which closes it
            return _TornWrite(f) if mode == "r+b" else f

        files.open = torn_open  # type: ignore[attr-defined]  # the module's open: only the merge opens "r+b"
        try:
            client = Stepwise.embedded(home)
            client.run(_spec(), {"turns": TURNS})
        finally:
            os._exit(0)  # not reached when the merge killed the process
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the child neither finished nor died in a merge within 60 s")
        time.sleep(0.01)


def test_a_kill_in_the_middle_of_a_merged_snapshot_record_loses_nothing(tmp_path: Path) -> None:
    reference = Stepwise.embedded(tmp_path / "reference").run(_spec(), {"turns": TURNS})
    assert reference.status == "succeeded" and len(reference.state["log"]) == TURNS

    home = tmp_path / "killed"
    assert _run_killed_in_the_first_merge(home) == -signal.SIGKILL
    client = Stepwise.embedded(home)
    [run] = client.runs()
    head = client.services.events.head(run.thread_id)
    snap = FileSnapshotStore(home / "snapshots").latest(run.thread_id)
    assert snap is not None and snap[0] == CADENCE < head  # the torn record ended the chain at the whole record
    done = [e for e in client.history(run.thread_id) if e.type == "node_update"]
    assert client.state(run.thread_id)[1]["log"] == reference.state["log"][: len(done)]  # the log filled in the rest

    [recovered] = client.recover_stale()
    assert recovered.status == "succeeded" and recovered.state == reference.state
    ticks = [e.data["update"]["log"][0]["i"] for e in client.history(run.thread_id) if e.type == "node_update"]
    assert ticks == list(range(TURNS))  # each tick recorded once
    assert Stepwise.embedded(home).state(run.thread_id)[1] == reference.state  # and a cold reader agrees
