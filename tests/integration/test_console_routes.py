"""The console's API routes against a live ``serve``: runs list filters and tenant isolation, an agent
version's compiled graph, per-agent stats, and the static pages (public, confined to their folder)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepwise.api.console import percentile, static_response

EXAMPLE = Path(__file__).resolve().parents[2] / "statemachines" / "examples" / "human_approval.yaml"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Any]:
    from stepwise.api.keys import create_key
    from stepwise.api.server import make_server

    server = make_server("127.0.0.1", 0, tmp_path / "home").start()
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


def test_runs_list_filters_and_isolates_tenants(live: Any) -> None:
    live("POST", "/agents", {"yaml": EXAMPLE.read_text()})
    live("POST", "/agents", {"yaml": EXAMPLE.read_text()}, tenant="other")
    first = live("POST", "/agents/human-approval/execute", {"input": {"amount": 1}})
    live("POST", f"/runs/{first['run_id']}/resume", {"input": {"decision": "no"}})
    second = live("POST", "/agents/human-approval/execute", {"input": {"amount": 2}})
    live("POST", "/agents/human-approval/execute", {"input": {"amount": 3}}, tenant="other")

    listed = live("GET", "/runs")
    assert [r["run_id"] for r in listed["runs"]] == [second["run_id"], first["run_id"]]  # newest first, own tenant only
    assert listed["agents"] == ["human-approval"] and listed["total"] == 2
    waiting = live("GET", "/runs?status=waiting")["runs"]
    assert [(r["run_id"], r["waiting_node"]) for r in waiting] == [(second["run_id"], "approve")]
    done = live("GET", "/runs?status=succeeded")["runs"][0]
    assert done["duration_s"] is not None and done["duration_s"] >= 0
    assert live("GET", "/runs?agent=nope")["runs"] == []
    assert len(live("GET", "/runs?limit=1")["runs"]) == 1
    with pytest.raises(urllib.error.HTTPError) as bad:
        live("GET", "/runs?status=bogus")
    assert bad.value.code == 422


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
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0 and percentile(list(map(float, range(1, 101))), 95) == 95.0
