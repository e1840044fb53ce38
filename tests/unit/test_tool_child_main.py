"""Tool children never import the caller's ``__main__``: a plain script needs no ``if __name__ == "__main__":``.

Each test runs a real interpreter on a temporary script (no guard) whose top level prints a marker; before the
fix every bounded tool call's forkserver child imported that script again (marker twice, or the child died)."""

from __future__ import annotations

import ast
import inspect
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
from multiprocessing import popen_forkserver, spawn
from pathlib import Path

from stepwise.tools import limits

REPO = Path(__file__).resolve().parents[2]
MARKER = "TOP-LEVEL-RAN"


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


GRAPH_SCRIPT = f"""
import tempfile
print({MARKER!r})
from stepwise import Stepwise
from stepwise.graph.loader import load_file

client = Stepwise.embedded(tempfile.mkdtemp(dir='.'))  # inside the test's tmp_path (the cwd)
graph = load_file({str(REPO / "statemachines/examples/react.yaml")!r})  # scripted model calls calculator 17 * 23
result = client.run(graph, {{"messages": [{{"role": "user", "content": "17 * 23?"}}]}})
print("status", result.status)
print("tool", [m["content"] for m in result.state["messages"] if m["role"] == "tool"])
"""


def test_an_unguarded_script_runs_an_agent_with_a_bounded_tool_once(tmp_path: Path) -> None:
    (tmp_path / "agent_script.py").write_text(GRAPH_SCRIPT)
    proc = _python(["agent_script.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(MARKER) == 1, proc.stdout
    assert "status succeeded" in proc.stdout
    assert "tool ['391']" in proc.stdout, proc.stdout  # the calculator ran in its bounded child and answered


MODULE = f"""
print({MARKER!r})
from stepwise.tools.limits import run_bounded
print("result", run_bounded("calculator", {{"expression": "6 * 7"}}))
print("result", run_bounded("json_transform", {{"data": {{"a": {{"b": [5]}}}}, "path": "$.a.b[0]"}}))
"""


def test_python_dash_m_runs_its_module_once(tmp_path: Path) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tooluser.py").write_text(MODULE)
    proc = _python(["-m", "mypkg.tooluser"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(MARKER) == 1, proc.stdout
    assert proc.stdout.splitlines()[1:] == ["result 42", "result 5"]


def test_a_script_that_cannot_be_imported_again_no_longer_matters(tmp_path: Path) -> None:
    (tmp_path / "fragile.py").write_text(
        "import multiprocessing, sys\n"
        "if __name__ != '__main__' or multiprocessing.parent_process() is not None:\n"
        "    sys.exit(3)  # what an unguarded script's child did before: die while starting\n"
        "from stepwise.tools.limits import run_bounded\n"
        "print('result', run_bounded('calculator', {'expression': '2 ** 10'}))\n"
    )
    proc = _python(["fragile.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "result 1024"


OWN_MULTIPROCESSING = """
import multiprocessing

def square(q, n):
    q.put(n * n)

if __name__ == "__main__":
    from stepwise.tools.limits import run_bounded
    print("tool", run_bounded("calculator", {"expression": "3 + 4"}))
    ctx = multiprocessing.get_context("forkserver")
    q = ctx.Queue()
    p = ctx.Process(target=square, args=(q, 9))  # the user's own child still imports __main__ to find square
    p.start()
    print("own", q.get(timeout=120))
    p.join()
"""


def test_the_callers_own_multiprocessing_still_imports_its_main(tmp_path: Path) -> None:
    (tmp_path / "own_mp.py").write_text(OWN_MULTIPROCESSING)
    proc = _python(["own_mp.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["tool 7", "own 81"]


OWN_FORKSERVER = """
import os
from multiprocessing import forkserver

from stepwise.tools.limits import run_bounded

print("tool", run_bounded("calculator", {"expression": "3 + 4"}))
server = forkserver._forkserver  # the process-wide one: the caller's, so not started and its preload list unchanged
print("process-wide fork server", server._forkserver_pid, server._preload_modules)
pid = os.fork()
if pid == 0:  # forked after a bounded call, like a pre-fork server's worker: its parent's fork server is not its child
    code = 1
    try:
        print("forked child tool", run_bounded("calculator", {"expression": "6 * 7"}), flush=True)
        code = 0
    except BaseException as exc:
        print("forked child failed:", type(exc).__name__, exc, flush=True)
    os._exit(code)
print("forked child exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_bounded_calls_leave_the_process_wide_fork_server_alone_and_work_after_a_fork(tmp_path: Path) -> None:
    (tmp_path / "own_fs.py").write_text(OWN_FORKSERVER)
    proc = _python(["own_fs.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "tool 7",
        "process-wide fork server None ['__main__']",
        "forked child tool 42",
        "forked child exit 0",
    ], proc.stdout


def test_a_child_that_dies_while_starting_says_what_to_check() -> None:
    parent, child = multiprocessing.Pipe(duplex=False)
    proc = limits._MainFreeProcess(target=os._exit, args=(7,), daemon=True)  # exits at once, never says "ready"
    proc.start()
    child.close()  # the only write end: the child was not given it
    try:
        limits._started(parent, "calculator", limits.ToolBudget(), proc)
    except limits.ToolLimitError as exc:
        message = str(exc)
    else:
        raise AssertionError("a child that exits before 'ready' must raise ToolLimitError")
    finally:
        parent.close()
    assert "exited while starting (exit code 7)" in message
    assert "ulimit" in message and "__main__" not in message


def _calls(fn: object) -> list[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))  # type: ignore[arg-type]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            names.append(node.func.attr if isinstance(node.func, ast.Attribute) else ast.unparse(node.func))
    return names


def test_the_copied_launch_still_matches_this_cpython() -> None:
    """``_MainFreePopen._launch`` is CPython's ``popen_forkserver.Popen._launch`` plus dropping the main-module
    keys: if a Python upgrade changes CPython's steps, this fails instead of the copy silently drifting."""
    ours = [name for name in _calls(limits._MainFreePopen._launch) if name != "pop"]
    assert ours == _calls(popen_forkserver.Popen._launch)
    assert limits._MAIN_KEYS == ("init_main_from_path", "init_main_from_name")
    assert all(key in inspect.getsource(spawn.get_preparation_data) for key in limits._MAIN_KEYS)


def test_the_documented_unguarded_script_runs_as_written(tmp_path: Path) -> None:
    text = (REPO / "docs/reliability.md").read_text()
    start = text.index('### Plain scripts need no `if __name__ == "__main__":`')
    block = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert block is not None, "the section lost its python example"
    (tmp_path / "my_agent.py").write_text(block.group(1))
    proc = _python(["my_agent.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("my_agent starts") == 1, proc.stdout
    assert proc.stdout.splitlines()[-1] == "succeeded {'role': 'assistant', 'content': 'Checked again: 17 × 23 = 391.', 'name': 'reason'}"
