"""``stepwise serve``: the API's Lambda handler behind a local HTTP server, on embedded defaults.

Why the standard library's ``ThreadingHTTPServer`` and not an ASGI stack: the deployed API is an API
Gateway proxy event handed to one handler. Translating each HTTP request into that same event and
the handler's proxy response back into HTTP means the laptop runs *the deployed code path* — the
same routing, validation, auth and error bodies — with no second web framework and no new
dependency. Requests run one per thread; each thread gets its own Powertools resolver (see
``StepwiseApi.resolver``). Runs are synchronous locally, so a request that executes a run answers
when the run finishes or pauses at a human node.

It binds 127.0.0.1 by default. It speaks plain HTTP: put it behind a TLS proxy before exposing it.
"""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stepwise.api.app import StepwiseApi, create_app
from stepwise.api.settings import ApiSettings
from stepwise.config import Settings, build_client

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def to_event(method: str, target: str, headers: dict[str, str], body: bytes, client_ip: str) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for one HTTP request."""
    parts = urlsplit(target)
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


def make_handler(api: Callable[[dict[str, Any], Any], dict[str, Any]], max_body: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "stepwise"
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > max_body:
                self._send(
                    413, {"Content-Type": "application/json"}, b'{"error":{"code":"payload_too_large","message":"request body too large"}}'
                )
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            event = to_event(self.command, self.path, headers, body, self.client_address[0])
            response = api(event, None)
            out = response.get("body") or ""
            payload = base64.b64decode(out) if response.get("isBase64Encoded") else out.encode()
            merged: dict[str, str] = {k: str(v) for k, v in (response.get("headers") or {}).items()}
            for k, values in (response.get("multiValueHeaders") or {}).items():
                merged[k] = ", ".join(str(v) for v in values)
            self._send(int(response["statusCode"]), merged, payload)

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in ("content-length", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def local_api(home: Path) -> StepwiseApi:
    """The API on embedded defaults in ``home``: SQLite + files for the engine, api.db for keys and agents."""
    settings = Settings(backend="embedded", home=home)
    api_settings = ApiSettings.from_env().model_copy(update={"backend": "embedded", "home": home})
    return create_app(lambda: build_client(settings), settings=api_settings)


def make_server(host: str, port: int, home: str | Path, api: StepwiseApi | None = None) -> ThreadingHTTPServer:
    """A bound, not yet serving, server (port 0 picks a free port: read ``server.server_address``)."""
    api = api or local_api(Path(home))
    server = ThreadingHTTPServer((host, port), make_handler(api, api.settings.api_max_body_bytes))
    server.daemon_threads = True
    return server


def serve(host: str = "127.0.0.1", port: int = 8080, home: str | Path = ".stepwise") -> None:
    """Serve until interrupted; print the URL and how to get an API key."""
    home = Path(home)
    api = local_api(home)
    server = make_server(host, port, home, api)
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    url = f"http://{bound_host if ':' not in bound_host else f'[{bound_host}]'}:{bound_port}"
    if host not in LOOPBACK:
        print(f"warning: listening on {host}, not loopback; this server speaks plain HTTP", file=sys.stderr)
    keys = len(api.store.list_keys("default"))
    print(f"Stepwise API listening on {url} (state in {home.resolve()})", flush=True)
    print(f"  health:  curl {url}/health", flush=True)
    if keys == 0:
        print("  no API key for tenant 'default' yet; create one with:", flush=True)
        print(f"    python -m stepwise.api.keys create --tenant default --home {home}", flush=True)
    print(f"  then:    curl -H 'x-api-key: <key>' {url}/agents", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
