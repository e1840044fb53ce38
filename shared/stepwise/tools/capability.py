"""Step-scoped capability tokens: a signed, short-lived permission for exactly one tool call.

The step mints a token for each call it is about to make; the action executor verifies it before the tool
runs, and the token travels to MCP servers in the request's ``_meta`` under ``stepwise/capability`` so a
remote server can verify it too (with the shared key; ``verify_capability`` is the reference check).

Format: a JWT (RFC 7519) signed HS256 with a 256-bit key, claims::

    iss  "stepwise"            aud  "stepwise-tool:<tool name>"
    sub  tenant                run  run id        node  node name
    step the call's idempotency key ({step key}|tool|{call id}): binds the step and the call
    tool tool name             args sha256 of the canonical JSON of the arguments (sorted keys, no spaces)
    jti  random id (replay)    iat/exp  issued/expiry (default 60 s)

Verification refuses a bad signature, ``alg`` other than HS256 (``none`` included), an expired token, and any
claim that differs from the call being made (another tool, other arguments, another run/node/step/tenant:
a *re-targeted* token), and a ``jti`` seen before (*replay*) while it is still unexpired.

Replay memory: a spent ``jti`` is recorded until its token expires. With ``STEPWISE_VALKEY_URL`` set (the
AWS stack sets it to its ElastiCache) it is one ``SET <prefix><jti> 1 NX PX <ms left>`` in Valkey, so a
token spent in one process or Lambda container is refused in every other; without it the memory is this
process's (``ProcessSpent``), which is all the embedded default needs (one engine process). If Valkey
cannot be reached the call is refused (``capability_unverifiable``): a replay guard that cannot answer
does not let a token through.

Keys: on AWS the key is a Secrets Manager secret (``STEPWISE_CAPABILITY_SECRET``: name or ARN; its value is
the key as hex or base64, or ``{"key": ...}``); on the embedded default a random key is generated once
into ``<home>/capability.key`` (mode 0600).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stepwise.tools.settings import ToolSettings

ISSUER = "stepwise"
ALGORITHM = "HS256"
SPENT_PREFIX = "stepwise:capability:jti:"

log = logging.getLogger(__name__)


class CapabilityError(PermissionError):
    """A token was missing, forged, expired, replayed or bound to another call; ``rule`` says which."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


def args_hash(arguments: dict[str, Any]) -> str:
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def audience(tool: str) -> str:
    return f"stepwise-tool:{tool}"


@dataclass(frozen=True)
class Binding:
    """What a token is bound to: the one call it permits."""

    tenant: str
    run: str
    node: str
    step: str
    tool: str
    arguments: dict[str, Any]


# -- keys --------------------------------------------------------------------------------------------
def local_key(home: str | Path) -> bytes:
    """The embedded default's key: generated once (32 random bytes), kept 0600 in ``<home>/capability.key``."""
    path = Path(home) / "capability.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    return _decode_key(path.read_text(encoding="utf-8"))


def secrets_manager_key(secret_id: str, client: Any = None) -> bytes:
    """The AWS key: a Secrets Manager secret (hex, base64, or JSON ``{"key": ...}``)."""
    if client is None:
        from stepwise.awsclients import client as aws_client

        client = aws_client("secretsmanager")
    value = client.get_secret_value(SecretId=secret_id)
    text = value.get("SecretString")
    if text is None:
        return bytes(value["SecretBinary"])
    if text.lstrip().startswith("{"):
        text = str(json.loads(text)["key"])
    return _decode_key(text)


def _decode_key(text: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = text.encode()
    if len(key) < 32:
        raise ValueError("a capability key must have at least 256 bits (32 bytes)")
    return key


# -- replay memory -----------------------------------------------------------------------------------
class SpentTokens(Protocol):
    """Where spent ``jti`` are remembered until their token expires."""

    scope: str  # "process" or "valkey": how far a spend is seen

    def spend(self, jti: str, seconds_left: float) -> bool:
        """Record ``jti``; False when it was already spent (a replay)."""
        ...


class ProcessSpent:
    """This process's memory: enough for one engine process, blind to other processes and containers."""

    scope = "process"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._spent: dict[str, float] = {}
        self._lock = threading.Lock()

    def spend(self, jti: str, seconds_left: float) -> bool:
        with self._lock:
            now = self.clock()
            self._spent = {j: until for j, until in self._spent.items() if until > now}
            if jti in self._spent:
                return False
            self._spent[jti] = now + seconds_left
            return True


class ValkeySpent:
    """Shared memory in Valkey: ``SET <prefix><jti> 1 NX PX <ms>`` is atomic, so of two processes spending
    the same token at once exactly one wins; the key expires with the token."""

    scope = "valkey"

    def __init__(self, client: Any, prefix: str = SPENT_PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    def spend(self, jti: str, seconds_left: float) -> bool:
        import redis

        try:
            first = self.client.set(self.prefix + jti, b"1", nx=True, px=max(1, math.ceil(seconds_left * 1000)))
        except (redis.RedisError, OSError) as exc:  # refuse rather than let a token through unchecked
            raise CapabilityError(
                f"capability replay guard unavailable (Valkey at STEPWISE_VALKEY_URL: {type(exc).__name__}); "
                "the call is refused until Valkey answers",
                "capability_unverifiable",
            ) from None
        return bool(first)


def spent_tokens(settings: ToolSettings) -> SpentTokens:
    """Valkey when ``settings.valkey_url`` (``STEPWISE_VALKEY_URL``) is set, else this process's memory (warned
    about on Lambda, where one function runs in many containers)."""
    if settings.valkey_url:
        from stepwise.memory.valkey import client

        return ValkeySpent(client(settings.valkey_url, secret=settings.valkey_secret))
    if settings.on_lambda:
        log.warning(
            "capability tokens: no STEPWISE_VALKEY_URL, so spent tokens are remembered per container only; "
            "set it (the stack does) to refuse a replay in every container"
        )
    return ProcessSpent()


# -- mint and verify ---------------------------------------------------------------------------------
class Capabilities:
    """Mints and verifies tokens with one key; remembers spent ``jti`` until they expire (replay guard)."""

    def __init__(
        self,
        key: bytes | Callable[[], bytes],
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
        spent: SpentTokens | None = None,
    ) -> None:
        """``key``: the bytes, or a callable that fetches them on first use (a file, Secrets Manager);
        ``spent``: the replay memory (default: this process's)."""
        self._source = key
        self._cached: bytes | None = None
        self.ttl = ttl
        self.clock = clock
        self.spent: SpentTokens = spent if spent is not None else ProcessSpent(clock)

    @property
    def _key(self) -> bytes:
        if self._cached is None:
            key = self._source() if callable(self._source) else self._source
            if len(key) < 32:
                raise ValueError("a capability key must have at least 256 bits (32 bytes)")
            self._cached = key
        return self._cached

    def mint(self, binding: Binding, *, ttl: float | None = None) -> str:
        now = self.clock()
        claims = {
            "iss": ISSUER,
            "aud": audience(binding.tool),
            "sub": binding.tenant,
            "run": binding.run,
            "node": binding.node,
            "step": binding.step,
            "tool": binding.tool,
            "args": args_hash(binding.arguments),
            "jti": secrets.token_urlsafe(16),
            "iat": int(now),
            "exp": now + (self.ttl if ttl is None else ttl),
        }
        import jwt

        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str | None, binding: Binding, *, spend: bool = True) -> dict[str, Any]:
        """The token's claims if it permits exactly this call; ``CapabilityError`` (with its rule) otherwise."""
        claims = verify_capability(token, binding, self._key, now=self.clock())
        if spend and not self.spent.spend(str(claims["jti"]), float(claims["exp"]) - self.clock()):
            raise CapabilityError("capability token already used (replay)", "capability_replayed")
        return claims


def verify_capability(token: str | None, binding: Binding, key: bytes, *, now: float | None = None) -> dict[str, Any]:
    """The check a remote MCP server can run on ``_meta["stepwise/capability"]`` (no replay memory)."""
    import jwt

    if not token:
        raise CapabilityError("no capability token for this call", "capability_missing")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience(binding.tool),
            issuer=ISSUER,
            options={"require": ["exp", "iat", "jti", "aud", "iss", "sub"], "verify_exp": now is None},
        )
    except jwt.InvalidAudienceError:
        raise CapabilityError(f"capability token was minted for another tool, not {binding.tool!r}", "capability_retargeted") from None
    except jwt.ExpiredSignatureError:
        raise CapabilityError("capability token expired", "capability_expired") from None
    except jwt.PyJWTError as exc:
        raise CapabilityError(f"capability token rejected: {exc}", "capability_invalid") from None
    if now is not None and float(claims["exp"]) <= now:
        raise CapabilityError("capability token expired", "capability_expired")
    expected = {
        "sub": binding.tenant,
        "run": binding.run,
        "node": binding.node,
        "step": binding.step,
        "tool": binding.tool,
        "args": args_hash(binding.arguments),
    }
    wrong = sorted(k for k, v in expected.items() if claims.get(k) != v)
    if wrong:
        raise CapabilityError(f"capability token is bound to another call (differs in: {', '.join(wrong)})", "capability_retargeted")
    return claims
