"""Real MCP servers: the built-in tool server run as a subprocess over stdio and over streamable HTTP on
127.0.0.1, reached through the registry (capability check, cached schemas, idempotency keys in _meta),
and used by an agent inside a run."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.llm.base import ToolCall
from stepwise.state.events import TOOL_CALL
from stepwise.tools.executor import ActionExecutor
from stepwise.tools.registry import ToolRegistry, UnknownTool

SERVER = [sys.executable, "-m", "stepwise.tools.server"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([*SERVER, "--http", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    try:
        while True:  # wait until it accepts connections (or fail loudly at the deadline)
            assert proc.poll() is None, "the MCP HTTP server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the MCP HTTP server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def registry() -> Iterator[ToolRegistry]:
    reg = ToolRegistry()
    yield reg
    reg.close()


def exercise(registry: ToolRegistry, server: str) -> None:
    specs = registry.specs([f"{server}/calculator", f"{server}/echo"])
    assert [s.name for s in specs] == [f"{server}/calculator", f"{server}/echo"]
    assert specs[0].parameters["properties"]["expression"]["type"] == "string"
    conn = registry.run(registry.connection(server))
    assert conn.capabilities.tools is not None  # negotiated: the server offers tools
    assert registry.run(registry.connection(server)) is conn  # one session per server, schemas cached on it

    calls = [
        ToolCall(id="a", name=f"{server}/calculator", arguments={"expression": "6 * 7"}),
        ToolCall(id="b", name=f"{server}/echo", arguments={"text": "hi"}),
        ToolCall(id="c", name=f"{server}/calculator", arguments={"expression": "__import__('os')"}),
    ]
    calc, echo, bad = ActionExecutor(registry).run(calls, key_prefix="run-1||agent|run|3")
    assert calc.ok and calc.result == 42
    assert echo.ok and echo.result == {"text": "hi", "idempotency_key": "run-1||agent|run|3|tool|b"}  # the key reached the server
    assert not bad.ok and bad.attempts == 1 and "calculator accepts numbers" in str(bad.error)


def test_stdio_server(registry: ToolRegistry) -> None:
    registry.add_server("local", command=SERVER)
    exercise(registry, "local")


def test_streamable_http_server(registry: ToolRegistry, http_server: str) -> None:
    registry.add_server("remote", url=http_server)
    exercise(registry, "remote")


def test_builtins_are_an_in_process_mcp_server(registry: ToolRegistry) -> None:
    assert [s.name for s in registry.specs(["calculator", "current_time", "json_transform", "http_fetch"])] == [
        "calculator",
        "current_time",
        "json_transform",
        "http_fetch",
    ]
    [out] = ActionExecutor(registry).run(
        [ToolCall(id="x", name="json_transform", arguments={"data": {"a": [1, 2]}, "path": "$.a[1]"})], key_prefix="k"
    )
    assert out.ok and out.result == 2
    [denied] = ActionExecutor(registry).run([ToolCall(id="y", name="http_fetch", arguments={"url": "http://127.0.0.1:1/"})], key_prefix="k")
    assert not denied.ok and "allowlist" in str(denied.error)


def test_unknown_servers_and_tools_fail_clearly(registry: ToolRegistry) -> None:
    with pytest.raises(UnknownTool, match="no MCP server 'nope' is registered"):
        registry.specs(["nope/tool"])
    with pytest.raises(UnknownTool, match="has no tool 'missing'; it offers: calculator"):
        registry.specs(["missing"])
    with pytest.raises(ValueError, match="cannot contain '/'"):
        registry.add_server("a/b", command=SERVER)


def test_a_server_that_cannot_start_is_an_observation(registry: ToolRegistry) -> None:
    registry.add_server("ghost", command=[sys.executable, "-c", "raise SystemExit(3)"], timeout_seconds=5)

    async def no_wait(_: float) -> None:
        return None

    [out] = ActionExecutor(registry, sleep=no_wait).run([ToolCall(id="g", name="ghost/x", arguments={})], key_prefix="k")
    assert not out.ok and out.attempts == 3 and "did not start" in str(out.error)


AGENT = """
name: mcp-agent
state: {messages: append}
graph:
  nodes:
    solve:
      kind: agent
      model: scripted
      tools: [local/calculator]
      config: {loop: fused, max_iterations: 4}
      script:
        - {tool_calls: [{name: local/calculator, arguments: {expression: "12 * 12"}}]}
        - "12 × 12 = 144"
  entry: solve
"""


def test_an_agent_uses_a_stdio_mcp_tool_inside_a_run(registry: ToolRegistry) -> None:
    registry.add_server("local", command=SERVER)
    client = Stepwise.in_memory()
    client.services.tool_registry = registry
    result = client.run(load_text(AGENT, source="mcp-agent.yaml"), {"messages": [{"role": "user", "content": "12 squared?"}]})
    assert result.status == "succeeded", result.error
    assert [m.get("content") for m in result.state["messages"]] == ["12 squared?", "", "144", "12 × 12 = 144"]
    [tool] = [e for e in client.history(result.thread_id) if e.type == TOOL_CALL]
    assert tool.data["tool"] == "local/calculator" and tool.data["result"] == 144 and tool.key == tool.data["idempotency_key"]
