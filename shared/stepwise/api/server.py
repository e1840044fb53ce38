"""``stepwise serve``: the API's Lambda handler behind uvicorn, through a thin ASGI adapter.

Why uvicorn (h11) and not the standard library's ``ThreadingHTTPServer``: the stdlib server listened
with a backlog of 5 (38-75 of 300 requests reset at 50 clients), spent one OS thread per connection
(1,000 idle connections took /health down), trusted ``Content-Length: -1`` and executed a chunked
body as a second request. uvicorn's h11 parser rejects malformed framing (a negative or conflicting
``Content-Length``; what it lets through, ``_StrictConnection`` refuses), idle connections cost a few KB on
one event loop, and the listen backlog is ours to set. bench/serve_load.py measures it side by side
with the old server. The adapter keeps the deployed code path: each request becomes the same API
Gateway proxy event the Lambda handler receives, and the handler's proxy response goes back as HTTP.

What the adapter adds around the handler:
- bounded workers: the handler is synchronous (local runs execute in the request), so it runs on a
  thread pool of ``workers`` threads; at most ``max_queue`` requests wait for one, beyond that 503;
- slow clients: a connection has ``header_timeout`` seconds to send its request line and headers,
  a request ``body_timeout`` seconds to send its body (408), idle keep-alive ends after 5 s;
- strict framing: h11 rejects bad framing with 400, and ``_StrictConnection`` what h11 lets through
  (a repeated ``Content-Length``, even with one value; ``Transfer-Encoding`` beside ``Content-Length``;
  a complete header block over ``max_header_bytes``: 431), each as the API's JSON error; bodies above
  the API's limit get 413 before they are read (and chunked bodies are cut off at the limit). The
  connection then closes lingering: the response is sent and ended, and what the client is still
  sending is read and dropped for up to ``LINGER_SECONDS``, so the client gets its answer rather than a reset;
- ``GET /health`` is answered on the event loop, so liveness holds while every worker is busy;
- ``GET /runs/{id}/stream`` is a live server-sent event stream (``stepwise.api.stream``).

It binds 127.0.0.1 by default. It speaks plain HTTP: put it behind a TLS proxy before exposing it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from stepwise.api.app import create_app
from stepwise.api.asgi import Receive, Scope, Send, send_response
from stepwise.api.facade import StepwiseApi
from stepwise.api.settings import ApiSettings, ServeLimits
from stepwise.config import Settings, build_client

LOOPBACK = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger("stepwise.serve")


def _decoded_path(raw: str) -> str:
    """The path with each segment percent-decoded, as API Gateway hands it to the Lambda (the console sends
    ``/threads/chat%3A42/events``); an encoded ``/`` stays encoded, so it never splits a segment in two."""
    return unquote(raw.replace("%2F", "%252F").replace("%2f", "%252f"))


def to_event(method: str, target: str, headers: dict[str, str], body: bytes, client_ip: str) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for one HTTP request."""
    split = urlsplit(target)
    parts = split._replace(path=_decoded_path(split.path))
    query = parse_qs(parts.query, keep_blank_values=True)
    try:
        text, is_b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode(), True
    return {
        "resource": parts.path,
        "path": parts.path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": uuid.uuid4().hex,
            "stage": "local",
            "httpMethod": method,
            "path": parts.path,
            "identity": {"sourceIp": client_ip},
        },
        "body": text if body else None,
        "isBase64Encoded": is_b64,
    }


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


#: The end of a request's header block, as h11 finds it (a bare LF ends a line too).
_BLANK_LINE = re.compile(rb"\n\r?\n")


def framing_problem(head: bytes) -> str | None:
    """What is wrong with a complete header block's framing that h11 lets through, or None.

    h11 keeps one of several equal ``Content-Length`` fields (``5`` twice, or ``5, 5``) and, given
    ``Transfer-Encoding`` too, frames by the chunks: both legal for RFC 9112, yet a proxy in front that
    framed the other way would see a different request boundary (request smuggling), so both are refused.
    """
    lengths = 0
    chunked = False
    for line in head.split(b"\n")[1:]:
        if line[:1] in (b" ", b"\t") or b":" not in line:
            continue  # a folded continuation (h11 joins it to the field before) or the closing blank line
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            lengths += max(1, len([v for v in value.split(b",") if v.strip()]))
        elif name == b"transfer-encoding":
            chunked = True
    if lengths > 1:
        return "repeated Content-Length: send it once"
    if lengths and chunked:
        return "Transfer-Encoding together with Content-Length: send one of them"
    return None


class BodyError(Exception):
    """A request body the server refuses before routing (too large, malformed)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class AsgiAdapter:
    """ASGI application: HTTP request → API Gateway proxy event → ``api(event)`` on a bounded thread pool."""

    def __init__(self, api: StepwiseApi, limits: ServeLimits | None = None, streams: Any = None) -> None:
        self.api = api
        self.limits = limits or ServeLimits()
        self.max_body = api.settings.api_max_body_bytes
        self.streams = streams  # stepwise.api.stream.RunStreams, or None (no live streaming)
        self._pool: Any = None
        self._waiting = 0

    @property
    def pool(self) -> Any:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=self.limits.workers, thread_name_prefix="stepwise-api")
        return self._pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets are served by API Gateway on AWS; locally SSE does the job
            return
        headers: dict[str, str] = {}
        for raw_key, raw_value in scope["headers"]:
            key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        method = str(scope["method"]).upper()
        path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
        target = path + (("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else "")
        client_ip = (scope.get("client") or ("127.0.0.1", 0))[0]
        try:
            body = await self._read_body(receive, headers)
        except BodyError as exc:
            await send_response(
                send, exc.status, {"content-type": "application/json", "connection": "close"}, _error(exc.code, exc.message)
            )
            return
        event = to_event(method, target, headers, body, client_ip)
        if self.streams is not None and method == "GET" and self.streams.matches(event["path"]):
            await self.streams.serve(self, event, headers, send, receive)
            return
        response: dict[str, Any] | None
        if method == "GET" and urlsplit(target).path == "/health":
            response = self.api(event, None)  # trivial and on the loop: liveness does not queue behind runs
        else:
            response = await self.call(event)
            if response is None:
                await send_response(
                    send, 503, {"content-type": "application/json", "retry-after": "1"}, _error("overloaded", "server busy; retry")
                )
                return
        out = response.get("body") or ""
        payload = base64.b64decode(out) if response.get("isBase64Encoded") else out.encode()
        merged: dict[str, str] = {k: str(v) for k, v in (response.get("headers") or {}).items()}
        for k, values in (response.get("multiValueHeaders") or {}).items():
            merged[k] = ", ".join(str(v) for v in values)
        await send_response(send, int(response["statusCode"]), merged, payload)

    async def call(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Run the handler on a worker thread; None when too many requests already wait for one."""
        response: dict[str, Any] | None = await self.run_sync(self.api, event, None)
        return response

    async def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._waiting >= self.limits.max_queue + self.limits.workers:
            return None
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        finally:
            self._waiting -= 1

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or "," in declared):
            raise BodyError(400, "bad_request", "invalid Content-Length")  # h11 already refuses these; belt and braces
        if declared is not None and int(declared) > self.max_body:
            raise BodyError(413, "payload_too_large", f"request bodies are limited to {self.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise BodyError(400, "bad_request", "client disconnected")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        raise BodyError(413, "payload_too_large", f"request bodies are limited to {self.max_body} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            raise BodyError(408, "request_timeout", f"the body did not arrive within {self.limits.body_timeout:g} s") from None
        return b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.streams is not None:
                    self.streams.bind(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


#: How long a connection closed while its client is still sending (a body refused unread: 413) keeps reading.
LINGER_SECONDS = 2.0


class _LingeringTransport:
    """A connection's transport whose ``close()``, while the client is still sending a request body, lingers.

    Closing a socket with unread input makes the kernel answer with a reset, and a client still sending
    (a chunked body past the limit, refused with 413 before it was read) then loses the response: 5% of
    the clients sending a body just past the limit, all of those sending four times it. Lingering, the
    response is flushed and ended (``write_eof``: a FIN), then what keeps arriving is dropped until the
    client closes or ``LINGER_SECONDS`` pass, as Apache and nginx do. Everything else is the transport's.
    """

    def __init__(self, transport: asyncio.Transport, still_sending: Callable[[], bool]) -> None:
        self._transport = transport
        self._still_sending = still_sending
        self._timer: asyncio.TimerHandle | None = None
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        if not self.lingering and not self._transport.is_closing() and self._still_sending() and self._transport.can_write_eof():
            self.lingering = True
            self._transport.write_eof()
            self._transport.resume_reading()
            self._timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, self._transport.close)
            return
        if self._timer is not None:
            self._timer.cancel()
        self._transport.close()

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()


def _strict_connection(max_header_bytes: int) -> type[Any]:
    """h11's server connection, stricter (``_StrictConnection``); built on first serve, like the protocol."""
    import h11

    class _StrictConnection(h11.Connection):
        """h11's server connection that also refuses, before h11 parses a request's header block, what
        ``framing_problem`` finds and a block over ``max_header_bytes`` even when it arrives complete (h11's
        ``max_incomplete_event_size`` bounds only a block still arriving). Reads h11's receive buffer in
        place: ``trailing_data`` would copy it on every packet of a slowly sent header."""

        refused: h11.RemoteProtocolError | None = None
        _scanned = 0  # how far the buffer is known to hold no end of the header block

        def next_event(self) -> Any:
            try:
                if self.their_state is h11.IDLE:
                    self._check_head()
                return super().next_event()
            except h11.RemoteProtocolError as exc:
                self.refused = exc
                raise

        def _check_head(self) -> None:
            data: bytearray = self._receive_buffer._data
            end = _BLANK_LINE.search(data, max(0, self._scanned - 2), max_header_bytes)
            if end is None:
                self._scanned = len(data)
                if len(data) >= max_header_bytes:
                    self._refuse(431, f"the request line and headers are limited to {max_header_bytes} bytes")
                return
            self._scanned = 0  # h11 takes the block out of the buffer now; the next request starts afresh
            problem = framing_problem(bytes(data[: end.end()]))
            if problem is not None:
                self._refuse(400, problem)

        def _refuse(self, status: int, message: str) -> None:
            self._process_error(self.their_role)  # as h11 does: their_state is ERROR
            raise h11.RemoteProtocolError(message, error_status_hint=status)

    return _StrictConnection


def _strict_h11(header_timeout: float, max_header_bytes: int) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol plus a deadline for the request line and headers (uvicorn has none: a
    client that connects and sends nothing, or a header a byte a minute, would hold its socket forever),
    the framing checks of ``_StrictConnection``, its refusals as the API's JSON error (uvicorn answers
    ``400`` in plain text), and a lingering close while the client is still sending (``_LingeringTransport``)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    strict_connection = _strict_connection(max_header_bytes)

    class StrictH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _linger: _LingeringTransport | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn = strict_connection(h11.SERVER, max_header_bytes)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            # lingering also after a refused request line or headers: the client may still be sending them
            self._linger = _LingeringTransport(transport, lambda: self.conn.their_state in (h11.SEND_BODY, h11.ERROR))
            super().connection_made(cast(asyncio.Transport, self._linger))
            self._arm()

        def send_400_response(self, msg: str) -> None:
            """h11 (or ``_StrictConnection``) refused the request: answer with the API's JSON error and close."""
            exc: h11.RemoteProtocolError | None = getattr(self.conn, "refused", None)
            status = 431 if exc is not None and exc.error_status_hint == 431 else 400
            code = "headers_too_large" if status == 431 else "bad_request"
            detail = str(exc)[:200] if exc is not None else msg
            body = _error(code, f"malformed request: {detail}" if status == 400 else detail)
            headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), (b"connection", b"close")]
            response = h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase.encode())
            self.transport.write(self.conn.send(response) or b"")
            self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
            self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
            self.transport.close()

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def data_received(self, data: bytes) -> None:
            if self._linger is not None and self._linger.lingering:
                return  # the rest of a refused request: dropped
            super().data_received(data)
            if self._between_requests():
                self._arm()  # a partial request line/headers: start (or keep) the clock
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _headers_late(self) -> None:
            self._header_timer = None
            if self._between_requests() and not self.transport.is_closing():
                self.transport.close()

    return StrictH11Protocol


def local_api(home: Path, streams: Any = None, settings: ApiSettings | None = None) -> StepwiseApi:
    """The API on embedded defaults in ``home``: SQLite + files for the engine, api.db for keys and agents.

    ``settings``: the API's (default: read from the environment, here, as the server starts)."""
    api_settings = (settings or ApiSettings.from_env()).model_copy(update={"backend": "embedded", "home": home})
    engine = Settings(backend="embedded", home=home)
    observer = streams.observe if streams is not None else None
    return create_app(lambda: build_client(engine, observer=observer), settings=api_settings)


class LocalServer:
    """uvicorn serving the API on a socket bound at construction (port 0 picks a free one).

    ``serve_forever()`` blocks; ``start()`` serves on a background thread; ``shutdown()`` stops either.
    """

    def __init__(
        self,
        host: str,
        port: int,
        home: str | Path,
        api: StepwiseApi | None = None,
        limits: ServeLimits | None = None,
        settings: ApiSettings | None = None,
    ) -> None:
        """``limits``/``settings`` not given: read from the environment once, here (the server's start)."""
        import uvicorn

        from stepwise.api.stream import RunStreams

        self.limits = limits or ServeLimits.from_env()
        self.streams = RunStreams()
        self.api = api or local_api(Path(home), self.streams, settings)
        if api is not None:
            self.streams.attach(api)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.socket.listen(self.limits.backlog)
        self.socket.setblocking(False)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self.app = AsgiAdapter(self.api, self.limits, self.streams)
        config = uvicorn.Config(
            self.app,
            http=_strict_h11(self.limits.header_timeout, self.limits.max_header_bytes),
            ws="none",
            lifespan="on",
            backlog=self.limits.backlog,
            limit_concurrency=self.limits.max_connections,
            timeout_keep_alive=int(self.limits.keep_alive),
            timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=self.limits.max_header_bytes,
            log_level="warning",
            access_log=False,
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    def serve_forever(self) -> None:
        # uvicorn installs its signal handlers only on the main thread, so start() in tests is safe
        from stepwise.api.triggers import TriggerScheduler

        scheduler = TriggerScheduler(self.api) if self.limits.scheduler else None
        if scheduler is not None:
            scheduler.start()
        try:
            asyncio.run(self.server.serve(sockets=[self.socket]))
        finally:
            if scheduler is not None:
                scheduler.stop()

    def start(self) -> LocalServer:
        self._thread = threading.Thread(target=self.serve_forever, name="stepwise-serve", daemon=True)
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            self._thread.join(0.01)
        return self

    def shutdown(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)

    def server_close(self) -> None:
        self.socket.close()


def make_server(
    host: str,
    port: int,
    home: str | Path,
    api: StepwiseApi | None = None,
    limits: ServeLimits | None = None,
    settings: ApiSettings | None = None,
) -> LocalServer:
    """A bound, not yet serving, server (port 0 picks a free port: read ``server.server_address``)."""
    return LocalServer(host, port, home, api, limits, settings)


def serve(host: str = "127.0.0.1", port: int = 8080, home: str | Path = ".stepwise") -> None:
    """Serve until interrupted; print the URL and how to get an API key."""
    home = Path(home)
    server = make_server(host, port, home)
    url = server.url
    if host not in LOOPBACK:
        print(f"warning: listening on {host}, not loopback; this server speaks plain HTTP", file=sys.stderr)
    keys = len(server.api.store.list_keys("default"))
    print(f"Stepwise API listening on {url} (state in {home.resolve()})", flush=True)
    print(f"  health:  curl {url}/health", flush=True)
    if keys == 0:
        print("  no API key for tenant 'default' yet; create one with:", flush=True)
        print(f"    stepwise keys create --tenant default --home {home}", flush=True)
    print(f"  then:    curl -H 'x-api-key: <key>' {url}/agents", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
