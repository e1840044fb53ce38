"""Authentication: who is calling, as a ``Principal`` scoped to one tenant.

API keys look like ``swk_<tenant>_<key id>_<secret>``. At rest only ``HMAC-SHA256(salt, secret)`` and
the per-key random salt are stored; the secret is shown once, at creation. Because the key names its
tenant and id, a lookup is one read of the tenant's partition, with no global index of hashes. Keys
are sent as ``x-api-key: <key>`` or ``Authorization: Bearer <key>``.

``create_app(authenticators=[...])`` takes any objects with ``authenticate(headers, event) -> Principal | None``;
the first that returns a principal wins. Besides API keys, ``stepwise.api.oidc.JwtAuthenticator`` accepts
JWT bearer tokens of one OIDC issuer (``STEPWISE_JWT_ISSUER``) and maps a claim to the tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from stepwise.errors import StepwiseError
from stepwise.store import ApiKeyRecord, ApiStore

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

KEY_PREFIX = "swk"
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant, the subject within it, and how they authenticated."""

    tenant: str
    subject: str
    method: str = "api_key"
    claims: dict[str, Any] = field(default_factory=dict)
    roles: tuple[str, ...] = ()


class AuthError(StepwiseError):
    """Credentials were sent but are not valid (unknown, malformed or revoked): a 401."""


class Authenticator(Protocol):
    """Turns a request's headers (and the raw event) into a Principal, or None when it does not apply."""

    def authenticate(self, headers: Mapping[str, str], event: Mapping[str, Any]) -> Principal | None: ...


def tenant_of(router: BaseRouter) -> str:
    """The calling principal's tenant, which the auth middleware put on the router's request context."""
    principal: Principal = router.context["principal"]
    return principal.tenant


def hash_secret(salt: str, secret: str) -> str:
    return hmac.new(salt.encode(), secret.encode(), hashlib.sha256).hexdigest()


def new_key(tenant: str, name: str = "") -> tuple[ApiKeyRecord, str]:
    """A fresh key record (to store) and the plaintext key (to show once)."""
    if not TENANT_PATTERN.match(tenant):
        raise ValueError(f"tenant {tenant!r} must be 1-63 lowercase letters, digits or '-', starting with a letter or digit")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    record = ApiKeyRecord(key_id=key_id, tenant=tenant, name=name, salt=salt, hash=hash_secret(salt, secret))
    return record, f"{KEY_PREFIX}_{tenant}_{key_id}_{secret}"


def parse_key(key: str) -> tuple[str, str, str] | None:
    """(tenant, key id, secret) of a well-formed key, else None."""
    parts = key.split("_", 3)
    if len(parts) != 4 or parts[0] != KEY_PREFIX:
        return None
    _, tenant, key_id, secret = parts
    if not TENANT_PATTERN.match(tenant) or not _KEY_ID.match(key_id) or not secret:
        return None
    return tenant, key_id, secret


def check_one_credential(headers: Mapping[str, str]) -> None:
    """Refuse a request that carries two different credentials (``x-api-key`` and ``Authorization``): which
    one a server honours would otherwise depend on the order its authenticators are tried in."""
    lowered = {k.lower(): v for k, v in headers.items()}
    key, auth = lowered.get("x-api-key", "").strip(), lowered.get("authorization", "").strip()
    if "," in key:  # a repeated header arrives joined by commas, which no key holds
        raise AuthError("several x-api-key headers sent: send one API key")
    scheme, _, value = auth.partition(" ")
    if key and auth and not (scheme.lower() == "bearer" and value.strip() == key):
        raise AuthError("two credentials sent (x-api-key and Authorization): send one of them")


def presented_key(headers: Mapping[str, str]) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    if lowered.get("x-api-key"):
        return lowered["x-api-key"].strip()
    auth = lowered.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


class ApiKeyAuthenticator:
    """Authenticates ``swk_…`` API keys against their salted hashes in the API store."""

    def __init__(self, store: ApiStore) -> None:
        self.store = store

    def authenticate(self, headers: Mapping[str, str], event: Mapping[str, Any]) -> Principal | None:
        key = presented_key(headers)
        if key is None:
            return None
        parsed = parse_key(key)
        if parsed is None:
            raise AuthError("malformed API key; keys look like swk_<tenant>_<id>_<secret>")
        tenant, key_id, secret = parsed
        record = self.store.get_key(tenant, key_id)
        # compare even when the record is missing, so timing does not tell which keys exist
        expected = record.hash if record else hash_secret("-", "-")
        valid = hmac.compare_digest(expected, hash_secret(record.salt if record else "-", secret))
        if record is None or not valid:
            raise AuthError("unknown API key")
        if not record.active:
            raise AuthError("this API key was revoked; create a new one")
        return Principal(tenant=record.tenant, subject=f"key:{record.key_id}")
