"""CLI behaviour a new user's walkthrough asked for: progress lines that say where a fan-out goes, `--output`
limited to text/json, Ctrl-C naming the run to resume, no library frames in `-o json` errors, `--thread` saying
when it starts a thread, `history RUN_ID`, `serve` on a busy port, `examples copy` next to identical files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "statemachines" / "examples"


def cli(*args: str, cwd: Path = ROOT, home: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)]), **(env or {})}
    if home is not None:
        full["STEPWISE_HOME"] = str(home)
    cmd = [sys.executable, "-m", "stepwise.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def _line(stderr: str, node: str) -> str:
    found = [line for line in stderr.splitlines() if line.startswith(f"  ✓ {node} ")]
    assert len(found) == 1, stderr
    return found[0]


# -- 5: the progress line of a node that fans out ---------------------------------------------------------
def test_a_fan_out_shows_its_branches_and_end_only_where_the_run_ends(tmp_path: Path) -> None:
    proc = cli("run", str(EXAMPLES / "parallel.yaml"), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _line(proc.stderr, "split").endswith("→ search_web, search_docs, search_code")
    assert [line.split()[1] for line in proc.stderr.splitlines() if line.endswith("→ __end__")] == ["merge_results"]


def test_a_planner_shows_its_workers_then_the_node_after_them(tmp_path: Path) -> None:
    proc = cli("run", str(EXAMPLES / "hierarchical.yaml"), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _line(proc.stderr, "plan").endswith("→ researcher or coder per subtask, then combine")
    assert [line.split()[1] for line in proc.stderr.splitlines() if "__end__" in line] == ["combine"]


def test_the_end_of_an_inlined_subgraph_is_not_the_end_of_the_run(tmp_path: Path) -> None:
    proc = cli("run", str(EXAMPLES / "subgraph.yaml"), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "→" not in _line(proc.stderr, "prepare/summarize")
    assert _line(proc.stderr, "prepare").endswith("→ route") and _line(proc.stderr, "route").endswith("→ __end__")


# -- 6: --output is text or json ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["run", str(EXAMPLES / "conditional.yaml")],
        ["resume", "run-x"],
        ["redrive", "run-x"],
        ["runs"],
        ["history", "thread-x"],
        ["cancel", "run-x"],
        ["memory", "list"],
        ["memory", "search", "tea"],
        ["memory", "history", "mem-x"],
        ["memory", "remember", "tea", "-n", "default/x"],
        ["memory", "edit", "mem-x", "tea"],
        ["roles", "list", "acme"],
    ],
)
def test_output_is_text_or_json_and_nothing_else(tmp_path: Path, args: list[str]) -> None:
    proc = cli(*args, "--output", "xml", home=tmp_path, env={"COLUMNS": "300"})  # the error box on one line
    assert proc.returncode == 2 and proc.stdout == ""
    assert "'xml' is not one of 'text', 'json'" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything ran (nothing in the state directory)


# -- 8: Ctrl-C names the run and how to continue it --------------------------------------------------------
INTERRUPTED = """
import os, signal
from pathlib import Path

def first(state):
    return {"log": ["first"]}

def second(state):
    marker = Path("interrupted-once")
    if not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C while `second` runs, after `first` was appended
    return {"log": ["second"]}

def third(state):
    return {"log": ["third"]}
"""
INTERRUPTED_GRAPH = """
name: interrupted
module: mine
state: {log: append}
graph:
  nodes: {first: {}, second: {}, a: {fn: "mine:third"}, b: {fn: "mine:third"}, third: {}}
  edges:
    - {from: first, to: second}
  parallel_nodes:
    - {from: second, to: [a, b]}
    - {from: [a, b], to: third}
  entry: first
"""


@pytest.mark.parametrize("output", ["text", "json"])
def test_ctrl_c_names_the_run_left_running_and_resume_continues_it(tmp_path: Path, output: str) -> None:
    (tmp_path / "mine.py").write_text(INTERRUPTED)
    (tmp_path / "g.yaml").write_text(INTERRUPTED_GRAPH)
    home = tmp_path / "h"
    proc = cli("run", "g.yaml", "-o", output, cwd=tmp_path, home=home)
    assert proc.returncode == 130 and proc.stdout == ""
    run = json.loads(cli("runs", "-o", "json", cwd=tmp_path, home=home).stdout)[0]
    assert run["status"] == "running"
    rid = run["run_id"]
    expected = f"interrupted: run {rid} is left running; continue it with `stepwise resume {rid}` (or stop it with `stepwise cancel {rid}`)"
    assert proc.stderr.splitlines()[-1] == expected and "Traceback" not in proc.stderr
    done = cli("resume", rid, cwd=tmp_path, home=home)
    assert done.returncode == 0 and "succeeded" in done.stdout, done.stderr
    assert _line(done.stderr, "second").endswith("→ a, b")  # the graph is known to a resumed run's progress too
    state = json.loads(cli("state", run["thread_id"], cwd=tmp_path, home=home).stdout)["state"]
    assert state["log"] == ["first", "second", "third", "third", "third"]  # `first` ran once
    again = cli("resume", rid, cwd=tmp_path, home=home)
    assert again.returncode == 3 and "already succeeded" in again.stderr


# -- 11: -o json shows the user's frame, not the library's ---------------------------------------------------
BOOM = """
def ok(state):
    return {"x": 1}

def boom(state):
    raise ValueError("the config key is missing")
"""


def test_json_error_keeps_the_users_frame_and_drops_the_librarys_unless_debug(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(BOOM)
    (tmp_path / "g.yaml").write_text("name: g\nmodule: mine\nnodes: [ok, boom]\n")
    proc = cli("run", "g.yaml", "-o", "json", cwd=tmp_path, home=tmp_path / "h")
    assert proc.returncode == 1
    error = json.loads(proc.stdout)["error"]
    assert error["where"] == f"{tmp_path / 'mine.py'}:6 in boom"
    cause = json.loads(error["cause"])
    assert cause["errorMessage"] == "node 'boom' failed: ValueError: the config key is missing"
    assert "stepwise/runtime" not in proc.stdout and all('File "' not in frame for frame in cause["stackTrace"])
    debug = cli("run", "g.yaml", "-o", "json", "--debug", cwd=tmp_path, home=tmp_path / "h")
    shown = json.loads(debug.stdout)["error"]
    assert any("stepwise/runtime/step.py" in frame for frame in json.loads(shown["cause"])["stackTrace"])
    assert "traceback" in shown


# -- 7: --thread with an id no thread has ----------------------------------------------------------------
def test_thread_flag_says_when_it_starts_a_new_thread(tmp_path: Path) -> None:
    graph = str(EXAMPLES / "conditional.yaml")
    first = cli("run", graph, "--thread", "thread-typo", home=tmp_path)
    assert first.returncode == 0
    assert first.stderr.splitlines()[0] == "no thread 'thread-typo' yet: starting a new thread with that id"
    second = cli("run", graph, "--thread", "thread-typo", home=tmp_path)
    assert second.returncode == 0 and "new thread" not in second.stderr
    quiet = cli("run", graph, "--thread", "thread-other", "-o", "json", home=tmp_path)
    assert quiet.stderr == "" and json.loads(quiet.stdout)["thread_id"] == "thread-other"
    helped = cli("run", "--help", env={"COLUMNS": "300"})
    assert "continue it from its state, or start a new thread with this id" in helped.stdout
    assert "Continue an existing thread" not in helped.stdout


# -- 14: history RUN_ID, serve on a busy port, examples copy beside identical files ------------------------------
def test_history_of_a_run_id_shows_that_run_and_names_its_thread(tmp_path: Path) -> None:
    graph = str(EXAMPLES / "conditional.yaml")
    one = json.loads(cli("run", graph, "--thread", "thread-t", "-o", "json", home=tmp_path).stdout)
    two = json.loads(cli("run", graph, "--thread", "thread-t", "-o", "json", home=tmp_path).stdout)
    events = json.loads(cli("history", two["run_id"], "-o", "json", home=tmp_path).stdout)
    assert events and {e["run_id"] for e in events} == {two["run_id"]}
    text = cli("history", one["run_id"], home=tmp_path)
    assert text.returncode == 0 and one["run_id"] in text.stdout and two["run_id"] not in text.stdout
    assert f"run {one['run_id']} is on thread thread-t" in text.stderr and "stepwise history thread-t" in text.stderr
    unknown = cli("history", "run-nope", home=tmp_path)
    assert unknown.returncode == 2 and "no thread 'run-nope'" in unknown.stderr


def test_serve_on_a_busy_port_says_so_and_names_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli("serve", "--port", str(port), "--home", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: port {port} on 127.0.0.1 is in use (another `stepwise serve`?); pass --port with a free port"


def test_examples_copy_skips_identical_files_and_refuses_different_ones(tmp_path: Path) -> None:
    first = cli("examples", "copy", "sequential", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    shared = tmp_path / "sequential.yaml"
    before = shared.stat().st_mtime_ns
    second = cli("examples", "copy", "subgraph", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "subgraph.yaml").exists() and "wrote subgraph.yaml" in second.stdout
    assert "wrote sequential.yaml" not in second.stdout and shared.stat().st_mtime_ns == before  # identical: left as it is
    shared.write_text(shared.read_text() + "# mine\n")
    refused = cli("examples", "copy", "subgraph", cwd=tmp_path)
    assert refused.returncode == 2 and "sequential.yaml already exists with other content; pass --force" in refused.stderr
    assert shared.read_text().endswith("# mine\n")
    forced = cli("examples", "copy", "subgraph", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and not shared.read_text().endswith("# mine\n")
