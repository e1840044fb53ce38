"""API fuzz: schemathesis generates requests from docs/openapi.json against a real local ``serve``
(uvicorn, embedded store); no request may get a 5xx. The counts are printed at the end of the session.
Default: a few examples per operation; ``make chaos`` (``STEPWISE_CHAOS=full``) many more."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from tests.chaos.counts import COUNTS

schemathesis = pytest.importorskip("schemathesis")

from stepwise.api.keys import create_key  # noqa: E402
from stepwise.api.server import make_server  # noqa: E402
from stepwise.store.sqlite import SqliteApiStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("STEPWISE_CHAOS") == "full"
schema = schemathesis.openapi.from_path(str(ROOT / "docs" / "openapi.json"))
GRAPH = "name: tiny\ngraph:\n  nodes:\n    a: {fn: 'statemachines.examples.nodes:fetch'}\n  entry: a\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    home = tmp_path_factory.mktemp("fuzz") / ".stepwise"
    _, key = create_key(SqliteApiStore(home / "api.db"), "acme")
    srv = make_server("127.0.0.1", 0, home).start()
    host, port = srv.server_address[:2]
    base = f"http://{host}:{port}"
    import httpx

    httpx.post(f"{base}/agents", json={"yaml": GRAPH}, headers={"x-api-key": key}, timeout=30)  # something to find
    try:
        yield base, key
    finally:
        srv.shutdown()
        srv.server_close()


@schema.parametrize()
@settings(
    max_examples=60 if FULL else 6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_request_gets_a_5xx(case: Any, served: tuple[str, str]) -> None:
    base, key = served
    headers = dict(case.headers or {})
    headers.setdefault("x-api-key", key)
    if case.path_parameters and "agent_id" in case.path_parameters and case.operation.method.upper() == "POST":
        case.path_parameters["agent_id"] = "tiny"  # reach the handlers, not only the 404s
    if isinstance(case.body, dict) and "wait_seconds" in case.body:
        case.body["wait_seconds"] = 0  # fuzz the inputs, not the server's patience
    response = case.call(base_url=base, headers=headers, timeout=60)
    COUNTS["fuzz requests"] += 1
    if response.status_code >= 500:
        COUNTS["fuzz 5xx"] += 1
    assert response.status_code < 500, f"{case.operation.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
