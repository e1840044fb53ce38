"""The embedded Valkey server goes with the process that started it, however that process ends: a normal
exit (atexit), SIGTERM (a service manager) and SIGKILL (the OOM killer) — the last two run no atexit
handler, and each used to leave a ``valkey-server`` running with no owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepwise.memory import valkey as vk

ROOT = Path(__file__).resolve().parents[2]
OWNER = """
import json, sys
from stepwise.memory import valkey as vk
url = vk.embedded_url()
print(json.dumps({"server": vk.server_pid(url), "guardian": vk._guardian.pid, "dir": str(vk._server.data_dir)}), flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)
sys.stdin.read()  # until the test ends it
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent to reap it has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
@pytest.mark.parametrize("end", ["exit", "SIGTERM", "SIGKILL"])
def test_the_embedded_server_ends_with_its_process(end: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), os.environ.get("PYTHONPATH", "")])}
    owner = subprocess.Popen([sys.executable, "-c", OWNER, end], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert owner.stdout is not None
        pids = json.loads(owner.stdout.readline())
        assert _alive(pids["server"]) and _alive(pids["guardian"])
        if end != "exit":
            owner.send_signal(getattr(signal, end))
        owner.wait(timeout=30)
        assert _gone_within(pids["server"], 15), f"valkey-server {pids['server']} outlived its owner ({end})"
        assert _gone_within(pids["guardian"], 15)
        assert not Path(pids["dir"]).exists(), f"the server's temp dir {pids['dir']} was left behind ({end})"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_the_guardian_stops_its_process_when_our_end_of_the_pipe_closes(tmp_path: Path) -> None:
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (tmp_path / "data").mkdir()
    guardian = vk.guard(target.pid, str(tmp_path / "data"))
    try:
        assert guardian.stdin is not None
        assert target.poll() is None
        guardian.stdin.close()
        assert target.wait(timeout=15) == -signal.SIGTERM
        assert guardian.wait(timeout=15) == 0
        assert not (tmp_path / "data").exists()
    finally:
        for proc in (target, guardian):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
