"""`stepwise serve` as an HTTP server: load without resets, held connections, slow clients, strict framing.

Each test reproduces a finding against the old stdlib server (listen backlog 5, a thread per
connection, ``Content-Length: -1`` trusted, chunked bodies executed as a second request).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stepwise.api.keys import create_key
from stepwise.api.server import LocalServer, ServeLimits, make_server
from stepwise.store.sqlite import SqliteApiStore

GRAPH = {"name": "tiny", "graph": {"nodes": {"a": {"fn": "statemachines.examples.nodes:fetch"}}, "entry": "a"}}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LocalServer, str]]:
    home = tmp_path / ".stepwise"
    _, key = create_key(SqliteApiStore(home / "api.db"), "acme")
    limits = ServeLimits(workers=8, header_timeout=1.0, body_timeout=1.0)
    srv = make_server("127.0.0.1", 0, home, limits=limits).start()
    try:
        yield srv, key
    finally:
        srv.shutdown()
        srv.server_close()


def exchange(srv: LocalServer, *pieces: bytes, wait: float = 10.0) -> tuple[bytes, bool]:
    """Send `pieces` (each its own send) on a fresh connection and read until the server closes it (or `wait`
    passes): what came back, and whether the server closed the connection."""
    with socket.create_connection(srv.server_address, timeout=wait) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            sock.sendall(piece)
        chunks = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
        return b"".join(chunks), False


def raw(srv: LocalServer, data: bytes, *, wait: float = 10.0) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it (or `wait` passes)."""
    return exchange(srv, data, wait=wait)[0]


def error_of(answer: bytes) -> tuple[int, str, dict[str, str]]:
    """The status, lower-cased headers and ``error.code`` of one raw JSON error answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    assert headers.get("content-type") == "application/json", answer[:300]
    return int(status_line.split()[1]), json.loads(body)["error"]["code"], headers


def request(srv: LocalServer, method: str, path: str, body: object = None, key: str | None = None) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection(*srv.server_address, timeout=30)
    try:
        headers = {"content-type": "application/json"}
        if key:
            headers["x-api-key"] = key
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_300_executes_at_50_concurrent_clients_get_no_resets_and_no_5xx(server: tuple[LocalServer, str]) -> None:
    srv, key = server
    assert request(srv, "POST", "/agents", {"graph": GRAPH}, key)[0] == 201

    def one(_: int) -> str:
        try:
            status, run = request(srv, "POST", "/agents/tiny/execute", {"input": {}}, key)
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            return type(exc).__name__
        return f"{status}:{run.get('status')}"

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(one, range(300)))
    counts = {o: outcomes.count(o) for o in set(outcomes)}
    print(f"300 executes at 50 clients: {counts}")
    assert counts == {"200:succeeded": 300}
    status, _ = request(srv, "GET", "/agents/tiny", None, key)
    assert status == 200


def test_a_thousand_held_connections_do_not_take_health_down(server: tuple[LocalServer, str]) -> None:
    srv, _ = server
    held: list[socket.socket] = []
    try:
        for i in range(1000):
            sock = socket.create_connection(srv.server_address, timeout=10)
            if i % 2:
                sock.sendall(b"POST /agents HTTP/1.1\r\nHost: x\r\n")  # half the headers, then silence
            held.append(sock)
        assert request(srv, "GET", "/health") == (200, {"status": "ok", "version": "0.1.0"})
        # and the server lets go of them: a client that never finishes its headers is closed
        held[1].settimeout(10)
        assert held[1].recv(1024) == b""
    finally:
        for sock in held:
            sock.close()
    assert request(srv, "GET", "/health")[0] == 200


def test_a_body_that_never_arrives_gets_408(server: tuple[LocalServer, str]) -> None:
    srv, key = server
    answer = raw(srv, f"POST /agents HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Length: 100\r\n\r\n{{".encode())
    assert answer.startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: -1\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip, chunked, identity\r\n",
        b"Content-Length: +5\r\n",
        b"Content-Length: 5\r\nContent-Length: 5\r\n",  # h11 keeps one of equal lengths
        b"Content-Length: 5, 5\r\n",
    ],
)
def test_bad_framing_is_refused_with_400(server: tuple[LocalServer, str], headers: bytes) -> None:
    srv, _ = server
    answer, closed = exchange(srv, b"POST /agents HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\nhello0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1 and closed
    assert error_of(answer)[1] == "bad_request"


@pytest.mark.parametrize("order", ["te-first", "cl-first"])
def test_chunked_with_content_length_is_refused_even_when_the_chunks_are_valid(server: tuple[LocalServer, str], order: str) -> None:
    """h11 framed such a request by its chunks and served it (200); a proxy framing it by Content-Length would
    see another request boundary, so the server refuses it and closes, before the body reaches the API."""
    srv, key = server
    body = json.dumps({"graph": GRAPH}).encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    framing = [b"Transfer-Encoding: chunked\r\n", f"Content-Length: {len(chunked)}\r\n".encode()]
    if order == "cl-first":
        framing.reverse()
    head = f"POST /agents HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Type: application/json\r\n".encode()
    answer, closed = exchange(srv, head + b"".join(framing) + b"\r\n" + chunked)
    assert error_of(answer)[:2] == (400, "bad_request") and closed
    assert answer.count(b"HTTP/1.1 ") == 1
    assert request(srv, "GET", "/agents", None, key) == (200, {"agents": []})  # nothing was registered


def test_a_bad_request_pipelined_behind_a_good_one_is_refused(server: tuple[LocalServer, str]) -> None:
    """The framing checks run on every request of a connection, not only its first."""
    srv, _ = server
    good = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    bad = b"POST /agents HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
    answer, closed = exchange(srv, good + bad)
    first, _, second = answer.partition(b"HTTP/1.1 400 ")
    assert first.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in first
    assert error_of(b"HTTP/1.1 400 " + second)[1] == "bad_request" and closed


def test_a_malformed_request_line_gets_the_json_error(server: tuple[LocalServer, str]) -> None:
    srv, _ = server
    answer, closed = exchange(srv, b"GET /health HTTP/1.1 extra\r\nHost: x\r\n\r\n")
    assert error_of(answer)[:2] == (400, "bad_request") and closed


def test_header_blocks_over_the_limit_get_431_complete_or_arriving(server: tuple[LocalServer, str]) -> None:
    """h11's max_incomplete_event_size bounds only a block still arriving: a 66-100 KB block read whole was served."""
    srv, _ = server
    limit = srv.limits.max_header_bytes

    def health(pad: int) -> bytes:
        return b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * pad + b"\r\n\r\n"

    fits = health(limit - len(health(0)))
    assert len(fits) == limit
    assert raw(srv, fits + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").count(b"HTTP/1.1 200 ") == 2
    for size in (limit + 1, 66 * 1024, 100 * 1024):
        answer, closed = exchange(srv, health(size - len(health(0))))
        status, code, _ = error_of(answer)
        assert (status, code, closed) == (431, "headers_too_large", True), size
    # a block that never ends, sent in 1 KB pieces: refused once it passes the limit
    start = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: "
    answer, closed = exchange(srv, start, *[b"p" * 1024 for _ in range(limit // 1024 + 1)])
    assert error_of(answer)[:2] == (431, "headers_too_large") and closed


def test_a_request_sent_a_few_bytes_at_a_time_is_served(server: tuple[LocalServer, str]) -> None:
    """The header-block scan resumes where it stopped, so an end of headers split across packets is found."""
    srv, _ = server
    data = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer, closed = exchange(srv, *[data[i : i + 3] for i in range(0, len(data), 3)])
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in answer and closed


def test_a_chunked_body_is_one_body_not_a_smuggled_second_request(server: tuple[LocalServer, str]) -> None:
    srv, key = server
    smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    body = json.dumps({"graph": GRAPH}).encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    head = f"POST /agents HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Type: application/json\r\nConnection: close\r\n"
    answer = raw(srv, head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    assert answer.startswith(b"HTTP/1.1 201 ") and answer.count(b"HTTP/1.1 ") == 1
    # a body that *looks* like a request stays a body: one (422) answer, no /health answer
    sneaky = f"{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n"
    answer = raw(srv, head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + sneaky)
    assert answer.count(b"HTTP/1.1 ") == 1 and b'"status":"ok"' not in answer


def test_oversized_bodies_get_413_declared_or_chunked(server: tuple[LocalServer, str]) -> None:
    """Refused unread, and the client, still sending, reads the 413: the server closes lingering (it drops what
    keeps coming) instead of resetting the connection, which lost the answer for every client sending 4× the
    limit and for 1 in 20 sending just past it."""
    srv, key = server
    limit = srv.api.settings.api_max_body_bytes
    head = f"POST /agents HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n"
    answer = raw(srv, f"{head}Content-Length: {limit + 1}\r\n\r\n".encode())  # refused before the body is sent
    assert answer.startswith(b"HTTP/1.1 413 ")
    answer = raw(srv, f"{head}Content-Length: {4 * limit}\r\n\r\n".encode() + b"x" * (4 * limit))  # ... and as it is sent
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.count(b"HTTP/1.1 ") == 1
    big = b"x" * 65536
    for size in (limit + len(big), 4 * limit):
        chunks = b"".join(f"{len(big):x}\r\n".encode() + big + b"\r\n" for _ in range(size // len(big) + 1))
        answer = raw(srv, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks)
        assert answer.startswith(b"HTTP/1.1 413 ") and answer.count(b"HTTP/1.1 ") == 1


def test_keep_alive_serves_several_requests_on_one_connection(server: tuple[LocalServer, str]) -> None:
    srv, key = server
    conn = http.client.HTTPConnection(*srv.server_address, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/agents", headers={"x-api-key": key})
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"agents": []}
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/health", "GET"),
        ("PUT", "/agents", "GET, POST"),
        ("GET", "/agents/tiny/execute", "POST"),
        ("PATCH", "/runs/run-1", "GET"),
        ("POST", "/agents/tiny/webhook", "DELETE, GET, PUT"),
    ],
)
def test_a_known_path_under_another_method_gets_405_with_allow(server: tuple[LocalServer, str], method: str, path: str, allow: str) -> None:
    """It answered 404, as for a path that does not exist."""
    srv, key = server
    answer = raw(srv, f"{method} {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    status, code, headers = error_of(answer)
    assert (status, code, headers.get("allow")) == (405, "method_not_allowed", allow)


def test_an_unknown_path_stays_404(server: tuple[LocalServer, str]) -> None:
    srv, key = server
    answer = raw(srv, f"DELETE /nowhere HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n".encode())
    status, code, headers = error_of(answer)
    assert (status, code, "allow" in headers) == (404, "not_found", False)
