"""The `stepwise` command as a user runs it: separate processes over one state directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "statemachines" / "examples"


def cli(*args: str, cwd: Path = ROOT, home: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "shared")}  # this checkout's library (the venv may hold another's)
    if home is not None:
        env["STEPWISE_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "stepwise.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_validate_compile_graph():
    assert "ok" in cli("validate", str(EXAMPLES / "conditional.yaml")).stdout
    asl = json.loads(cli("compile", str(EXAMPLES / "conditional.yaml")).stdout)
    assert asl["States"][asl["StartAt"]]["Default"] == "evaluate" and asl["States"]["evaluate"]["Parameters"]["Payload"]["jump"]
    mermaid = cli("graph", str(EXAMPLES / "conditional.yaml")).stdout
    assert mermaid.startswith("flowchart TD") and "state.type == 'A'" in mermaid


def test_invalid_graph_exits_nonzero_with_the_fix(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: b\ngraph:\n  nodes:\n    a: {fn: 'statemachines.examples.nodes:fetch'}\n  edges:\n    - from: a, to: b\n  entry: a\n"
    )
    proc = cli("validate", str(bad), check=False)
    assert proc.returncode == 2
    assert "bad.yaml:6" in proc.stderr and "`- {from: a, to: b}`" in proc.stderr


def test_run_json_then_inspect(tmp_path: Path):
    proc = cli("run", str(EXAMPLES / "conditional.yaml"), "--input", '{"type": "A"}', "--output", "json", home=tmp_path)
    result = json.loads(proc.stdout)  # stdout holds exactly one JSON object
    assert set(result) == {"run_id", "thread_id", "status", "state"}
    assert result["status"] == "succeeded" and result["state"]["trail"] == ["evaluate", "handle_billing"]
    thread = result["thread_id"]
    runs = json.loads(cli("runs", "--output", "json", home=tmp_path).stdout)
    assert runs[0]["run_id"] == result["run_id"] and runs[0]["status"] == "succeeded"
    history = json.loads(cli("history", thread, "--output", "json", home=tmp_path).stdout)
    assert [e["type"] for e in history] == ["run_started", "node_update", "node_update", "run_finished"]
    at = json.loads(cli("state", thread, "--at", "2", home=tmp_path).stdout)
    assert at["state"] == {"type": "A", "trail": ["evaluate"]}
    fork = json.loads(cli("fork", thread, "--at", "2", home=tmp_path).stdout)
    assert json.loads(cli("state", fork["thread_id"], home=tmp_path).stdout)["state"] == at["state"]


def test_run_text_shows_progress_per_node(tmp_path: Path):
    proc = cli("run", str(EXAMPLES / "parallel.yaml"), home=tmp_path)
    for node in ("split", "search_web", "search_docs", "search_code", "rank", "merge_results"):
        assert f"✓ {node}" in proc.stderr
    assert "succeeded" in proc.stdout


def test_human_resume_across_processes(tmp_path: Path):
    waiting = json.loads(cli("run", str(EXAMPLES / "human_approval.yaml"), "-o", "json", home=tmp_path).stdout)
    assert waiting["status"] == "waiting" and waiting["waiting"]["node"] == "approve"
    done = json.loads(
        cli("resume", waiting["run_id"], "--input", '{"decision": "no", "comment": "too much"}', "-o", "json", home=tmp_path).stdout
    )
    assert done["status"] == "succeeded" and done["state"]["outcome"] == "rejected: too much"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", str(EXAMPLES / "conditional.yaml"), "--input", "{not json"], "--input is not valid JSON"),
        (["run", str(EXAMPLES / "conditional.yaml"), "--input", "[1]"], "must be a JSON object"),
        (["resume", "run-unknown", "--input", "{}"], "no run 'run-unknown'"),
        (["state", "thread-unknown"], "no thread 'thread-unknown'"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str):
    proc = cli(*args, home=tmp_path, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_failed_run_exits_nonzero(tmp_path: Path):
    graph = tmp_path / "f.yaml"
    graph.write_text("name: f\nmodule: statemachines.examples.nodes\nnodes: [fetch, fail_on_purpose]\n")
    proc = cli("run", str(graph), "-o", "json", home=tmp_path / "h", check=False)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["status"] == "failed" and result["error"]["node"] == "fail_on_purpose"


CRASHY = """
import os, signal
from pathlib import Path

def first(state):
    return {"log": ["first"]}

def second(state):
    marker = Path("crashed-once")
    if not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), signal.SIGKILL)   # the process dies mid-run, after `first` was appended
    return {"log": ["second"]}

def third(state):
    return {"log": ["third"]}
"""


def test_killed_process_loses_nothing_and_resume_continues(tmp_path: Path):
    (tmp_path / "crashy.py").write_text(CRASHY)
    (tmp_path / "g.yaml").write_text("name: crashy\nmodule: crashy\nstate: {log: append}\nnodes: [first, second, third]\n")
    home = tmp_path / ".stepwise"
    killed = cli("run", "g.yaml", "-o", "json", cwd=tmp_path, home=home, check=False)
    assert killed.returncode != 0 and killed.stdout == ""
    run = json.loads(cli("runs", "-o", "json", cwd=tmp_path, home=home).stdout)[0]
    assert run["status"] == "running"
    done = json.loads(cli("resume", run["run_id"], "-o", "json", cwd=tmp_path, home=home).stdout)
    assert done["status"] == "succeeded"
    assert done["state"]["log"] == ["first", "second", "third"]  # `first` ran exactly once


BOOM = """
def ok(state):
    return {"x": 1}

def boom(state):
    raise ValueError("the [config] key is missing")

def one(state):
    return {"r": 1}

def two(state):
    return {"r": 2}
"""


def test_a_failure_shows_node_message_place_and_fix_and_the_traceback_only_with_debug(tmp_path: Path):
    (tmp_path / "mine.py").write_text(BOOM)
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nmodule: mine\nnodes: [ok, boom]\n")
    proc = cli("run", str(graph), home=tmp_path / "h", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "error: node 'boom' failed: ValueError: the [config] key is missing" in proc.stderr  # [config] is not eaten as markup
    assert f"at {tmp_path / 'mine.py'}:6 in boom" in proc.stderr and "fix: correct the code at " in proc.stderr
    assert "Traceback" not in proc.stderr and "stepwise/runtime" not in proc.stderr and "--debug" in proc.stderr
    assert "Stepwise.NodeError" not in proc.stdout + proc.stderr
    debug = cli("run", str(graph), "--debug", home=tmp_path / "h", cwd=tmp_path, check=False)
    assert "Traceback (most recent call last)" in debug.stderr and 'raise ValueError("the [config] key is missing")' in debug.stderr
    as_json = json.loads(cli("run", str(graph), "-o", "json", home=tmp_path / "h", cwd=tmp_path, check=False).stdout)
    assert as_json["error"]["node"] == "boom" and "traceback" not in as_json["error"]


def test_a_join_conflict_names_the_join_the_branches_and_the_fix(tmp_path: Path):
    (tmp_path / "mine.py").write_text(BOOM)
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "name: g\nmodule: mine\ngraph:\n  nodes: {ok: {}, one: {}, two: {}, done: {fn: 'mine:ok'}}\n"
        "  edges:\n    - {from: ok, to: [one, two]}\n    - {from: [one, two], to: done}\n  entry: ok\n"
    )
    proc = cli("run", str(graph), home=tmp_path / "h", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "node None" not in proc.stdout + proc.stderr
    assert "error: node 'done' failed: NodeError: branch 'one' and branch 'two' both wrote channel 'r'" in proc.stderr
    assert "fix: declare `r: append` (or merge/add) under `state:`" in proc.stderr


def test_version_full_ids_and_keys(tmp_path: Path):
    from stepwise import __version__

    assert cli("--version").stdout.strip() == f"stepwise {__version__}"
    result = json.loads(cli("run", str(EXAMPLES / "sequential.yaml"), "-o", "json", home=tmp_path).stdout)
    table = cli("runs", home=tmp_path).stdout
    assert result["run_id"] in table and result["thread_id"] in table  # never cut to "thread-27224a314…"
    created = json.loads(cli("keys", "create", "--tenant", "acme", "--name", "ci", "--home", str(tmp_path)).stdout)
    assert created["api_key"] and created["tenant"] == "acme"
    listed = [json.loads(line) for line in cli("keys", "list", "--tenant", "acme", "--home", str(tmp_path)).stdout.splitlines()]
    assert [k["key_id"] for k in listed] == [created["key_id"]] and created["api_key"] not in json.dumps(listed)
    revoked = json.loads(cli("keys", "revoke", created["key_id"], "--tenant", "acme", "--home", str(tmp_path)).stdout)
    assert revoked["key_id"] == created["key_id"] and revoked["revoked_at"]


def test_resume_refuses_a_missing_or_unexpected_answer(tmp_path: Path):
    waiting = json.loads(cli("run", str(EXAMPLES / "human_approval.yaml"), "-o", "json", home=tmp_path).stdout)
    run_id = waiting["run_id"]
    for args, needle in [
        ([], "no answer was given"),
        (["--input", '{"decison": "yes"}'], "unexpected key 'decison' (did you mean 'decision'?"),
        (["--input", '{"decision": "maybe"}'], '\'decision\' is \'maybe\'; allowed: "yes", "no", "revise"'),
    ]:
        proc = cli("resume", run_id, *args, home=tmp_path, check=False)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert f'answer with: stepwise resume {run_id} --input \'{{"decision": "yes"}}\'' in proc.stderr
    done = json.loads(cli("resume", run_id, "--input", '{"decision": "yes"}', "-o", "json", home=tmp_path).stdout)
    assert done["status"] == "succeeded" and done["state"]["published"] is True


TIMED = """
name: timed
graph:
  nodes:
    draft: {kind: function, fn: "stepwise.examples.nodes:draft"}
    approve: {kind: human, prompt: "Approve?", input: {decision: {enum: ["yes", "no"]}}, config: {timeout_seconds: 60}}
    publish: {kind: function, fn: "stepwise.examples.nodes:publish"}
  edges:
    - {from: draft, to: approve}
    - {from: approve, to: publish}
  entry: draft
"""


def test_a_wait_past_its_deadline_fails_at_runs_and_resume_without_a_server(tmp_path: Path):
    """No server keeps time for the CLI: `stepwise resume` and `stepwise runs` apply the deadline when they look."""
    from stepwise.asl.interpreter import FakeClock
    from stepwise.client import Stepwise
    from stepwise.graph.loader import load_text

    graph = tmp_path / "timed.yaml"
    graph.write_text(TIMED)
    shown = cli("run", str(graph), home=tmp_path)
    assert "answer by " in shown.stdout and "UTC (config.timeout_seconds: 60)" in shown.stdout, shown.stdout
    current = next(w for w in shown.stdout.split() if w.startswith("run-"))
    earlier = Stepwise.embedded(tmp_path, clock=FakeClock())  # runs that began waiting in 2023: long overdue
    late, unread = (earlier.run(load_text(TIMED), {}).run_id for _ in range(2))

    proc = cli("resume", late, "--input", '{"decision": "yes"}', home=tmp_path, check=False)
    assert proc.returncode == 3, proc.stderr
    assert f"run '{late}' failed with States.Timeout: human node 'approve' allowed 60 s" in proc.stderr
    assert "this answer was not applied" in proc.stderr and f"stepwise redrive {late}" in proc.stderr

    runs = {r["run_id"]: r for r in json.loads(cli("runs", "-o", "json", home=tmp_path).stdout)}
    for run_id in (late, unread):
        assert runs[run_id]["status"] == "failed" and runs[run_id]["error"]["error"] == "States.Timeout"
        assert runs[run_id]["error"]["message"] == "human node 'approve' waited 60 s with no answer (config.timeout_seconds: 60)"
    assert runs[current]["status"] == "waiting"  # its minute has not passed
    done = json.loads(cli("resume", current, "--input", '{"decision": "yes"}', "-o", "json", home=tmp_path).stdout)
    assert done["status"] == "succeeded"


def test_validate_reports_file_line_and_one_root_cause(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: b\nmodule: statemachines.examples.nodes\ngraph:\n  nodes:\n    fetch: {}\n    clean: {}\n    summarize: {}\n"
        "  edges:\n    - {from: fetch, to: claen}\n    - {from: clean, to: summarize}\n  entry: fetch\n"
    )
    proc = cli("validate", str(bad), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad}:9: node 'fetch': an edge points to unknown node 'claen'. "
        "Fix: did you mean 'clean'? Otherwise define node 'claen' (nodes: clean, fetch, summarize)"
    ]
