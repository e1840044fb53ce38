"""Per-tenant rate limits: a token bucket per (tenant, route class) in Valkey, updated by one Lua script.

Why a Lua script: read-refill-take-write must be atomic across every API process (several ``serve``
workers, many Lambda containers); one ``EVALSHA`` is one round trip and Valkey runs it alone. The
script reads the server's ``TIME``, so the processes' clocks never matter. The bucket refills
continuously at ``rate`` tokens/s up to ``burst``: over any window of T seconds a tenant gets at most
``burst + rate*T`` requests — a sliding window, with no reset edge to burst through.

Route classes: ``execute`` (starting or resuming runs), ``stream`` (opening a live stream), ``write``
(other POST/PUT/DELETE), ``read`` (GET). Limits come from ``STEPWISE_RATE_LIMITS`` (JSON): per tenant
(``"*"`` for everyone else), per class, ``[rate_per_second, burst]``::

    {"*": {"execute": [2, 10], "read": [20, 40]}, "acme": {"execute": [10, 50]}}

A class with no limit is not limited. Answers carry ``RateLimit-Limit`` / ``RateLimit-Remaining``;
a refused request gets ``429`` with ``Retry-After``. If Valkey cannot be reached the request is let
through and the failure logged (the limiter protects capacity; it must not become the outage).
On AWS, API Gateway usage plans throttle API-key tenants before the function (infra/stacks/api.py).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from stepwise.api.auth import Principal
from stepwise.api.hooks import RateLimited

log = logging.getLogger("stepwise.api.ratelimit")

TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(retry)}
"""

Limits = dict[str, dict[str, tuple[float, float]]]


def route_class(operation: str) -> str:
    """``"POST /agents/x/execute"`` → ``execute``; GETs are ``read`` (``stream`` for live streams)."""
    method, _, path = operation.partition(" ")
    if path.endswith(("/execute", "/resume", "/redrive")):
        return "execute"
    if method == "GET":
        return "stream" if path.endswith("/stream") else "read"
    return "write"


ROUTE_CLASSES = ("execute", "stream", "write", "read")


def parse_limits(raw: str | Mapping[str, Any] | None) -> Limits:
    """Tenant -> route class -> (rate, burst). A class ``route_class`` never answers is refused: a typo
    (``"exec"``) would otherwise leave the class it meant unlimited without a word."""
    data = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    limits: Limits = {}
    for tenant, classes in data.items():
        limits[str(tenant)] = {}
        for cls, value in dict(classes).items():
            if cls not in ROUTE_CLASSES:
                raise ValueError(f"rate limit {tenant}/{cls}: {cls!r} is not a route class (one of {', '.join(ROUTE_CLASSES)})")
            rate, burst = (float(value[0]), float(value[1])) if isinstance(value, list | tuple) else (float(value), float(value))
            if rate <= 0 or burst < 1:
                raise ValueError(f"rate limit {tenant}/{cls}: rate must be > 0 and burst >= 1, got {value!r}")
            limits[str(tenant)][str(cls)] = (rate, burst)
    return limits


class ValkeyRateLimiter:
    """``RateLimiter`` (stepwise.api.hooks) over Valkey; ``check`` answers the rate-limit headers."""

    def __init__(
        self, limits: Limits, client: Any = None, prefix: str = "stepwise:rl", *, url: str | None = None, secret: str | None = None
    ) -> None:
        """``client``: a redis-py client; else one for ``url``/``secret`` (``STEPWISE_VALKEY_URL``/``_SECRET``), or
        the embedded server's."""
        self.limits = limits
        self._client = client
        self._url, self._secret = url, secret
        self.prefix = prefix
        self._script: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from stepwise.memory.valkey import client

            self._client = client(self._url, secret=self._secret)
        return self._client

    def rule(self, tenant: str, cls: str) -> tuple[float, float] | None:
        return (self.limits.get(tenant) or {}).get(cls) or (self.limits.get("*") or {}).get(cls)

    def take(self, tenant: str, cls: str, rate: float, burst: float, cost: float = 1.0) -> tuple[bool, float, float]:
        """(allowed, tokens left, seconds until enough tokens) — one atomic script call."""
        if self._script is None:
            self._script = self.client.register_script(TOKEN_BUCKET)
        allowed, tokens, retry = self._script(keys=[f"{self.prefix}:{tenant}:{cls}"], args=[rate, burst, cost])
        return bool(int(allowed)), float(tokens), float(retry)

    def check(self, principal: Principal, operation: str) -> dict[str, str] | None:
        cls = route_class(operation)
        rule = self.rule(principal.tenant, cls)
        if rule is None:
            return None
        rate, burst = rule
        try:
            allowed, tokens, retry = self.take(principal.tenant, cls, rate, burst)
        except Exception as exc:  # noqa: BLE001 - fail open: a Valkey outage must not refuse every request
            log.warning("rate limiter unavailable (%s); request allowed", type(exc).__name__)
            return None
        headers = {
            "RateLimit-Limit": f"{int(burst)}",
            "RateLimit-Remaining": str(int(tokens)),
            "RateLimit-Policy": f"{int(burst)};w={burst / rate:g}",
        }
        if not allowed:
            raise RateLimited(max(retry, 0.001), headers={**headers, "Retry-After": str(max(1, math.ceil(retry)))})
        return headers
