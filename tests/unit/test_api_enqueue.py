"""Durable double texting ``enqueue``: new inputs behind a waiting run are recorded as ``queued`` runs (in the
SQLite run store), answered at once with 202, survive a restart of the engine and server objects, and run in
order, one at a time, once the run in flight ends."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from stepwise.api.app import create_app
from stepwise.api.keys import create_key
from stepwise.api.settings import ApiSettings
from stepwise.client import Stepwise
from stepwise.store.sqlite import SqliteApiStore


def note(state: dict[str, Any]) -> dict[str, Any]:
    """Records which input this run had: the order of the log is the order the runs ran in."""
    return {"log": [state["note"]]}


def done(state: dict[str, Any]) -> dict[str, Any]:
    return {}


GRAPH = {
    "name": "queueing",
    "state": {"log": "append"},
    "graph": {
        "nodes": {
            "note": {"fn": f"{__name__}:note"},
            "approve": {"kind": "human", "prompt": "go on?"},
            "done": {"fn": f"{__name__}:done"},
        },
        "edges": [{"from": "approve", "to": "done"}],
        "conditional_edges": [{"from": "note", "conditions": [{"if": "state.ask == 'yes'", "then": "approve"}, {"else": "done"}]}],
        "entry": "note",
    },
}

Call = Any


def server(home: Path) -> tuple[Call, Call, Any]:
    """A fresh engine (SQLite under ``home``) and API app over the same files: what a process restart gives."""
    store = SqliteApiStore(home / "api.db")
    settings = ApiSettings(backend="memory", api_allowed_modules=("statemachines.", __name__), api_max_wait_seconds=20)
    app = create_app(lambda: Stepwise.embedded(home), store=store, settings=settings)
    keys = {t: create_key(store, t)[1] for t in ("acme", "globex")}

    def caller(tenant: str) -> Call:
        def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            path, _, query = path.partition("?")
            event = {
                "path": path,
                "queryStringParameters": dict(p.split("=", 1) for p in query.split("&")) if query else None,
                "httpMethod": method,
                "headers": {"x-api-key": keys[tenant], "content-type": "application/json"},
                "requestContext": {},
                "body": json.dumps(body) if body is not None else None,
            }
            out = app(event)
            return int(out["statusCode"]), json.loads(out["body"])

        return call

    return caller("acme"), caller("globex"), app


def until_finished(call: Call, run_id: str) -> dict[str, Any]:
    """Poll the run until it ends (bounded: 600 polls), then return it."""
    for _ in range(600):
        status, run = call("GET", f"/runs/{run_id}")
        assert status == 200
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def test_enqueued_inputs_survive_a_restart_and_run_in_order_after_the_run_in_flight(tmp_path: Path) -> None:
    acme, globex, _ = server(tmp_path)
    assert acme("POST", "/agents", {"graph": GRAPH})[0] == 201
    status, first = acme("POST", "/agents/queueing/execute", {"thread_id": "t1", "input": {"note": "first", "ask": "yes"}})
    assert status == 200 and first["status"] == "waiting"
    queued = []
    for text in ("second", "third"):
        body = {"thread_id": "t1", "input": {"note": text, "ask": "no"}, "multitask": "enqueue"}
        status, run = acme("POST", "/agents/queueing/execute", body)
        assert status == 202 and run["status"] == "queued", run  # answered at once, not after a wait
        queued.append(run["run_id"])
    assert [acme("GET", f"/runs/{r}")[1]["status"] for r in queued] == ["queued", "queued"]
    # tenant isolation: another tenant sees neither the queued runs nor the thread
    assert globex("GET", f"/runs/{queued[0]}")[0] == 404
    assert all(r["run_id"] not in queued for r in globex("GET", "/runs")[1]["runs"])
    assert {r["run_id"] for r in acme("GET", "/runs?status=queued")[1]["runs"]} == set(queued)

    acme, globex, _ = server(tmp_path)  # restart: new engine, new app, same files
    assert [acme("GET", f"/runs/{r}")[1]["status"] for r in queued] == ["queued", "queued"]
    status, resumed = acme("POST", f"/runs/{first['run_id']}/resume", {"input": {"decision": "go"}})
    assert status == 200 and resumed["status"] == "succeeded", resumed
    runs = [until_finished(acme, r) for r in queued]
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert acme("GET", "/threads/t1/state")[1]["state"]["log"] == ["first", "second", "third"]  # in order, with their inputs
    events = acme("GET", "/threads/t1/events")[1]["events"]
    starts = [e["run_id"] for e in events if e["type"] == "run_started"]
    assert starts == [first["run_id"], *queued]  # one at a time: each started after the one before it
    ends = [e["run_id"] for e in events if e["type"] in ("run_started", "run_finished")]
    assert ends == [x for r in starts for x in (r, r)], ends  # one at a time: never two started without an end between


def test_enqueue_on_an_idle_thread_starts_at_once_and_a_queued_run_can_be_cancelled(tmp_path: Path) -> None:
    acme, _, _ = server(tmp_path)
    assert acme("POST", "/agents", {"graph": GRAPH})[0] == 201
    status, idle = acme(
        "POST", "/agents/queueing/execute", {"thread_id": "t2", "input": {"note": "a", "ask": "no"}, "multitask": "enqueue"}
    )
    assert status == 200 and idle["status"] == "succeeded"  # nothing in flight: no queue
    status, waiting = acme("POST", "/agents/queueing/execute", {"thread_id": "t2", "input": {"note": "b", "ask": "yes"}})
    assert waiting["status"] == "waiting"
    status, doomed = acme(
        "POST", "/agents/queueing/execute", {"thread_id": "t2", "input": {"note": "c", "ask": "no"}, "multitask": "enqueue"}
    )
    status, kept = acme(
        "POST", "/agents/queueing/execute", {"thread_id": "t2", "input": {"note": "d", "ask": "no"}, "multitask": "enqueue"}
    )
    assert doomed["status"] == kept["status"] == "queued"
    status, cancelled = acme("POST", f"/runs/{doomed['run_id']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    acme("POST", f"/runs/{waiting['run_id']}/resume", {"input": {"decision": "go"}})
    assert until_finished(acme, kept["run_id"])["status"] == "succeeded"
    assert acme("GET", "/runs/" + doomed["run_id"])[1]["status"] == "cancelled"
    assert acme("GET", "/threads/t2/state")[1]["state"]["log"] == ["a", "b", "d"]
