"""The CLI under contention and after a kill: a busy thread is a clear error (exit 3, no traceback); a run
whose process died is listed by ``runs --stale`` and finished by ``resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GATED = """
import pathlib, time

def gate(state):
    here = pathlib.Path(__file__).parent
    (here / "entered").touch()
    while not (here / "release").exists():
        time.sleep(0.01)
    return {"log": ["gate"]}

def after(state):
    return {"log": ["after"]}
"""


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}", "STEPWISE_HOME": str(home)}


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "stepwise.cli", *args]
    return subprocess.run(cmd, cwd=tmp, env=_env(tmp / "home"), capture_output=True, text=True, timeout=120)


def _start(tmp: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "stepwise.cli", *args]
    return subprocess.Popen(cmd, cwd=tmp, env=_env(tmp / "home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)


def _setup(tmp: Path) -> None:
    (tmp / "gated.py").write_text(GATED)
    (tmp / "g.yaml").write_text("name: gated\nmodule: gated\nstate: {log: append}\nnodes: [gate, after]\n")


def test_two_runs_on_one_thread_one_gets_a_clear_busy_error(tmp_path: Path) -> None:
    _setup(tmp_path)
    first = _start(tmp_path, "run", "g.yaml", "--thread", "T", "-o", "json")
    _wait_for(tmp_path / "entered", first)
    second = _cli(tmp_path, "run", "g.yaml", "--thread", "T", "-o", "json")
    assert second.returncode == 3, second
    assert "thread 'T' is busy" in second.stderr and "Traceback" not in second.stderr
    (tmp_path / "release").touch()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads(out)["status"] == "succeeded"


def test_a_killed_run_is_listed_as_stale_and_resume_finishes_it(tmp_path: Path) -> None:
    _setup(tmp_path)
    victim = _start(tmp_path, "run", "g.yaml", "-o", "json")
    _wait_for(tmp_path / "entered", victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(60)
    stale = json.loads(_cli(tmp_path, "runs", "--stale", "-o", "json").stdout)
    assert len(stale) == 1 and stale[0]["status"] == "running"
    (tmp_path / "release").touch()
    done = _cli(tmp_path, "resume", stale[0]["run_id"], "-o", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and result["state"]["log"] == ["gate", "after"]
    assert json.loads(_cli(tmp_path, "runs", "--stale", "-o", "json").stdout) == []


def test_cli_errors_show_brackets_literally(tmp_path: Path) -> None:
    out = _cli(tmp_path, "state", "[bold]T[/bold]")
    assert out.returncode == 2
    assert "[bold]T[/bold]" in out.stderr  # rich markup would have eaten the brackets
