"""Tool resource limits: a wall and CPU budget enforced outside the tool, bounded output, streamed fetches."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from stepwise.tools import limits
from stepwise.tools.builtin import MAX_FETCH_BYTES, calculator, http_fetch
from stepwise.tools.registry import ToolRegistry

HERE = "tests.unit.test_hardening_tools"


def spin() -> None:
    while True:
        pass


def nap() -> None:
    time.sleep(3600)


def big() -> str:
    return "x" * 1000


def test_the_calculator_refuses_an_exponent_tower_before_computing_it() -> None:
    with pytest.raises(ValueError, match="digits"):
        calculator("(((9**99)**99)**99)**99")
    with pytest.raises(ValueError, match="digits"):
        calculator("9**99*9**99" + "*9**99" * 40)
    assert calculator("(9**99)**2") == 9**198
    assert calculator("2.5 ** 3") == 15.625


def test_a_cpu_bound_tool_is_stopped_by_its_cpu_budget() -> None:
    with pytest.raises(limits.ToolLimitError, match="CPU budget"):
        limits.run_bounded(f"{HERE}:spin", {}, limits.ToolBudget(wall_seconds=120, cpu_seconds=1))


def test_a_stuck_tool_is_stopped_by_its_wall_budget() -> None:
    with pytest.raises(limits.ToolLimitError, match="wall budget"):
        limits.run_bounded(f"{HERE}:nap", {}, limits.ToolBudget(wall_seconds=0.5, cpu_seconds=5))


def test_output_is_bounded_and_errors_keep_their_type() -> None:
    with pytest.raises(limits.ToolLimitError, match="output budget"):
        limits.run_bounded(f"{HERE}:big", {}, limits.ToolBudget(max_output_bytes=100))
    with pytest.raises(ValueError, match="exponent too large"):
        limits.run_bounded("calculator", {"expression": "2**1000"})
    assert limits.run_bounded("calculator", {"expression": "6*7"}) == 42


def test_agents_get_the_refusal_as_a_tool_error_through_mcp() -> None:
    registry = ToolRegistry()
    try:
        with pytest.raises(Exception, match="digits"):
            registry.run(registry.acall("calculator", {"expression": "(((9**99)**99)**99)**99"}, idempotency_key="k"))
        assert registry.run(registry.acall("calculator", {"expression": "6*7"}, idempotency_key="k2")) == 42
    finally:
        registry.close()


@pytest.fixture
def huge_body_server() -> Iterator[tuple[str, dict[str, int]]]:
    sent = {"bytes": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(50 * 1024 * 1024))
            self.end_headers()
            chunk = b"a" * 65536
            try:
                for _ in range(50 * 16):
                    self.wfile.write(chunk)
                    sent["bytes"] += len(chunk)
            except OSError:
                return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}", sent
    httpd.shutdown()
    httpd.server_close()


def test_http_fetch_streams_and_stops_at_the_cap(huge_body_server: tuple[str, dict[str, Any]]) -> None:
    host, sent = huge_body_server
    result = asyncio.run(http_fetch(f"http://{host}/big", [host]))
    assert len(result["body"]) == MAX_FETCH_BYTES and result["truncated"] is True
    assert sent["bytes"] < 50 * 1024 * 1024  # the client hung up long before the end
