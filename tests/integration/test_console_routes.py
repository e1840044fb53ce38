"""The console's API routes against a live ``serve``: the runs list (filters, pages, tenant isolation,
operators), a thread's timeline across runs and forks, an agent version's compiled graph, per-agent stats,
the static pages (public, confined to their folder), and the spend each run records."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepwise.api.console import static_response
from stepwise.api.routes.console import percentile
from stepwise.api.settings import ApiSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "statemachines" / "examples" / "human_approval.yaml"


@contextlib.contextmanager
def serving(home: Path, settings: ApiSettings | None = None) -> Iterator[Any]:
    """A local server on ``home`` with ``settings`` (default: none from the environment), and a caller."""
    from stepwise.api.keys import create_key
    from stepwise.api.server import make_server

    server = make_server("127.0.0.1", 0, home, settings=settings or ApiSettings()).start()
    keys = {t: create_key(server.api.store, t)[1] for t in ("default", "other")}

    def call(method: str, path: str, body: Any = None, tenant: str = "default") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            server.url + path, data=data, method=method, headers={"x-api-key": keys[tenant], "content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.loads(res.read() or b"null")

    call.url = server.url  # type: ignore[attr-defined]
    try:
        yield call
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Any]:
    with serving(tmp_path / "home") as call:
        yield call


def test_runs_list_filters_and_isolates_tenants(live: Any) -> None:
    live("POST", "/agents", {"yaml": EXAMPLE.read_text()})
    live("POST", "/agents", {"yaml": EXAMPLE.read_text()}, tenant="other")
    first = live("POST", "/agents/human-approval/execute", {"input": {"amount": 1}})
    live("POST", f"/runs/{first['run_id']}/resume", {"input": {"decision": "no"}})
    second = live("POST", "/agents/human-approval/execute", {"input": {"amount": 2}})
    live("POST", "/agents/human-approval/execute", {"input": {"amount": 3}}, tenant="other")

    listed = live("GET", "/runs")
    assert [r["run_id"] for r in listed["runs"]] == [second["run_id"], first["run_id"]]  # newest first, own tenant only
    assert listed["agents"] == ["human-approval"] and listed["next_cursor"] is None
    assert all(r["tenant"] == "default" for r in listed["runs"])
    waiting = live("GET", "/runs?status=waiting")["runs"]
    assert [(r["run_id"], r["waiting_node"]) for r in waiting] == [(second["run_id"], "approve")]
    done = live("GET", "/runs?status=succeeded")["runs"][0]
    assert done["duration_s"] is not None and done["duration_s"] >= 0
    assert live("GET", "/runs?agent=nope")["runs"] == []
    one = live("GET", "/runs?limit=1")
    assert [r["run_id"] for r in one["runs"]] == [second["run_id"]] and one["next_cursor"]
    rest = live("GET", f"/runs?limit=1&cursor={one['next_cursor']}")
    assert [r["run_id"] for r in rest["runs"]] == [first["run_id"]] and rest["next_cursor"] is None
    created = {r["run_id"]: r["created_at"] for r in listed["runs"]}
    assert [r["run_id"] for r in live("GET", f"/runs?until={created[second['run_id']]}")["runs"]] == [first["run_id"]]
    assert [r["run_id"] for r in live("GET", f"/runs?since={created[second['run_id']]}")["runs"]] == [second["run_id"]]
    assert live("GET", "/runs?min_cost=0.01")["runs"] == []  # the scripted example spends nothing
    assert len(live("GET", "/runs?max_cost=0")["runs"]) == 2
    for bad_query in ("status=bogus", "cursor=nope", "min_cost=-1", "agent=a%40b"):
        with pytest.raises(urllib.error.HTTPError) as bad:
            live("GET", f"/runs?{bad_query}")
        assert bad.value.code == 422, bad_query
    with pytest.raises(urllib.error.HTTPError) as forbidden:  # only operators name another tenant
        live("GET", "/runs?tenant=other")
    assert forbidden.value.code == 403
    assert len(live("GET", "/runs?tenant=default")["runs"]) == 2  # naming yourself is fine


def test_operators_list_any_tenants_runs(tmp_path: Path) -> None:
    operators = ApiSettings.from_env({"STEPWISE_ADMIN_TENANTS": "default, ops"})  # as `serve` reads it at start-up
    with serving(tmp_path / "home", operators) as live:
        live("POST", "/agents", {"yaml": EXAMPLE.read_text()}, tenant="other")
        theirs = live("POST", "/agents/human-approval/execute", {"input": {"amount": 3}}, tenant="other")
        listed = live("GET", "/runs?tenant=other")
        assert [(r["run_id"], r["tenant"]) for r in listed["runs"]] == [(theirs["run_id"], "other")]
        assert live("GET", "/runs")["runs"] == []  # without `tenant`, an operator still sees its own
        with pytest.raises(urllib.error.HTTPError) as forbidden:  # "other" is no operator: it cannot name "default"
            live("GET", "/runs?tenant=default", tenant="other")
        assert forbidden.value.code == 403


def test_thread_timeline_spans_runs_and_forks(live: Any) -> None:
    live("POST", "/agents", {"yaml": EXAMPLE.read_text()})
    first = live("POST", "/agents/human-approval/execute", {"input": {"amount": 1}})
    live("POST", f"/runs/{first['run_id']}/resume", {"input": {"decision": "yes"}})
    thread = first["thread_id"]
    again = live("POST", "/agents/human-approval/execute", {"input": {"amount": 5}, "thread_id": thread})
    timeline = live("GET", f"/threads/{thread}/events")
    events = timeline["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["run_id"] for e in events} == {first["run_id"], again["run_id"]}  # both runs on one timeline
    assert [r["run_id"] for r in timeline["runs"]] == [again["run_id"], first["run_id"]] and timeline["forked_from"] is None
    assert all("token" not in e["data"] for e in events if e["type"] == "interrupt")  # never the task token
    paged = live("GET", f"/threads/{thread}/events?after=2&limit=3")
    assert [e["seq"] for e in paged["events"]] == [3, 4, 5] and paged["next_after"] == 5

    fork = live("POST", f"/threads/{thread}/fork", {"at": 3})
    forked = live("GET", f"/threads/{fork['thread_id']}/events")
    assert forked["forked_from"] == {"thread_id": fork["thread_id"], "forked_from": thread, "at": 3}
    assert [e["type"] for e in forked["events"]] == ["forked"] and forked["runs"] == []
    on_fork = live("POST", "/agents/human-approval/execute", {"input": {}, "thread_id": fork["thread_id"]})
    later = live("GET", f"/threads/{fork['thread_id']}/events?after=1")
    assert later["forked_from"]["forked_from"] == thread and {e["run_id"] for e in later["events"]} == {on_fork["run_id"]}
    for who, path in (("other", f"/threads/{thread}/events"), ("default", "/threads/ghost/events")):
        with pytest.raises(urllib.error.HTTPError) as hidden:  # another tenant's thread reads as absent
            live("GET", path, tenant=who)
        assert hidden.value.code == 404


def test_graph_and_stats(live: Any) -> None:
    live("POST", "/agents", {"yaml": EXAMPLE.read_text()})
    run = live("POST", "/agents/human-approval/execute", {"input": {"amount": 1}})
    graph = live("GET", "/agents/human-approval/versions/1/graph")
    assert graph["ref"] == run["graph_ref"]
    assert graph["asl"]["States"]["approve"]["Resource"].endswith("waitForTaskToken")  # the compiled document
    assert graph["spec"]["graph"]["nodes"]["approve"]["input"]["decision"]["enum"] == ["yes", "no", "revise"]
    for path in ("/agents/human-approval/versions/9/graph", "/agents/ghost/versions/1/graph"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            live("GET", path)
        assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as hidden:  # another tenant's agent reads as absent
        live("GET", "/agents/human-approval/versions/1/graph", tenant="other")
    assert hidden.value.code == 404
    stats = live("GET", "/stats/agents")
    assert [(a["agent"], a["runs"], a["by_status"]) for a in stats["agents"]] == [("human-approval", 1, {"waiting": 1})]
    (agent,) = stats["agents"]
    assert list(agent["spend_per_day"].values()) == [0.0] and list(agent["runs_per_day"].values()) == [1]
    assert stats["runs"] == 1 and stats["truncated"] is False
    assert live("GET", "/stats/agents", tenant="other")["agents"] == []


def test_pages_are_public_and_data_is_not(live: Any) -> None:
    with urllib.request.urlopen(live.url + "/console/app.js", timeout=10) as res:
        assert res.headers["content-type"].startswith("text/javascript")
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(live.url + "/runs", timeout=10)
    assert anonymous.value.code == 401


def test_static_response_and_percentile() -> None:
    assert static_response("POST", "/") is None and static_response("GET", "/runs") is None
    page = static_response("GET", "/")
    assert page is not None and page["statusCode"] == 200 and "frame-ancestors 'none'" in page["headers"]["Content-Security-Policy"]
    missing = static_response("GET", "/console/../app.py")
    assert missing is not None and missing["statusCode"] == 404
    assert (static_response("GET", "/console") or {}).get("body") == page["body"]  # relative links resolve from both
    for elsewhere in ("/console/", "/console/index.html"):  # from there `console/app.js` would miss: point to /
        answer = static_response("GET", elsewhere)
        assert answer is not None and answer["statusCode"] == 404 and "is at /" in answer["body"]
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0 and percentile(list(map(float, range(1, 101))), 95) == 95.0


def test_the_python_example_in_the_console_docs_runs(tmp_path: Path) -> None:
    """docs/console.md's "The same reads from Python" block, run as a script (in a scratch folder that
    sees the repo's statemachines/): it lists the run it made and prints its thread's timeline."""
    import os
    import subprocess
    import sys

    root = EXAMPLE.parents[2]
    text = (root / "docs" / "console.md").read_text()
    block = text.split("## The same reads from Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "statemachines").symlink_to(root / "statemachines")
    script = tmp_path / "example.py"
    script.write_text(block)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "shared"), str(root)])}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, timeline = done.stdout.splitlines()[-2:]
    assert first.startswith("run-") and " sequential@" in first and " succeeded 0.0 0" in first
    assert timeline == "['run_started', 'node_update', 'node_update', 'node_update', 'run_finished']"
