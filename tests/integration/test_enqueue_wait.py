"""Double texting through a real `stepwise serve` (uvicorn on 127.0.0.1): a queued run's ``wait_seconds``
waits for the drain to start and finish it, and answers like any run; a short wait answers 202 ``queued``.
The run ahead is held at a human node until the test answers it: no timing decides the outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepwise.api.keys import create_key
from stepwise.api.server import LocalServer, make_server
from stepwise.api.settings import ApiSettings
from stepwise.remote import Client
from stepwise.store.sqlite import SqliteApiStore


def note(state: dict[str, Any]) -> dict[str, Any]:
    """Logs which input the run had: the log's order is the order the runs ran in."""
    return {"log": [state["note"]]}


GRAPH = {
    "name": "queueing",
    "state": {"log": "append"},
    "graph": {
        "nodes": {"note": {"fn": f"{__name__}:note"}, "approve": {"kind": "human", "prompt": "go on?"}},
        "conditional_edges": [{"from": "note", "conditions": [{"if": "state.ask == 'yes'", "then": "approve"}, {"else": "__end__"}]}],
        "entry": "note",
    },
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[httpx.Client]:
    home = tmp_path / ".stepwise"
    _, key = create_key(SqliteApiStore(home / "api.db"), "acme")
    settings = ApiSettings(api_allowed_modules=("statemachines.", __name__), api_max_wait_seconds=30)
    srv: LocalServer = make_server("127.0.0.1", 0, home, settings=settings).start()
    try:
        with httpx.Client(base_url=srv.url, headers={"x-api-key": key}, timeout=60) as client:
            assert client.post("/agents", json={"graph": GRAPH}).status_code == 201
            yield client
    finally:
        srv.shutdown()
        srv.server_close()


def waiting_first(api: httpx.Client) -> dict[str, Any]:
    """A run on thread t1 that waits at `approve` until the test answers it."""
    first = api.post("/agents/queueing/execute", json={"thread_id": "t1", "input": {"note": "first", "ask": "yes"}})
    assert first.status_code == 200 and first.json()["status"] == "waiting", first.text
    return first.json()  # type: ignore[no-any-return]


def queued_ids(api: httpx.Client) -> list[str]:
    return [r["run_id"] for r in api.get("/runs", params={"status": "queued"}).json()["runs"]]


@pytest.mark.parametrize("via", ["http", "remote-client"])
def test_a_queued_run_with_wait_seconds_answers_its_final_state(api: httpx.Client, via: str) -> None:
    first = waiting_first(api)
    answer: dict[str, tuple[int, dict[str, Any]]] = {}
    body = {"thread_id": "t1", "input": {"note": "second", "ask": "no"}, "multitask": "enqueue", "wait_seconds": 25}

    def enqueue() -> None:
        if via == "http":
            out = api.post("/agents/queueing/execute", json=body)
            answer["second"] = (out.status_code, out.json())
            return
        with Client(str(api.base_url), api_key=api.headers["x-api-key"]) as sw:  # stepwise.remote, as `--url` uses it
            run = sw.execute("queueing", body["input"], thread_id="t1", multitask="enqueue", wait_seconds=25)
            answer["second"] = (200 if run.status not in ("queued", "running") else 202, run.model_dump(mode="json"))

    request = threading.Thread(target=enqueue)
    request.start()
    for _ in range(600):  # the request has recorded its run as queued (the first run still waits: it cannot start)
        if queued := queued_ids(api):
            break
        time.sleep(0.05)
    assert len(queued) == 1 and request.is_alive()  # recorded, and the request still waits for it
    resumed = api.post(f"/runs/{first['run_id']}/resume", json={"input": {"decision": "go"}})
    assert resumed.status_code == 200 and resumed.json()["status"] == "succeeded"
    request.join(60)
    code, run = answer["second"]
    assert code == 200, run  # answered as a run that ended, not 202 queued
    assert run["run_id"] == queued[0] and run["status"] == "succeeded"
    assert run["state"]["log"] == ["first", "second"]  # it ran after the first, with its own input


def test_a_queued_run_whose_wait_runs_out_answers_202_queued(api: httpx.Client) -> None:
    first = waiting_first(api)
    body = {"thread_id": "t1", "input": {"note": "second", "ask": "no"}, "multitask": "enqueue", "wait_seconds": 0.2}
    second = api.post("/agents/queueing/execute", json=body)  # the first run waits for the test: the wait runs out
    assert second.status_code == 202 and second.json()["status"] == "queued", second.text
    assert queued_ids(api) == [second.json()["run_id"]]
    waited = api.post(f"/runs/{first['run_id']}/resume", json={"input": {"decision": "go"}, "wait_seconds": 25})
    assert waited.json()["status"] == "succeeded"
    for _ in range(600):  # the first run's end started the queued one
        run = api.get(f"/runs/{second.json()['run_id']}").json()
        if run["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert run["status"] == "succeeded" and run["state"]["log"] == ["first", "second"]


def test_reject_by_name_refuses_a_waiting_run_naming_it(api: httpx.Client) -> None:
    first = waiting_first(api)
    body = {"thread_id": "t1", "input": {"note": "second", "ask": "no"}, "multitask": "reject"}
    refused = api.post("/agents/queueing/execute", json=body)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "thread_busy" and first["run_id"] in error["message"] and "enqueue" in error["message"]
    assert api.get(f"/runs/{first['run_id']}").json()["status"] == "waiting"  # untouched
    assert [r["run_id"] for r in api.get("/runs").json()["runs"]] == [first["run_id"]]  # nothing recorded for the refusal
