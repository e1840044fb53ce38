"""`stepwise serve`: the API handler behind a real HTTP server on 127.0.0.1, hit with real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from stepwise.api.keys import create_key
from stepwise.api.server import make_server
from stepwise.store.sqlite import SqliteApiStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "statemachines" / "examples"


def http(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("content-type", content_type)
    if key:
        request.add_header("x-api-key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    home = tmp_path / ".stepwise"
    store = SqliteApiStore(home / "api.db")
    keys = {tenant: create_key(store, tenant)[1] for tenant in ("acme", "globex")}
    server = make_server("127.0.0.1", 0, home).start()
    try:
        yield server.url, keys
    finally:
        server.shutdown()
        server.server_close()


def test_register_execute_and_resume_over_http(served: tuple[str, dict[str, str]]) -> None:
    base, keys = served
    assert http(base, "GET", "/health") == (200, {"status": "ok", "version": "0.1.0"})
    assert http(base, "GET", "/agents")[0] == 401

    status, created = http(
        base, "POST", "/agents", raw=(EXAMPLES / "human_approval.yaml").read_bytes(), content_type="application/yaml", key=keys["acme"]
    )
    assert status == 201 and created["agent"] == "human-approval"
    status, run = http(base, "POST", "/agents/human-approval/execute", {"input": {"amount": 12}}, key=keys["acme"])
    assert status == 200 and run["status"] == "waiting" and run["waiting"]["node"] == "approve"

    assert http(base, "GET", f"/runs/{run['run_id']}", key=keys["globex"])[0] == 404
    status, done = http(base, "POST", f"/runs/{run['run_id']}/resume", {"input": {"decision": "yes"}}, key=keys["acme"])
    assert status == 200 and done["status"] == "succeeded" and done["state"]["amount"] == 12

    status, state = http(base, "GET", f"/threads/{run['thread_id']}/state?at=1", key=keys["acme"])
    assert status == 200 and state["state"] == {"amount": 12}
    status, error = http(base, "POST", "/agents/human-approval/execute", {"wait_seconds": "soon"}, key=keys["acme"])
    assert status == 422 and error["error"]["details"][0]["field"] == "body.wait_seconds"


def test_concurrent_requests_keep_their_own_tenant(served: tuple[str, dict[str, str]]) -> None:
    base, keys = served
    for tenant in keys:
        graph = {"name": f"only-{tenant}", "graph": {"nodes": {"a": {"fn": "statemachines.examples.nodes:fetch"}}, "entry": "a"}}
        assert http(base, "POST", "/agents", {"graph": graph}, key=keys[tenant])[0] == 201

    def listing(tenant: str) -> tuple[str, list[str]]:
        return tenant, [a["id"] for a in http(base, "GET", "/agents", key=keys[tenant])[1]["agents"]]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(listing, ["acme", "globex"] * 12))
    assert all(ids == [f"only-{tenant}"] for tenant, ids in results)


def test_percent_encoded_path_segments_reach_the_routes_decoded(served: tuple[str, dict[str, str]]) -> None:
    """The console asks for ``/threads/${encodeURIComponent(id)}/events``: a thread id with ':' was a 404, as was
    ``/agents/human%2Dapproval``. An encoded '/' stays inside its segment (it never reaches another route)."""
    base, keys = served
    yaml_body = (EXAMPLES / "human_approval.yaml").read_bytes()
    assert http(base, "POST", "/agents", raw=yaml_body, content_type="application/yaml", key=keys["acme"])[0] == 201
    status, run = http(base, "POST", "/agents/human-approval/execute", {"input": {"amount": 3}, "thread_id": "chat:42"}, key=keys["acme"])
    assert status == 200 and run["thread_id"] == "chat:42"
    status, page = http(base, "GET", "/threads/chat%3A42/events", key=keys["acme"])
    assert status == 200 and page["events"][0]["type"] == "run_started"
    assert http(base, "GET", "/agents/human%2Dapproval", key=keys["acme"])[0] == 200
    status, error = http(base, "GET", "/agents/human%2Fapproval", key=keys["acme"])
    assert status == 404 and "human%2Fapproval" in error["error"]["message"]


@pytest.mark.slow
def test_stepwise_serve_cli_starts_prints_its_url_and_stops(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stepwise.cli", "serve", "--port", "0", "--home", str(home)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Stepwise API listening on http://127.0.0.1:"), first + (
            proc.stderr.read() if proc.poll() is not None else ""
        )
        base = first.split(" on ", 1)[1].split(" ", 1)[0]
        hint = "".join(proc.stdout.readline() for _ in range(3))
        assert "stepwise keys create --tenant default" in hint
        _, key = create_key(SqliteApiStore(home / "api.db"), "default")
        status, _ = http(base, "POST", "/agents", {"yaml": (EXAMPLES / "sequential.yaml").read_text()}, key=key)
        assert status == 201
        status, run = http(base, "POST", "/agents/sequential/execute", {}, key=key)
        assert status == 200 and run["state"]["log"] == ["fetch", "clean", "summarize"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0
