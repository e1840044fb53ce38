"""`stepwise run --thread T --multitask …` on the local engine (an embedded store under a temp home), through
the typer app in-process: the same strategies as the API's `multitask`. The run in flight waits at a human node
until the test answers it, so nothing depends on timing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from stepwise.cli import app
from stepwise.client import Stepwise

runner = CliRunner()


def note(state: dict[str, Any]) -> dict[str, Any]:
    """Logs which input the run had: the log's order is the order the runs ran in."""
    return {"log": [state["note"]]}


GRAPH = f"""
name: texting
state: {{log: append}}
graph:
  nodes:
    note: {{fn: "{__name__}:note"}}
    approve: {{kind: human, prompt: "go on?"}}
  conditional_edges:
    - from: note
      conditions:
        - {{if: "state.ask == 'yes'", then: approve}}
        - {{else: __end__}}
  entry: note
"""


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    graph = tmp_path / "texting.yaml"
    graph.write_text(GRAPH)
    home = tmp_path / ".stepwise"

    def call(*args: str, code: int = 0) -> Result:
        argv = [args[0], *([str(graph)] if args[0] == "run" else []), *args[1:], "--home", str(home)]
        result = runner.invoke(app, argv)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result

    call.home = home  # type: ignore[attr-defined]
    return call


def first_waiting(cli: Any) -> str:
    out = cli("run", "--thread", "t1", "--input", '{"note": "first", "ask": "yes"}', "--output", "json")
    first = json.loads(out.stdout)
    assert first["status"] == "waiting"
    return str(first["run_id"])


def runs(cli: Any) -> dict[str, str]:
    return {r["run_id"]: r["status"] for r in json.loads(cli("runs", "--thread", "t1", "--output", "json").stdout)}


def test_reject_fails_naming_the_run_in_flight(cli: Any) -> None:
    first = first_waiting(cli)
    refused = cli("run", "--thread", "t1", "--input", '{"note": "second", "ask": "no"}', "--multitask", "reject", code=3)
    assert f"run {first} waits at 'approve'" in refused.stderr and "enqueue" in refused.stderr
    assert runs(cli) == {first: "waiting"}  # untouched, and nothing recorded for the refused input


def test_a_bad_multitask_names_the_allowed_ones(cli: Any) -> None:
    bad = cli("run", "--thread", "t1", "--multitask", "queue", code=2)
    assert all(name in bad.stderr for name in ("reject", "enqueue", "interrupt", "rollback"))


def test_enqueue_prints_queued_and_the_queued_run_drains_after_the_first_ends(cli: Any) -> None:
    first = first_waiting(cli)
    queued = []
    for text in ("second", "third"):
        out = cli("run", "--thread", "t1", "--input", json.dumps({"note": text, "ask": "no"}), "--multitask", "enqueue", "-o", "json")
        run = json.loads(out.stdout)
        assert run["status"] == "queued" and run["behind"][0] == first
        queued.append(run["run_id"])
    text = cli("run", "--thread", "t1", "--input", '{"note": "fourth", "ask": "no"}', "--multitask", "enqueue")
    assert text.stdout.startswith("queued") and first in text.stdout
    assert runs(cli)[first] == "waiting" and [runs(cli)[r] for r in queued] == ["queued", "queued"]

    resumed = cli("resume", first, "--input", '{"decision": "go"}', "--output", "json")  # its end drains the queue
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    assert all(f"queued run {r} on t1: succeeded" in resumed.stderr for r in queued)
    assert set(runs(cli).values()) == {"succeeded"}
    state = json.loads(cli("state", "t1").stdout)["state"]
    assert state["log"] == ["first", "second", "third", "fourth"]  # in order, each with its own input
    starts = [e.run_id for e in Stepwise.embedded(cli.home).history("t1") if e.type == "run_started"]
    assert starts[:3] == [first, *queued]


def test_interrupt_cancels_the_waiting_run_and_runs_from_its_state(cli: Any) -> None:
    first = first_waiting(cli)
    out = cli("run", "--thread", "t1", "--input", '{"note": "second", "ask": "no"}', "--multitask", "interrupt", "-o", "json")
    second = json.loads(out.stdout)
    assert second["status"] == "succeeded" and second["state"]["log"] == ["first", "second"]  # from the state it reached
    assert runs(cli)[first] == "cancelled"


def test_rollback_cancels_the_waiting_run_and_discards_its_writes(cli: Any) -> None:
    cli("run", "--thread", "t1", "--input", '{"note": "kept", "ask": "no"}')
    doomed = first_waiting(cli)
    out = cli("run", "--thread", "t1", "--input", '{"note": "second", "ask": "no"}', "--multitask", "rollback", "-o", "json")
    second = json.loads(out.stdout)
    assert second["status"] == "succeeded" and second["state"]["log"] == ["kept", "second"]  # as if the doomed run never ran
    assert runs(cli)[doomed] == "cancelled"


def test_cancelling_the_run_in_flight_drains_the_queue(cli: Any) -> None:
    first = first_waiting(cli)
    out = cli("run", "--thread", "t1", "--input", '{"note": "second", "ask": "no"}', "--multitask", "enqueue", "-o", "json")
    queued = json.loads(out.stdout)["run_id"]
    cancelled = cli("cancel", first)
    assert f"queued run {queued} on t1: succeeded" in cancelled.stderr
    assert runs(cli) == {first: "cancelled", queued: "succeeded"}
