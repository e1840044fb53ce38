"""API settings from the environment (prefix ``STEPWISE_``, like ``stepwise.config.Settings``).

STEPWISE_BACKEND              embedded | memory | aws (shared with the engine)
STEPWISE_HOME                 state directory of the embedded backend
STEPWISE_API_TABLE            DynamoDB table of the API store on AWS (pk S, sk S)
STEPWISE_API_ALLOWED_MODULES  comma-separated module prefixes function nodes and custom reducers
                              may import (default ``statemachines.,stepwise.examples.,stepwise.tools.``)
STEPWISE_JWT_ISSUER, _AUDIENCE, _JWKS_URL, _ALGORITHMS, _TENANT_CLAIM, _ROLES_CLAIM
                              accept JWT bearer tokens of this OIDC issuer (stepwise.api.oidc)
STEPWISE_API_MAX_WAIT_SECONDS upper bound of ``wait_seconds`` (default 25: API Gateway's REST
                              integration times out at 29 s)
STEPWISE_ADMIN_TENANTS        operator tenants (comma-separated): manage any tenant's roles, list its runs
STEPWISE_USAGE_PLAN_ID        the API Gateway usage plan ``keys create`` enrolls a new key's tenant in (AWS)
STEPWISE_VALKEY_URL, _SECRET  the rate limiter's Valkey and the secret with its credentials
STEPWISE_SERVE_*              ``stepwise serve``'s resource bounds (``ServeLimits``)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stepwise.settings import read_env
from stepwise.store import ApiStore

DEFAULT_ALLOWED_MODULES = ("statemachines.", "stepwise.examples.", "stepwise.tools.")


class ApiSettings(BaseModel):
    """The API server's settings; every field is ``STEPWISE_<FIELD>`` in the environment."""

    backend: Literal["embedded", "memory", "aws"] = "embedded"
    home: Path = Path(".stepwise")
    api_table: str = "stepwise-api"
    api_allowed_modules: tuple[str, ...] = DEFAULT_ALLOWED_MODULES
    api_max_wait_seconds: float = Field(default=25.0, ge=0, le=900)
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    api_background_runs: int = Field(default=8, ge=1, le=256)  # local runs executing in the background at once

    webhook_allow_private: bool = False  # let webhooks call loopback/private addresses (local development)
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    rate_limits: str | None = None  # JSON, see stepwise.api.ratelimit (STEPWISE_RATE_LIMITS)
    valkey_url: str | None = None  # the rate limiter's Valkey (else the embedded server)
    valkey_secret: str | None = None  # Secrets Manager secret with its credentials (AWS)
    jwt_issuer: str | None = None  # JWT bearer tokens (stepwise.api.oidc) when set
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: tuple[str, ...] = ("RS256", "ES256")
    jwt_tenant_claim: str = "tenant"
    jwt_roles_claim: str = "roles"
    #: Operator tenants (``STEPWISE_ADMIN_TENANTS``, comma-separated): manage any tenant's roles, list any tenant's runs.
    admin_tenants: frozenset[str] = frozenset()
    #: The usage plan ``keys create`` enrolls a new key's tenant in (``STEPWISE_USAGE_PLAN_ID``, the stack's output).
    usage_plan_id: str | None = None

    @field_validator("admin_tenants", mode="before")
    @classmethod
    def _tenants(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("api_allowed_modules", "jwt_algorithms", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits(cls, value: str | None) -> str | None:
        """Parsed once here, so a typo refuses to start instead of failing every request."""
        if value:
            from stepwise.api.ratelimit import parse_limits

            shape = 'JSON like {"default": {"execute": [1, 5], "read": 20}} (tenant -> class -> rate or [rate, burst])'
            try:
                parse_limits(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON ({exc.msg} at column {exc.colno}); give {shape}") from None
            except (TypeError, AttributeError, IndexError, KeyError):
                raise ValueError(f"give {shape}") from None
            except ValueError as exc:  # a rate ≤ 0 or a burst < 1, or a rate that is not a number
                raise ValueError(f"{exc}; give {shape}") from None
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from stepwise.api.oidc import ASYMMETRIC

        bad = [a for a in value if a not in ASYMMETRIC]
        if bad or not value:
            raise ValueError(f"JWT algorithms must be asymmetric, comma-separated ({', '.join(sorted(ASYMMETRIC))})")
        return value

    @model_validator(mode="after")
    def _audience(self) -> ApiSettings:
        if self.jwt_issuer and not self.jwt_audience:
            raise ValueError("STEPWISE_JWT_ISSUER is set: set STEPWISE_JWT_AUDIENCE too (the app client id in Cognito)")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        """The settings in ``environ`` (default: this process's environment); a bad value raises ``SettingError``."""
        return read_env(cls, os.environ if environ is None else environ)


class ServeLimits(BaseModel):
    """The local server's resource bounds (``STEPWISE_SERVE_<FIELD>`` in the environment override them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int = Field(default=16, ge=1)  # threads running the synchronous handler
    max_queue: int = Field(default=1024, ge=0)  # requests waiting for a worker before the server answers 503
    backlog: int = Field(default=2048, ge=1)  # the listen queue (the kernel caps it at net.core.somaxconn)
    max_connections: int = Field(default=10_000, ge=1)  # beyond this uvicorn answers 503 (keep below `ulimit -n`)
    header_timeout: float = Field(default=10.0, gt=0)  # seconds to send the request line and headers
    body_timeout: float = Field(default=30.0, gt=0)  # seconds to send the body
    keep_alive: float = Field(default=5.0, ge=0)  # idle seconds before a keep-alive connection is closed
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    scheduler: bool = True  # run the agents' schedule triggers in-process (STEPWISE_SERVE_SCHEDULER=0: off)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeLimits:
        """The bounds in ``environ`` (default: this process's environment); empty variables keep the default,
        a bad value raises ``SettingError`` naming it (``serve`` then refuses to start)."""
        env = os.environ if environ is None else environ
        return read_env(cls, env, {name: f"STEPWISE_SERVE_{name.upper()}" for name in cls.model_fields}, skip_empty=True)


def build_store(settings: ApiSettings) -> ApiStore:
    """The API store matching the engine's backend: SQLite beside stepwise.db, memory, or DynamoDB."""
    if settings.backend == "embedded":
        from stepwise.store.sqlite import SqliteApiStore

        return SqliteApiStore(settings.home / "api.db")
    if settings.backend == "memory":
        from stepwise.store.memory import MemoryApiStore

        return MemoryApiStore()
    from stepwise.store.dynamodb import DynamoApiStore

    return DynamoApiStore(settings.api_table)
