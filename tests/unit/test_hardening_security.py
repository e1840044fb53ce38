"""Security rows of the hardening probe: tenants cannot write into others' threads; ``fn:`` resolves only
to plain functions defined in an allowed module."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.test_api_routes import EXAMPLES, error_code, make

from stepwise.api.policy import plain_function_problem
from stepwise.client import Stepwise
from stepwise.graph.loader import load_file


def test_a_tenant_naming_a_cli_thread_gets_a_thread_of_its_own() -> None:
    """The CLI's thread belongs to its runs' tenant; another tenant naming it gets a thread of its own."""
    client = Stepwise.in_memory()
    h = make(client=client)
    cli_run = client.run(load_file(EXAMPLES / "sequential.yaml"), {"secret": "s3cr3t"})  # tenant "default", no owner record
    assert h("GET", f"/threads/{cli_run.thread_id}/state", tenant="globex").status == 404
    h.register("sequential", tenant="globex")
    own = h("POST", "/agents/sequential/execute", {"thread_id": cli_run.thread_id}, tenant="globex")
    assert own.status == 200 and own.body["thread_id"] == cli_run.thread_id and "secret" not in own.body["state"]
    assert [r.tenant for r in client.runs(thread_id=cli_run.thread_id)] == ["default"]  # nothing written to the CLI's thread
    assert client.state(cli_run.thread_id)[1]["secret"] == "s3cr3t"
    assert "secret" not in h("GET", f"/threads/{cli_run.thread_id}/state", tenant="globex").body["state"]


def test_a_tenant_naming_a_cli_fork_gets_a_thread_of_its_own_and_continues_its_own() -> None:
    client = Stepwise.in_memory()
    h = make(client=client)
    cli_run = client.run(load_file(EXAMPLES / "sequential.yaml"), {})
    forked = client.fork(cli_run.thread_id, 1)  # events, no runs, no owner
    head = client.head(forked)
    h.register("sequential")
    taken = h("POST", "/agents/sequential/execute", {"thread_id": forked})
    assert taken.status == 200 and taken.body["thread_id"] == forked
    assert client.head(forked) == head and client.runs(thread_id=forked) == []  # the fork itself untouched
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
