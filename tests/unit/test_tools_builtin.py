"""Built-in tools: safe arithmetic, time, JSON reshaping, HTTP fetch behind an allowlist."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stepwise.tools.builtin import allowed, calculator, current_time, http_fetch, json_transform


def test_calculator_walks_the_syntax_tree_and_rejects_code() -> None:
    assert calculator("17 * 23") == 391
    assert calculator("(2 + 3) ** 2 / 5 - -1") == 6.0
    assert calculator("7 × 6") == 42
    for evil in ["__import__('os').system('id')", "open('/etc/passwd')", "(1).__class__", "[1, 2]", "2 ** 1000"]:
        with pytest.raises(ValueError):
            calculator(evil)


def test_current_time_in_a_timezone() -> None:
    assert current_time().endswith("+00:00")
    assert current_time("Asia/Kolkata").endswith("+05:30")
    with pytest.raises(ValueError, match="unknown timezone"):
        current_time("Mars/Olympus")


def test_json_transform_selects_and_reshapes() -> None:
    data = {"user": {"name": "Ada", "langs": ["en", "fr"]}, "n": 3}
    assert json_transform(data, path="$.user.langs[1]") == "fr"
    assert json_transform(data, template={"who.$": "$.user.name", "fixed": 1, "nested": {"count.$": "$.n"}}) == {
        "who": "Ada",
        "fixed": 1,
        "nested": {"count": 3},
    }
    with pytest.raises(ValueError, match="give a path"):
        json_transform(data)


def test_allowlist() -> None:
    hosts = ["api.example.com", "*.internal.test", "127.0.0.1:8080"]
    assert allowed("https://api.example.com/v1", hosts)
    assert allowed("http://a.b.internal.test/x", hosts)
    assert allowed("http://127.0.0.1:8080/", hosts)
    assert not allowed("http://127.0.0.1:9090/", hosts)
    assert not allowed("https://evil.com/?u=api.example.com", hosts)
    assert not allowed("file:///etc/passwd", hosts)
    assert not allowed("https://api.example.com/", [])


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            body = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_fetch_only_reaches_allowlisted_hosts(http_server: str) -> None:
    result = asyncio.run(http_fetch(f"http://{http_server}/hello", [http_server]))
    assert result["status"] == 200 and json.loads(result["body"]) == {"path": "/hello"}
    with pytest.raises(PermissionError, match="not on the HTTP allowlist"):
        asyncio.run(http_fetch(f"http://{http_server}/hello", ["api.example.com"]))
