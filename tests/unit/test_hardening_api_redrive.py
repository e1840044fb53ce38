"""``POST /runs/{id}/redrive``: a failed run re-runs from its failed node, tenant-scoped, one winner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support import counted
from tests.unit.test_api_routes import Harness, error_code, make

from stepwise.api.settings import ApiSettings

CHAIN = """
name: chain
state: {trail: append}
graph:
  nodes:
    a: {kind: function, fn: "tests.support.counted:a"}
    b: {kind: function, fn: "tests.support.counted:b"}
    c: {kind: function, fn: "tests.support.counted:c"}
  edges:
    - {from: a, to: b}
    - {from: b, to: c}
  entry: a
"""


@pytest.fixture
def h() -> Iterator[Harness]:
    counted.CALLS.clear()
    counted.FAIL_ONCE.clear()
    yield make(ApiSettings(backend="memory", api_allowed_modules=("tests.support.counted",)))
    counted.FAIL_ONCE.clear()


def test_a_failed_run_is_redriven_from_its_failed_node_through_the_api(h: Harness) -> None:
    assert h("POST", "/agents", {"yaml": CHAIN}).status == 201
    counted.FAIL_ONCE.add("b")
    run = h("POST", "/agents/chain/execute", {"input": {}}).body
    assert run["status"] == "failed" and run["error"]["node"] == "b"
    other = h("POST", f"/runs/{run['run_id']}/redrive", {}, tenant="globex")  # another tenant's run does not exist
    assert other.status == 404
    done = h("POST", f"/runs/{run['run_id']}/redrive", {"wait_seconds": 0})
    assert done.status == 200 and done.body["status"] == "succeeded", done.body
    assert done.body["state"]["trail"] == ["a", "b", "c"]
    assert counted.CALLS == {"a": 1, "b": 2, "c": 1}  # `a` completed before the failure: not run again
    again = h("POST", f"/runs/{run['run_id']}/redrive", {})
    assert again.status == 409 and error_code(again) == "run_not_failed"
    assert [k for k, _, _ in h.sink.events][-2:] == ["run.redriven", "run.succeeded"]
    assert h("POST", f"/runs/{run['run_id']}/redrive", {"wait_seconds": -1}).status == 422
