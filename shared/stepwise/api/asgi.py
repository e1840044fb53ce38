"""ASGI plumbing shared by the local server (``server.py``) and its live streams (``stream.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def send_response(send: Send, status: int, headers: dict[str, str], payload: bytes) -> None:
    """A whole HTTP response: ``headers`` (any Content-Length among them replaced by the payload's) and ``payload``."""
    raw = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items() if k.lower() not in ("content-length",)]
    raw.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
