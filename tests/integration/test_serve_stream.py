"""Live run streams over `stepwise serve`: SSE with token deltas, waiting, resume, Last-Event-ID, tenancy."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.support.moto_sfn import wait_for

from stepwise.api.keys import create_key
from stepwise.api.server import LocalServer, make_server
from stepwise.store.sqlite import SqliteApiStore

GRAPH = """
name: chatty
graph:
  nodes:
    draft:
      kind: agent
      model: scripted
      system: "Draft a reply."
      config: {stream: true}
      script: ["Refunds under fifty dollars are approved automatically."]
    approve: {kind: human, prompt: "Send it?"}
    send: {kind: function, fn: "statemachines.examples.nodes:fetch"}
  edges:
    - {from: draft, to: approve}
    - {from: approve, to: send}
  entry: draft
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LocalServer, dict[str, str]]]:
    home = tmp_path / ".stepwise"
    store = SqliteApiStore(home / "api.db")
    keys = {tenant: create_key(store, tenant)[1] for tenant in ("acme", "globex")}
    srv = make_server("127.0.0.1", 0, home).start()
    try:
        yield srv, keys
    finally:
        srv.shutdown()
        srv.server_close()


def call(srv: LocalServer, method: str, path: str, body: Any = None, key: str | None = None, **headers: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*srv.server_address, timeout=30)
    try:
        sent = {"content-type": "application/yaml" if isinstance(body, str) else "application/json", **headers}
        if key:
            sent["x-api-key"] = key
        data = body if isinstance(body, str) else (json.dumps(body) if body is not None else None)
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def frames(srv: LocalServer, run_id: str, key: str, last_event_id: str | None = None) -> Iterator[dict[str, Any]]:
    """The stream's frames, one by one, as they arrive (the connection closes when the generator does)."""
    conn = http.client.HTTPConnection(*srv.server_address, timeout=30)
    headers = {"x-api-key": key, "accept": "text/event-stream"}
    if last_event_id is not None:
        headers["last-event-id"] = last_event_id
    conn.request("GET", f"/runs/{run_id}/stream", headers=headers)
    response = conn.getresponse()
    assert response.status == 200, response.read()
    assert response.getheader("content-type", "").startswith("text/event-stream")
    frame: dict[str, Any] = {}
    try:
        while True:
            line = response.fp.readline().decode()
            if not line:
                return
            line = line.rstrip("\n")
            if line == "":
                if "data" in frame:
                    yield frame
                frame = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                frame[name] = json.loads(value) if name == "data" else value
    finally:
        conn.close()


def sse_events(srv: LocalServer, run_id: str, key: str, last_event_id: str | None = None, until: str = "end") -> list[dict[str, Any]]:
    """Read the stream until an `until` event (or the server closes it)."""
    events: list[dict[str, Any]] = []
    for frame in frames(srv, run_id, key, last_event_id):
        events.append(frame)
        if frame.get("event") == until:
            break
    return events


def test_a_run_streams_token_deltas_log_events_waiting_and_end(served: tuple[LocalServer, dict[str, str]]) -> None:
    srv, keys = served
    assert call(srv, "POST", "/agents", GRAPH, keys["acme"])[0] == 201
    status, run = call(srv, "POST", "/agents/chatty/execute", {"input": {"ticket": 7}, "background": True}, keys["acme"])
    assert status in (200, 202)
    run_id = run["run_id"]

    first = sse_events(srv, run_id, keys["acme"], until="interrupt")  # the run pauses at the human node
    kinds = [e["event"] for e in first]
    logged = [e["event"] for e in first if "id" in e]  # live events (no id) may arrive while the log is read
    assert logged[0] == "run_started" and kinds[-1] == "interrupt"
    assert "node_update" in kinds and "llm_call" in kinds
    ids = [int(e["id"]) for e in first if "id" in e]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert all("id" not in e for e in first if e["event"] in ("llm_delta", "node_started"))

    status, _ = call(srv, "POST", f"/runs/{run_id}/resume", {"input": {"ok": True}}, keys["acme"])
    assert status == 200
    # reconnect where we left off: only what came after, then `end`
    rest = sse_events(srv, run_id, keys["acme"], last_event_id=str(ids[-1]))
    assert rest[-1]["event"] == "end" and rest[-1]["data"] == {"run_id": run_id, "status": "succeeded"}
    rest_ids = [int(e["id"]) for e in rest if "id" in e]
    assert rest_ids and min(rest_ids) > ids[-1]
    assert "run_finished" in [e["event"] for e in rest]

    # the whole log again from the start: every durable event once, in order
    replay = sse_events(srv, run_id, keys["acme"])
    status, page = call(srv, "GET", f"/runs/{run_id}/events", None, keys["acme"])
    assert [int(e["id"]) for e in replay if "id" in e] == [e["seq"] for e in page["events"]]


ASK_FIRST = """
name: ask-first
graph:
  nodes:
    ask: {kind: human, prompt: "Topic?"}
    write:
      kind: agent
      model: scripted
      system: "Write."
      config: {stream: true}
      script: ["Streams deliver every word while the model is still writing."]
  edges:
    - {from: ask, to: write}
  entry: ask
"""


def test_token_deltas_reach_an_open_stream_while_the_agent_writes(served: tuple[LocalServer, dict[str, str]]) -> None:
    srv, keys = served
    assert call(srv, "POST", "/agents", ASK_FIRST, keys["acme"])[0] == 201
    _, run = call(srv, "POST", "/agents/ask-first/execute", {}, keys["acme"])
    assert run["status"] == "waiting"
    stream = frames(srv, run["run_id"], keys["acme"])
    seen = []
    for frame in stream:  # the stream is subscribed once it has replayed the interrupt
        seen.append(frame)
        if frame["event"] == "interrupt":
            break
    with ThreadPoolExecutor(max_workers=1) as pool:
        resumed = pool.submit(call, srv, "POST", f"/runs/{run['run_id']}/resume", {"input": {"topic": "sse"}}, keys["acme"])
        for frame in stream:
            seen.append(frame)
            if frame["event"] == "end":
                break
        assert resumed.result(timeout=30)[0] == 200
    kinds = [f["event"] for f in seen]
    deltas = [f["data"]["text"] for f in seen if f["event"] == "llm_delta"]
    assert "".join(deltas) == "Streams deliver every word while the model is still writing." and len(deltas) == 10
    assert kinds.index("node_started") < kinds.index("llm_delta") < kinds.index("llm_call") < kinds.index("run_finished")
    assert seen[-1]["data"]["status"] == "succeeded"


def test_streams_are_tenant_scoped_and_authenticated(served: tuple[LocalServer, dict[str, str]]) -> None:
    srv, keys = served
    assert call(srv, "POST", "/agents", GRAPH, keys["acme"])[0] == 201
    _, run = call(srv, "POST", "/agents/chatty/execute", {}, keys["acme"])
    conn = http.client.HTTPConnection(*srv.server_address, timeout=10)
    for headers, expected in (({}, 401), ({"x-api-key": keys["globex"]}, 404), ({"x-api-key": keys["acme"], "last-event-id": "x"}, 422)):
        conn.request("GET", f"/runs/{run['run_id']}/stream", headers=headers)
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == expected and "error" in body
    conn.close()


def test_many_clients_get_the_same_stream(served: tuple[LocalServer, dict[str, str]]) -> None:
    srv, keys = served
    assert call(srv, "POST", "/agents", GRAPH, keys["acme"])[0] == 201
    _, run = call(srv, "POST", "/agents/chatty/execute", {"background": True}, keys["acme"])
    run_path = f"/runs/{run['run_id']}"
    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(sse_events, srv, run["run_id"], keys["acme"], None, "end") for _ in range(20)]
        try:
            # The run executes in the background: resume only once it waits at `approve`. (Resuming earlier
            # answered 409 under load, the run then waited forever and its heartbeating streams never ended.)
            wait_for(lambda: call(srv, "GET", run_path, None, keys["acme"])[1]["status"] == "waiting", "the run to wait at approve")
            status, _ = call(srv, "POST", f"{run_path}/resume", {"input": {"ok": True}, "wait_seconds": 10}, keys["acme"])
            streams = [f.result(timeout=60) for f in futures]
        finally:  # whatever failed, end the run so every stream ends and the pool can shut down
            if not all(f.done() for f in futures):
                call(srv, "POST", f"{run_path}/cancel", {}, keys["acme"])
    logged = [[int(e["id"]) for e in s if "id" in e] for s in streams]
    assert status == 200 and all(ids == logged[0] for ids in logged) and all(s[-1]["event"] == "end" for s in streams)
