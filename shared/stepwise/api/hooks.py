"""Hooks for rate limiting and lifecycle notifications; the defaults here do nothing.

- ``RateLimiter.check(principal, operation)``: called after authentication, before every route.
  Raise ``RateLimited(retry_after)`` to answer 429 with a ``Retry-After`` header.
  ``stepwise.api.ratelimit.ValkeyRateLimiter`` is the token bucket per tenant (ElastiCache on AWS).
- ``EventSink.publish(kind, tenant, detail)``: called after the API changed something
  (``agent.registered``, ``agent.version_added``, ``run.started``, ``run.resumed``, ``run.cancelled``,
  ``run.finished`` when a waited-for run ends, ``thread.forked``). EventBridge ``PutEvents``, webhooks
  and WebSocket fan-out plug in here; node-level progress on AWS comes from the events table's stream.
- Authentication: see ``stepwise.api.auth`` (``Authenticator``) and ``stepwise.api.oidc`` (JWT).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from stepwise.api.auth import Principal
from stepwise.errors import StepwiseError


class RateLimited(StepwiseError):
    """The caller is over its rate limit: answered as 429 with ``Retry-After``."""

    def __init__(self, retry_after: float = 1.0, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after:.3g} s")
        self.retry_after = retry_after
        self.headers = dict(headers or {})


class RateLimiter(Protocol):
    """``check`` raises ``RateLimited`` to refuse; it may return headers for the answer (``RateLimit-*``)."""

    def check(self, principal: Principal, operation: str) -> Mapping[str, str] | None: ...


class EventSink(Protocol):
    """Receives the API's lifecycle notifications (``run.started``, ``agent.registered``, …)."""

    def publish(self, kind: str, tenant: str, detail: dict[str, Any]) -> None: ...


class NoLimit:
    """The default rate limiter: every request passes."""

    def check(self, principal: Principal, operation: str) -> None:
        return None


class NoEvents:
    """The default event sink: notifications go nowhere."""

    def publish(self, kind: str, tenant: str, detail: dict[str, Any]) -> None:
        return None


class RecordingSink:
    """Keeps what was published, in order: for tests and for a local event log."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def publish(self, kind: str, tenant: str, detail: dict[str, Any]) -> None:
        self.events.append((kind, tenant, detail))
