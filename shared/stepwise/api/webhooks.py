"""Webhooks: a POST to the caller's URL when a run succeeds, fails, is cancelled or waits for a human.

Signed: ``Stepwise-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` with the
secret the caller gave (``webhook.secret`` on execute), plus ``Stepwise-Event-Id``. A receiver checks
it with ``verify(...)``: the signature, the timestamp within ``tolerance`` seconds, and the event id not
seen before (replay protection).

Delivered with retries: up to ``attempts`` tries with exponential backoff (``base``·2ⁿ seconds, capped),
on connection errors, 408, 429 and 5xx; other 4xx answers are final. A delivery that never succeeds is
dead-lettered (locally: ``<home>/webhooks.dead.jsonl``; on AWS the same record goes to an SQS queue).
Every attempt is in the delivery log (``<home>/webhooks.log.jsonl`` and ``WebhookSender.log``).

SSRF-safe: only http/https; the host is resolved once and every address must be public (no loopback,
private, link-local — e.g. 169.254.169.254 —, multicast, reserved or unspecified ranges) unless
``allow_private`` (``STEPWISE_WEBHOOK_ALLOW_PRIVATE=1``, for local development); the connection goes to
the address that was checked (no DNS rebinding between check and connect); redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("stepwise.api.webhooks")

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookRejected(ValueError):
    """The URL may not be called (scheme, unresolvable host, or a private address)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, headers: dict[str, str], body: bytes, *, tolerance: float = 300, seen: set[str] | None = None, now: float | None = None
) -> bool:
    """For receivers: True if the signature matches, the timestamp is fresh and (with ``seen``) the event is new."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        parts = dict(p.split("=", 1) for p in lowered.get("stepwise-signature", "").split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    if not hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}"):
        return False
    if seen is not None:
        event_id = lowered.get("stepwise-event-id", "")
        if not event_id or event_id in seen:
            return False
        seen.add(event_id)
    return True


def resolve_public(url: str, allow_private: bool = False) -> tuple[str, str, int, str]:
    """(scheme, host, port, checked IP) for a URL that may be called; else WebhookRejected."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRejected("webhook URLs must be http(s)://host/…")
    if parts.username or parts.password:
        raise WebhookRejected("webhook URLs must not carry credentials; sign with the secret instead")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise WebhookRejected(f"webhook host {parts.hostname!r} does not resolve") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not allow_private and not ip.is_global:
            raise WebhookRejected(f"webhook host {parts.hostname!r} resolves to a non-public address ({ip}); not allowed")
    return parts.scheme, parts.hostname, port, addresses[0]


def _pinned(scheme: str, host: str, port: int, ip: str, timeout: float) -> http.client.HTTPConnection:
    """An HTTP(S) connection to the checked IP, with the URL's host for Host and TLS (SNI, certificate)."""

    class Pinned(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.create_connection((ip, port), timeout)
            self.sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host) if scheme == "https" else sock

    return Pinned(host, port, timeout=timeout)


def post_once(url: str, secret: str, kind: str, body: bytes, event_id: str, *, allow_private: bool, timeout: float) -> tuple[int, str]:
    """One signed POST: (HTTP status, "") or (0, the connection error). Raises ``WebhookRejected`` for a URL
    that may not be called (checked again on every try: DNS may have changed)."""
    scheme, host, port, ip = resolve_public(url, allow_private)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {
        "content-type": "application/json",
        "user-agent": "stepwise-webhooks",
        "stepwise-event-id": event_id,
        "stepwise-event": kind,
        "stepwise-signature": sign(secret, int(time.time()), body),
    }
    try:
        conn = _pinned(scheme, host, port, ip, timeout)
        conn.request("POST", path, body=body, headers=headers)
        status = conn.getresponse().status
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    return status, ""


class WebhookSender:
    """Delivers, retries, logs and dead-letters webhook calls on a small thread pool."""

    def __init__(
        self,
        *,
        home: Path | None = None,
        allow_private: bool = False,
        attempts: int = 5,
        base: float = 0.5,
        cap: float = 30.0,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        dead_letter: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.home, self.allow_private = home, allow_private
        self.attempts, self.base, self.cap, self.timeout, self.sleep = attempts, base, cap, timeout, sleep
        self.dead_letter_sink = dead_letter
        self.log: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def check(self, url: str) -> None:
        resolve_public(url, self.allow_private)

    def _record(self, entry: dict[str, Any], dead: bool = False) -> None:
        with self._lock:
            (self.dead if dead else self.log).append(entry)
            if self.home is not None:
                self.home.mkdir(parents=True, exist_ok=True)
                name = "webhooks.dead.jsonl" if dead else "webhooks.log.jsonl"
                with (self.home / name).open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")

    def deliver(self, url: str, secret: str, kind: str, data: dict[str, Any]) -> bool:
        """POST one event, retrying; True once a 2xx answer came back."""
        event_id = f"evt_{uuid.uuid4().hex}"
        body = json.dumps({"id": event_id, "type": kind, "created": time.time(), "data": data}, separators=(",", ":")).encode()
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                status, last = post_once(url, secret, kind, body, event_id, allow_private=self.allow_private, timeout=self.timeout)
            except WebhookRejected as exc:
                last = str(exc)
                self._record({"event_id": event_id, "url": url, "attempt": attempt, "outcome": "rejected", "error": last})
                break
            entry = {"event_id": event_id, "type": kind, "url": url, "attempt": attempt, "status": status, "at": time.time()}
            if 200 <= status < 300:
                self._record({**entry, "outcome": "delivered"})
                return True
            last = last or f"HTTP {status}"
            self._record({**entry, "outcome": "failed", "error": last})
            if status and status not in RETRYABLE:
                break
            if attempt < self.attempts:
                self.sleep(min(self.cap, self.base * 2 ** (attempt - 1)))
        dead = {"event_id": event_id, "type": kind, "url": url, "error": last, "body": body.decode(), "at": time.time()}
        self._record(dead, dead=True)
        if self.dead_letter_sink is not None:
            try:
                self.dead_letter_sink(dead)
            except Exception as exc:  # noqa: BLE001 - the local dead-letter file already has it
                log.warning("dead-letter sink failed: %s", type(exc).__name__)
        return False
