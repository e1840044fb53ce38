"""Double texting on one thread through the API: reject, enqueue, interrupt — with a run really in flight."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from stepwise.api.app import create_app
from stepwise.api.keys import create_key
from stepwise.api.settings import ApiSettings
from stepwise.client import Stepwise
from stepwise.store.memory import MemoryApiStore

GATE = threading.Event()
STARTED = threading.Event()


def slow(state: dict[str, Any]) -> dict[str, Any]:
    """Blocks until the test opens the gate: a run that is verifiably in flight."""
    STARTED.set()
    assert GATE.wait(30)
    return {"log": ["slow"]}


def after(state: dict[str, Any]) -> dict[str, Any]:
    return {"log": ["after"]}


GRAPH = {
    "name": "texting",
    "state": {"log": "append"},
    "graph": {
        "nodes": {"slow": {"fn": f"{__name__}:slow"}, "after": {"fn": f"{__name__}:after"}},
        "edges": [{"from": "slow", "to": "after"}],
        "entry": "slow",
    },
}


@pytest.fixture
def api() -> Any:
    GATE.clear()
    STARTED.clear()
    store = MemoryApiStore()
    _, key = create_key(store, "acme")
    settings = ApiSettings(backend="memory", api_allowed_modules=("statemachines.", __name__), api_max_wait_seconds=20)
    app = create_app(lambda: Stepwise.in_memory(), store=store, settings=settings)

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        out = app(
            {
                "path": path,
                "httpMethod": method,
                "headers": {"x-api-key": key, "content-type": "application/json"},
                "requestContext": {},
                "body": json.dumps(body) if body is not None else None,
            }
        )
        return int(out["statusCode"]), json.loads(out["body"])

    assert call("POST", "/agents", {"graph": GRAPH})[0] == 201
    yield call
    GATE.set()


def in_flight(call: Any) -> dict[str, Any]:
    status, run = call("POST", "/agents/texting/execute", {"thread_id": "t1", "background": True})
    assert status == 202 and STARTED.wait(10)
    return run  # type: ignore[no-any-return]


def test_reject_answers_409_thread_busy(api: Any) -> None:
    first = in_flight(api)
    status, body = api("POST", "/agents/texting/execute", {"thread_id": "t1", "multitask": "reject"})
    assert status == 409 and body["error"]["code"] == "thread_busy"
    GATE.set()
    assert api("GET", f"/runs/{first['run_id']}")[1]["status"] in ("running", "succeeded")


def test_interrupt_cancels_the_run_in_flight_and_runs_from_the_state_it_reached(api: Any) -> None:
    first = in_flight(api)
    threading.Timer(0.5, GATE.set).start()  # the first run's node finishes after the interrupt
    status, second = api("POST", "/agents/texting/execute", {"thread_id": "t1", "multitask": "interrupt", "wait_seconds": 10})
    assert status == 200 and second["status"] == "succeeded"
    for _ in range(100):  # the first run's background thread notices the cancel at its next step
        if api("GET", f"/runs/{first['run_id']}")[1]["status"] != "running":
            break
        time.sleep(0.05)
    assert api("GET", f"/runs/{first['run_id']}")[1]["status"] == "cancelled"
    events = api("GET", f"/runs/{first['run_id']}/events")[1]["events"]
    assert not any(e["node"] == "after" for e in events)  # it stopped before its next node


def test_enqueue_answers_queued_at_once_and_runs_after_the_run_in_flight(api: Any) -> None:
    first = in_flight(api)
    status, second = api("POST", "/agents/texting/execute", {"thread_id": "t1", "multitask": "enqueue"})
    assert status == 202 and second["status"] == "queued"  # recorded, not waited for: the first run is still blocked
    assert api("GET", f"/runs/{first['run_id']}")[1]["status"] == "running"
    GATE.set()  # the first run ends; its run-end path starts the queued one
    for _ in range(400):
        if api("GET", f"/runs/{second['run_id']}")[1]["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    assert api("GET", f"/runs/{first['run_id']}")[1]["status"] == "succeeded"
    done = api("GET", f"/runs/{second['run_id']}")[1]
    assert done["status"] == "succeeded" and done["state"]["log"] == ["slow", "after", "slow", "after"]  # one after the other


def test_rollback_cancels_the_run_in_flight_and_discards_its_writes(api: Any) -> None:
    GATE.set()
    status, done = api("POST", "/agents/texting/execute", {"thread_id": "t1", "input": {"note": "kept"}})
    assert status == 200 and done["state"]["log"] == ["slow", "after"]
    GATE.clear()
    STARTED.clear()
    status, doomed = api("POST", "/agents/texting/execute", {"thread_id": "t1", "input": {"note": "discard me"}, "background": True})
    assert status == 202 and STARTED.wait(10)
    threading.Timer(0.5, GATE.set).start()  # its node lands its write after the rollback arrives: it is discarded too
    status, third = api("POST", "/agents/texting/execute", {"thread_id": "t1", "multitask": "rollback", "wait_seconds": 10})
    assert status == 200 and third["status"] == "succeeded"
    assert third["state"] == {"note": "kept", "log": ["slow", "after", "slow", "after"]}  # as if the doomed run never ran
    rolled = api("GET", f"/runs/{doomed['run_id']}")[1]
    assert rolled["status"] == "cancelled" and rolled["error"]["error"] == "Stepwise.RolledBack"
    events = api("GET", f"/runs/{doomed['run_id']}/events")[1]["events"]
    assert [e["type"] for e in events][-1] == "rolled_back"  # the log keeps its events, then the marker
    assert any(e["type"] == "node_update" and e["node"] == "slow" for e in events)  # its late write is in the log...
    assert api("GET", "/threads/t1/state")[1]["state"] == third["state"]  # ...and in no state read


def test_the_fold_skips_a_rolled_back_runs_writes_even_after_the_marker() -> None:
    from stepwise.state.events import NODE_UPDATE, ROLLED_BACK, RUN_STARTED, Event
    from stepwise.state.fold import fold

    log = [
        Event(type=RUN_STARTED, run_id="a", data={"update": {"x": 1}}, seq=1),
        Event(type=RUN_STARTED, run_id="b", data={"update": {"x": 2}}, seq=2),
        Event(type=NODE_UPDATE, run_id="b", data={"update": {"y": 2}}, seq=3),
        Event(type=ROLLED_BACK, run_id="b", data={"run_id": "b", "state": {"x": 1}}, seq=4),
        Event(type=NODE_UPDATE, run_id="b", data={"update": {"z": "late"}}, seq=5),
        Event(type=NODE_UPDATE, run_id="c", data={"update": {"y": 3}}, seq=6),
    ]
    assert fold({}, log, {}, (), lambda seq: log[seq - 1]) == {"x": 1, "y": 3}
    assert fold({}, log[:3], {}, (), lambda seq: log[seq - 1]) == {"x": 2, "y": 2}  # before the marker: as it was
