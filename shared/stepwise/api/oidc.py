"""JWT bearer tokens from an OIDC issuer (Cognito, Auth0, Keycloak, …), validated against its JWKS.

Checked, in order, before any claim is trusted: size (``max_token_bytes``), the header's ``alg`` is one
of the allowed *asymmetric* algorithms (so ``none`` and HS256-signed-with-the-public-key never reach a
verifier), the ``kid`` names a key of the issuer's JWKS, the signature, then ``exp``/``nbf``/``iat``
(with ``leeway`` seconds), ``iss`` and ``aud``; ``exp``, ``iss``, ``aud`` and ``sub`` are required.
The tenant comes from one claim (``tenant_claim``, e.g. ``custom:tenant`` in Cognito) and must be a
valid tenant id; roles from another (``roles_claim``, e.g. ``cognito:groups``).

Keys are cached for ``cache_seconds``; a token whose ``kid`` is unknown triggers one refetch (key
rotation) at most every ``refetch_seconds``, so a flood of made-up kids cannot turn into a flood of
JWKS requests. Every rejection is an ``AuthError`` (401), never a 5xx.

Settings (environment, prefix ``STEPWISE_``): ``JWT_ISSUER``, ``JWT_AUDIENCE``, ``JWT_JWKS_URL``
(default ``<issuer>/.well-known/jwks.json``, which is Cognito's), ``JWT_ALGORITHMS`` (default
``RS256,ES256``), ``JWT_TENANT_CLAIM`` (default ``tenant``), ``JWT_ROLES_CLAIM`` (default ``roles``).
Needs ``pyjwt[crypto]`` (the ``llm`` extra).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from stepwise.api.auth import TENANT_PATTERN, AuthError, Principal

ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


class JwtSettings(BaseModel):
    """Which OIDC issuer's JWTs to accept, and which claims name the tenant and roles."""

    issuer: str
    audience: str
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    tenant_claim: str = "tenant"
    roles_claim: str = "roles"
    leeway: float = Field(default=30.0, ge=0, le=300)
    max_token_bytes: int = Field(default=8192, ge=512)
    cache_seconds: float = 300.0
    refetch_seconds: float = 30.0

    def model_post_init(self, _: Any) -> None:
        bad = [a for a in self.algorithms if a not in ASYMMETRIC]
        if bad:
            raise ValueError(f"JWT algorithms must be asymmetric (one of {', '.join(sorted(ASYMMETRIC))}); not {', '.join(bad)}")

    @property
    def jwks_location(self) -> str:
        return self.jwks_url or self.issuer.rstrip("/") + "/.well-known/jwks.json"


def fetch_jwks(url: str) -> dict[str, Any]:
    """The issuer's JWKS document (operator-configured URL; 5 s timeout, 1 MB cap)."""
    with urllib.request.urlopen(url, timeout=5) as response:  # the URL comes from the operator, not a caller
        return json.loads(response.read(1_048_576))  # type: ignore[no-any-return]


class JwksCache:
    """kid → verification key, refreshed every ``cache_seconds`` and on an unknown kid (rate-limited)."""

    def __init__(
        self, settings: JwtSettings, fetch: Callable[[str], dict[str, Any]] = fetch_jwks, clock: Callable[[], float] = time.monotonic
    ):
        self.settings, self.fetch, self.clock = settings, fetch, clock
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()
        self.fetches = 0

    def _refresh(self) -> None:
        import jwt

        document = self.fetch(self.settings.jwks_location)
        self.fetches += 1
        keys: dict[str, Any] = {}
        for entry in document.get("keys", []):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or "kid" not in entry:
                continue
            try:
                keys[str(entry["kid"])] = jwt.PyJWK.from_dict(entry)
            except jwt.PyJWTError:
                continue  # an unusable key in the set does not block the others
        self._keys, self._fetched_at = keys, self.clock()

    def key(self, kid: str) -> Any:
        with self._lock:
            age = self.clock() - self._fetched_at
            if age > self.settings.cache_seconds or (kid not in self._keys and age > self.settings.refetch_seconds):
                try:
                    self._refresh()
                except Exception as exc:  # noqa: BLE001 - an unreachable issuer is a 401 for this token, not a 500
                    if not self._keys:
                        raise AuthError(f"cannot fetch the issuer's keys ({type(exc).__name__})") from None
            found = self._keys.get(kid)
        if found is None:
            raise AuthError("token signed with an unknown key (kid)")
        return found


class JwtAuthenticator:
    """``Authorization: Bearer <JWT>`` → ``Principal(tenant, subject, method="jwt", roles, claims)``."""

    def __init__(self, settings: JwtSettings, keys: JwksCache | None = None) -> None:
        from stepwise.extras import needs

        with needs("llm", "JWT sign-in (STEPWISE_JWT_ISSUER)"):
            import jwt  # noqa: F401 - fail at start-up, naming the extra, rather than on the first request

        self.settings = settings
        self.keys = keys or JwksCache(settings)

    @classmethod
    def from_settings(cls, api: Any) -> JwtAuthenticator | None:
        """From ``ApiSettings`` (``STEPWISE_JWT_*``); None when no issuer is configured."""
        if not api.jwt_issuer:
            return None
        if not api.jwt_audience:
            raise ValueError("STEPWISE_JWT_ISSUER is set: set STEPWISE_JWT_AUDIENCE too (the app client id in Cognito)")
        values: dict[str, Any] = {"issuer": api.jwt_issuer, "audience": api.jwt_audience, "jwks_url": api.jwt_jwks_url}
        values.update(algorithms=api.jwt_algorithms, tenant_claim=api.jwt_tenant_claim, roles_claim=api.jwt_roles_claim)
        return cls(JwtSettings.model_validate(values))

    @staticmethod
    def presented(headers: Mapping[str, str]) -> str | None:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if auth[:7].lower() != "bearer ":
            return None
        token = auth[7:].strip()
        return token if token.count(".") == 2 and not token.startswith("swk_") else None  # API keys go to ApiKeyAuthenticator

    def authenticate(self, headers: Mapping[str, str], event: Mapping[str, Any]) -> Principal | None:
        import jwt

        token = self.presented(headers)
        if token is None:
            return None
        s = self.settings
        if len(token) > s.max_token_bytes:
            raise AuthError(f"token larger than {s.max_token_bytes} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in s.algorithms:
            raise AuthError(f"token algorithm {alg!r} not allowed (allowed: {', '.join(s.algorithms)})")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise AuthError("token has no usable key id (kid)")
        key = self.keys.key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience not accepted") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer not accepted") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token ({type(exc).__name__})") from None
        tenant = claims.get(s.tenant_claim)
        if not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant):
            raise AuthError(f"token has no valid {s.tenant_claim!r} claim (a tenant id)")
        raw_roles = claims.get(s.roles_claim) or []
        roles = tuple(
            str(r) for r in (raw_roles.split() if isinstance(raw_roles, str) else raw_roles if isinstance(raw_roles, list) else [])
        )
        return Principal(tenant=tenant, subject=f"jwt:{claims['sub']}", method="jwt", claims=claims, roles=roles)
