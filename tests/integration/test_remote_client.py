"""stepwise.remote: the sync and async clients against a real `stepwise serve` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepwise.api import models as m
from stepwise.api.keys import create_key
from stepwise.api.server import LocalServer, make_server
from stepwise.remote import AsyncClient, Client, RemoteError
from stepwise.store.sqlite import SqliteApiStore

GRAPH = """
name: remote-demo
graph:
  nodes:
    draft: {kind: agent, model: scripted, system: "Draft.", config: {stream: true}, script: ["a short streamed draft"]}
    approve: {kind: human, prompt: "Ship it?"}
  edges:
    - {from: draft, to: approve}
  entry: draft
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LocalServer, str]]:
    home = tmp_path / ".stepwise"
    _, key = create_key(SqliteApiStore(home / "api.db"), "acme")
    srv = make_server("127.0.0.1", 0, home).start()
    try:
        yield srv, key
    finally:
        srv.shutdown()
        srv.server_close()


def test_sync_client_drives_a_run_and_streams_it(served: tuple[LocalServer, str]) -> None:
    srv, key = served
    with Client(srv.url, api_key=key) as sw:
        first = sw.register(yaml=GRAPH)
        assert isinstance(first, m.VersionResult) and first.version == 1
        assert sw.register(yaml=GRAPH.replace("Draft.", "Draft!")).version == 2  # exists: a new version
        run = sw.execute("remote-demo", {"ticket": 1})
        assert isinstance(run, m.Run) and run.status == "waiting" and run.waiting and run.waiting.node == "approve"
        done = sw.resume(run.run_id, {"ok": True})
        assert done.status == "succeeded" and done.state and done.state["ok"] is True
        events = list(sw.stream(run.run_id))
        assert events[-1].event == "end" and events[-1].data["status"] == "succeeded"
        logged = [e.id for e in events if e.id is not None]
        assert logged == [e.seq for e in sw.history(run.run_id)]
        assert [e.id for e in sw.stream(run.run_id, last_event_id=logged[-2])] == [logged[-1], None]  # resumes after an id
        assert sw.state(run.thread_id).state["ok"] is True
        with pytest.raises(RemoteError) as err:
            sw.cancel(run.run_id)
        assert err.value.status == 409 and err.value.code == "run_finished"
    with Client(srv.url, api_key="swk_acme_0000000000000000_nope") as bad, pytest.raises(RemoteError) as err:
        bad.agents()
    assert err.value.status == 401


def test_async_client_streams_token_deltas(served: tuple[LocalServer, str]) -> None:
    srv, key = served

    async def main() -> list[str]:
        async with AsyncClient(srv.url, api_key=key) as sw:
            await sw.register(yaml=GRAPH)
            run = await sw.execute("remote-demo", background=True)
            kinds = []
            async for event in sw.stream(run.run_id):
                kinds.append(event.event)
                if event.event == "interrupt":
                    await sw.resume(run.run_id, {"ok": True})
            assert (await sw.run(run.run_id)).status == "succeeded"
            return kinds

    kinds = asyncio.run(main())
    assert kinds[0] == "run_started" and kinds[-1] == "end" and "interrupt" in kinds and "run_finished" in kinds


def test_cli_remote_runs_resumes_and_reads_against_serve(served: tuple[LocalServer, str], tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    srv, key = served
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "STEPWISE_URL": srv.url, "STEPWISE_API_KEY": key, "PYTHONPATH": os.pathsep.join([str(root / "shared"), str(root)])}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stepwise.cli", "remote", *args], capture_output=True, text=True, env=env, timeout=120)

    started = cli("run", str(graph), "--input", '{"ticket": 9}')
    assert started.returncode == 0, started.stderr
    run = json.loads(started.stdout)
    assert run["status"] == "waiting" and "✓ draft" in started.stderr and "approve waits" in started.stderr  # followed live
    done = cli("resume", run["run_id"], "--input", '{"ok": true}')
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "succeeded"
    lines = cli("history", run["run_id"]).stdout.splitlines()
    assert json.loads(lines[-1])["type"] == "run_finished"
    assert json.loads(cli("state", run["thread_id"]).stdout)["state"]["ticket"] == 9
    refused = cli("cancel", run["run_id"])
    assert refused.returncode == 2 and "409 run_finished" in refused.stderr
    env["STEPWISE_API_KEY"] = "swk_acme_0000000000000000_wrong"
    assert "401" in cli("status", run["run_id"]).stderr


def test_a_401_names_where_the_cli_reads_the_key(served: tuple[LocalServer, str], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    srv, _ = served
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("STEPWISE_API_KEY", "STEPWISE_TOKEN", "STEPWISE_PROFILE")}
    env |= {"STEPWISE_URL": srv.url, "PYTHONPATH": os.pathsep.join([str(root / "shared"), str(root)]), "COLUMNS": "300"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stepwise.cli", *args], capture_output=True, text=True, env=env, timeout=120)

    missing = cli("runs")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "401 unauthorized" in missing.stderr and "the CLI sent no key: pass --api-key or set STEPWISE_API_KEY" in missing.stderr
    env["STEPWISE_KEY"] = "swk_acme_0000000000000000_unread"  # the wrong variable: still no key sent
    assert "the CLI sent no key" in cli("remote", "agents").stderr
    wrong = cli("runs", "--api-key", "swk_acme_0000000000000000_wrong")
    assert wrong.returncode == 2 and "401 unauthorized" in wrong.stderr
    assert "the key sent was refused: the CLI reads --api-key, then the --profile's, then STEPWISE_API_KEY" in wrong.stderr


def test_runs_are_listed_newest_first_in_pages_and_per_tenant(served: tuple[LocalServer, str], tmp_path: Path) -> None:
    srv, key = served
    _, other = create_key(SqliteApiStore(tmp_path / ".stepwise" / "api.db"), "globex")
    with Client(srv.url, api_key=key) as sw, Client(srv.url, api_key=other) as rival:
        sw.register(yaml=GRAPH)
        started = [sw.execute("remote-demo", {"n": i}).run_id for i in range(5)]
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = sw.runs(limit=2, cursor=cursor)
            pages += 1
            assert len(page.runs) <= 2
            seen += [r.run_id for r in page.runs]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert pages == 3 and seen == list(reversed(started))  # every run once, newest first
        assert [r.run_id for r in sw.runs(status="waiting", agent="remote-demo", limit=10).runs] == list(reversed(started))
        thread = sw.run(started[0]).thread_id
        assert [r.run_id for r in sw.thread(thread).runs] == [started[0]]
        assert rival.runs().runs == []  # another tenant sees none
        with pytest.raises(RemoteError) as hidden:
            rival.thread(thread)
        assert hidden.value.status == 404


def test_the_main_cli_commands_take_url_and_api_key(served: tuple[LocalServer, str], tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    srv, key = served
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH)
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPWISE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(root / "shared"), str(root)])
    workdir = tmp_path / "elsewhere"  # no local store appears here: everything goes to the API
    workdir.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "stepwise.cli", *args, "--url", srv.url, "--api-key", key]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, cwd=workdir)

    started = cli("run", str(graph), "--input", '{"ticket": 4}')
    assert started.returncode == 0, started.stderr
    run = json.loads(started.stdout)
    assert run["status"] == "waiting" and "approve waits" in started.stderr
    listed = json.loads(cli("runs").stdout)
    assert [r["run_id"] for r in listed["runs"]] == [run["run_id"]] and listed["runs"][0]["waiting_node"] == "approve"
    done = cli("resume", run["run_id"], "--input", '{"ok": true}')
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "succeeded"
    kinds = [json.loads(line)["type"] for line in cli("history", run["thread_id"]).stdout.splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert json.loads(cli("state", run["thread_id"]).stdout)["state"]["ticket"] == 4
    refused = cli("cancel", run["run_id"])
    assert refused.returncode == 2 and "409 run_finished" in refused.stderr
    assert not (workdir / ".stepwise").exists()
    # a profile file instead of flags
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps({"dev": {"url": srv.url, "api_key": key}}))
    out = subprocess.run(
        [sys.executable, "-m", "stepwise.cli", "runs", "--profile", "dev"],
        capture_output=True,
        text=True,
        env={**env, "STEPWISE_PROFILES": str(profiles)},
        timeout=120,
        cwd=workdir,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["runs"][0]["run_id"] == run["run_id"]


def test_enqueue_through_the_client_and_the_cli_shows_queued(served: tuple[LocalServer, str], tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    srv, key = served
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH)
    with Client(srv.url, api_key=key) as sw:
        sw.register(yaml=GRAPH)
        first = sw.execute("remote-demo", {"n": 1}, thread_id="q1")
        assert first.status == "waiting"
        queued = sw.execute("remote-demo", {"n": 2}, thread_id="q1", multitask="enqueue")
        assert isinstance(queued, m.Run) and queued.status == "queued"
        root = Path(__file__).resolve().parents[2]
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEPWISE_")}
        env["PYTHONPATH"] = os.pathsep.join([str(root / "shared"), str(root)])
        argv = [sys.executable, "-m", "stepwise.cli", "run", str(graph), "--input", '{"n": 3}', "--thread", "q1"]
        out = subprocess.run(
            [*argv, "--multitask", "enqueue", "--url", srv.url, "--api-key", key], capture_output=True, text=True, env=env, timeout=120
        )
        assert out.returncode == 0, out.stderr
        third = json.loads(out.stdout)
        assert third["status"] == "queued" and "queued" in out.stderr
        assert {r.run_id for r in sw.runs(status="queued").runs} == {queued.run_id, third["run_id"]}
        sw.resume(first.run_id, {"ok": True})
        second = sw.run(queued.run_id)
        for _ in range(400):  # the first run's end starts the queued one, which then waits at `approve`
            second = sw.run(queued.run_id)
            if second.status != "queued" and second.status != "running":
                break
            time.sleep(0.05)
        assert second.status == "waiting" and sw.run(third["run_id"]).status == "queued"  # one at a time
