"""Security rows of the hardening probe: tenants cannot write into others' threads; ``fn:`` resolves only
to plain functions defined in an allowed module."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.test_api_routes import EXAMPLES, error_code, make

from stepwise.api.policy import plain_function_problem
from stepwise.client import Stepwise
from stepwise.graph.loader import load_file


def test_a_tenant_cannot_execute_on_a_thread_started_by_the_cli() -> None:
    client = Stepwise.in_memory()
    h = make(client=client)
    cli_run = client.run(load_file(EXAMPLES / "sequential.yaml"), {"secret": "s3cr3t"})  # tenant "default", no owner record
    h.register("sequential", tenant="globex")
    hijack = h("POST", "/agents/sequential/execute", {"thread_id": cli_run.thread_id}, tenant="globex")
    assert hijack.status == 404 and error_code(hijack) == "thread_not_found"
    assert h("GET", f"/threads/{cli_run.thread_id}/state", tenant="globex").status == 404
    assert [r.tenant for r in client.runs(thread_id=cli_run.thread_id)] == ["default"]  # nothing written


def test_a_tenant_cannot_take_a_cli_fork_and_can_continue_its_own_thread() -> None:
    client = Stepwise.in_memory()
    h = make(client=client)
    cli_run = client.run(load_file(EXAMPLES / "sequential.yaml"), {})
    forked = client.fork(cli_run.thread_id, 1)  # events, no runs, no owner
    h.register("sequential")
    assert h("POST", "/agents/sequential/execute", {"thread_id": forked}).status == 404
    own = h("POST", "/agents/sequential/execute", {}).body
    again = h("POST", "/agents/sequential/execute", {"thread_id": own["thread_id"]})
    assert again.status == 200 and again.body["thread_id"] == own["thread_id"]


@pytest.mark.parametrize(
    ("fn", "reason"),
    [
        ("stepwise.tools.server:main", "entry point"),
        ("stepwise.tools.builtin:operator", "not a plain function"),
        ("stepwise.tools.builtin:ToolSpec", "not a plain function"),  # a class, re-exported
        ("stepwise.tools.builtin:http_fetch", "not a plain function"),  # a coroutine function
        ("stepwise.tools.builtin:current_time", None),
        ("stepwise.tools.registry:nothing_here", "does not exist"),
    ],
)
def test_fn_must_be_a_plain_function_defined_in_the_module(fn: str, reason: str | None) -> None:
    problem = plain_function_problem(fn)
    assert (problem is None) if reason is None else (reason in str(problem)), problem


def test_the_api_refuses_a_cli_main_as_a_node() -> None:
    h = make()
    graph = {"name": "evil", "graph": {"nodes": {"a": {"kind": "function", "fn": "stepwise.tools.server:main"}}, "entry": "a"}}
    reply = h("POST", "/agents", {"graph": graph})
    assert reply.status == 422 and error_code(reply) == "invalid_graph"
    assert "entry point" in reply.body["error"]["message"]
    graph["graph"]["nodes"]["a"]["fn"] = "stepwise.tools.builtin:operator"
    assert h("POST", "/agents", {"graph": graph}).status == 422


def test_every_example_still_registers_over_the_api(tmp_path: Path) -> None:
    h = make()
    for example in ("sequential", "parallel", "conditional", "human_approval"):
        h.register(example)
