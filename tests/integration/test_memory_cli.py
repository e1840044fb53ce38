"""``stepwise memory search|list|history|edit|forget|consolidate`` on an embedded home, and the serve worker."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from stepwise.cli import app
from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.memory.consolidate import PENDING_KEY
from stepwise.memory.worker import ConsolidationWorker, run_pass

runner = CliRunner()


def cli(home: Path, *args: str) -> object:
    result = runner.invoke(app, ["memory", *args, "--home", str(home)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if result.stdout.startswith(("[", "{")) else result.stdout


def test_review_edit_forget_cycle(tmp_path: Path) -> None:
    first = cli(
        tmp_path,
        "remember",
        "The user prefers window seats.",
        "-n",
        "default/a/dana",
        "-s",
        "preference",
        "--key",
        "pref:seat",
        "-o",
        "json",
    )
    cli(tmp_path, "remember", "The user prefers aisle seats.", "-n", "default/a/dana", "-s", "preference", "--key", "pref:seat")
    hits = cli(tmp_path, "search", "which seat does dana like", "-o", "json")
    assert [h["text"] for h in hits] == ["The user prefers aisle seats."]  # type: ignore[index]
    old = cli(tmp_path, "search", "which seat", "--as-of", str(first[0]["valid_from"] + 0.0001), "-o", "json")  # type: ignore[index]
    assert [h["text"] for h in old] == ["The user prefers window seats."]  # type: ignore[index]
    versions = cli(tmp_path, "history", first[0]["id"][:10], "-o", "json")  # type: ignore[index]
    assert [v["text"] for v in versions] == ["The user prefers window seats.", "The user prefers aisle seats."]  # type: ignore[index]
    current = versions[1]["id"]  # type: ignore[index]
    edited = cli(tmp_path, "edit", current, "The user prefers aisle seats near the front.", "-o", "json")
    assert edited[0]["text"].endswith("near the front.")  # type: ignore[index]
    assert len(cli(tmp_path, "list", "--history", "-o", "json")) == 3  # type: ignore[arg-type]
    assert cli(tmp_path, "list", "--tenant", "globex", "-o", "json") == []
    assert cli(tmp_path, "forget", edited[0]["id"]) == {"forgotten": 3}  # type: ignore[index]
    assert cli(tmp_path, "list", "--history", "-o", "json") == []
    bad = runner.invoke(app, ["memory", "search", "x", "-n", "globex/a", "--home", str(tmp_path)])
    assert bad.exit_code == 2 and "not in tenant" in bad.output


GRAPH = """
name: chatty
state: {messages: append}
graph:
  nodes:
    a:
      kind: agent
      model: scripted
      script: ["A long answer that goes on and on about many things. " ]
      memory: {stm_budget: 100000, namespaces: ["{tenant}/chatty/{thread}"]}
  entry: a
"""


def test_consolidate_command_and_worker_use_the_event_log(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path)
    mem = client.services.memory
    mem.valkey.delete(PENDING_KEY)
    history = [{"role": "user", "content": f"I like topic {i}. Tell me more about it."} for i in range(60)]
    result = client.run(load_text(GRAPH), {"messages": history})
    assert mem.valkey.hlen(PENDING_KEY) == 1  # within its budget: registered for the background pass
    # the background pass uses a smaller budget recorded in the pending entry; make it tight for the test
    field, raw = next(iter(mem.valkey.hgetall(PENDING_KEY).items()))
    mem.valkey.hset(PENDING_KEY, field, json.dumps({**json.loads(raw), "budget": 200}))
    mem.stm.clear("default", result.thread_id)  # the cache is lost: the pass rebuilds from the event log
    reports = cli(tmp_path, "consolidate")
    assert reports[0]["thread_id"] == result.thread_id and reports[0]["evicted"] > 0  # type: ignore[index]
    assert any(r.strategy == "summary" for r in mem.ltm.list("default"))
    assert cli(tmp_path, "consolidate") == []  # nothing pending: idempotent
    worker = ConsolidationWorker(mem, client.services.events, interval=3600)
    worker.start()
    worker.stop()
    worker.join(timeout=30)
    assert worker.passes == 1 and run_pass(mem, client.services.events) == []
