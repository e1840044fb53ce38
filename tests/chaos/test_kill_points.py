"""Kill at every store-write boundary (DBOS/Restate style): a run's process dies just before its Nth write
to the embedded store (event appends, run-record writes, task tokens), then a fresh process recovers it
from the log. Every kill point must end exactly where an uninterrupted run ends: same status, same state,
each node's update recorded once.

The default run samples a few kill points per example; ``make chaos`` (``STEPWISE_CHAOS=full``) tries
them all. Counts are printed at the end of the session (tests/chaos/conftest.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.chaos.counts import COUNTS
from tests.chaos.killed import ANSWER, INPUT, run_phase, writes

from stepwise.client import Stepwise
from stepwise.graph.loader import load_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "statemachines" / "examples").glob("*.yaml"))
FULL = os.environ.get("STEPWISE_CHAOS") == "full"
CHILD_SECONDS = 60.0  # generous: a phase takes well under a second to a few seconds
SAMPLES = {"react": 0, "human_approval": 99}  # kill points per example and phase in the default run (else 2):
# every point of human_approval (the probe's stuck run was a kill before its 6th write); react only in the full
# sweep (each child is a fresh interpreter that starts its own tool sandbox process)


def _in_child(home: Path, example: Path, phase: str, kill_at: int) -> int:
    """The phase in a fresh interpreter (tests/chaos/killed.py) that SIGKILLs itself right before write
    ``kill_at``; its exit status."""
    child = subprocess.Popen([sys.executable, "-m", "tests.chaos.killed", str(home), str(example), phase, str(kill_at)], cwd=ROOT)
    try:
        return child.wait(timeout=CHILD_SECONDS)
    except subprocess.TimeoutExpired:  # a child that hangs is killed: still a kill point, and counted
        child.kill()
        COUNTS["kill points where the child hung (killed by the harness)"] += 1
        return child.wait()


def _finish(home: Path, example: Path) -> dict[str, Any]:
    """The recoverer: continue every dead run, resubmit what never started, answer the human once; return
    the outcome (status, state, per-node update counts) of the example's thread."""
    client = Stepwise.embedded(home)
    client.recover_stale()
    runs = client.runs()
    if not runs or all(r.status == "failed" and (r.error or {}).get("error") == "Stepwise.DiedBeforeStart" for r in runs):
        client.run(load_file(example), dict(INPUT))  # the kill came before the run existed: the caller retries
        runs = client.runs()
    live = [r for r in runs if (r.error or {}).get("error") != "Stepwise.DiedBeforeStart"]
    run = live[0]
    if run.status == "waiting":
        client.resume(run.run_id, dict(ANSWER))
    run = client.services.runs.get(run.run_id)
    assert run is not None
    _, state = client.state(run.thread_id)
    updates: dict[str, int] = {}
    for event in client.history(run.thread_id):
        if event.type == "node_update":
            key = f"{event.scope}|{event.node}|{event.key}"
            updates[key] = updates.get(key, 0) + 1
    return {
        "status": run.status,
        "state": json.loads(json.dumps(state, sort_keys=True, default=str)),
        "dupes": max(updates.values(), default=1),
    }


def _reference(tmp: Path, example: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The uninterrupted outcome and the number of store writes in each phase."""
    home = tmp / "reference"
    counts: dict[str, int] = {}
    with writes(lambda n: None) as count:
        run_phase(home, example, "run")
    counts["run"] = count[0]
    client = Stepwise.embedded(home)
    if any(r.status == "waiting" for r in client.runs()):
        with writes(lambda n: None) as count:
            run_phase(home, example, "resume")
        counts["resume"] = count[0]
    return _finish(home, example), counts


def _points(total: int, example: str, phase: str) -> list[int]:
    samples = SAMPLES.get(example, 2)
    if FULL or 0 < total <= samples:
        return list(range(1, total + 1))
    return sorted(random.Random(f"{example}:{phase}:{total}").sample(range(1, total + 1), samples))


@pytest.mark.timeout(3600 if FULL else 600)
@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_a_kill_at_any_store_write_is_recovered(example: Path, tmp_path: Path) -> None:
    if not FULL and SAMPLES.get(example.stem) == 0:
        pytest.skip("in the full sweep only: make chaos")
    expected, counts = _reference(tmp_path, example)
    failures, killed = [], 0
    for phase, total in counts.items():
        for point in _points(total, example.stem, phase):
            home = tmp_path / f"{phase}-{point}"
            if phase == "resume":  # bring the run to its human node first, uninterrupted
                run_phase(home, example, "run")
            code = _in_child(home, example, phase, point)
            killed += code == -signal.SIGKILL
            COUNTS["kill points tried"] += 1
            assert code in (-signal.SIGKILL, 0, 1), code
            outcome = _finish(home, example)
            if outcome == expected:
                COUNTS["kill points recovered"] += 1
            else:
                failures.append((phase, point, code, outcome["status"], outcome["dupes"]))
    assert not failures, f"{example.stem}: not recovered at (phase, write, exit, status, dupes): {failures}"
    assert killed, "no child died at its kill point: is tests/chaos/killed.py broken? (every one exited)"


@pytest.mark.timeout(3600 if FULL else 600)
def test_a_kill_around_a_continuation_handover_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store write of human_approval with a continuation execution after every event: a kill right before
    any of them (also the handover's start-cursor write) is recovered, as in the sweep above."""
    monkeypatch.setenv("STEPWISE_CONTINUE_AFTER_EVENTS", "1")  # the children inherit it
    example = ROOT / "statemachines" / "examples" / "human_approval.yaml"
    expected, counts = _reference(tmp_path, example)
    [reference] = Stepwise.embedded(tmp_path / "reference").runs()
    assert reference.start_cursor.get("continuation", 0) >= 1  # the uninterrupted run did hand over
    failures, killed = [], 0
    for phase, total in counts.items():
        for point in range(1, total + 1):
            home = tmp_path / f"{phase}-{point}"
            if phase == "resume":
                run_phase(home, example, "run")
            code = _in_child(home, example, phase, point)
            killed += code == -signal.SIGKILL
            COUNTS["kill points tried"] += 1
            COUNTS["kill points tried with continuations"] += 1
            assert code in (-signal.SIGKILL, 0, 1), code
            outcome = _finish(home, example)
            if outcome == expected:
                COUNTS["kill points recovered"] += 1
                COUNTS["kill points recovered with continuations"] += 1
            else:
                failures.append((phase, point, code, outcome["status"], outcome["dupes"]))
    assert not failures, f"not recovered at (phase, write, exit, status, dupes): {failures}"
    assert killed, "no child died at its kill point: is tests/chaos/killed.py broken? (every one exited)"
