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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from stepwise.api.store import ApiStore

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

    @field_validator("api_allowed_modules", "jwt_algorithms", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ApiSettings:
        env = environ if environ is not None else dict(os.environ)
        values = {name: env[f"STEPWISE_{name.upper()}"] for name in cls.model_fields if f"STEPWISE_{name.upper()}" in env}
        return cls.model_validate(values)


def build_store(settings: ApiSettings) -> ApiStore:
    """The API store matching the engine's backend: SQLite beside stepwise.db, memory, or DynamoDB."""
    if settings.backend == "embedded":
        from stepwise.api.store.sqlite import SqliteApiStore

        return SqliteApiStore(settings.home / "api.db")
    if settings.backend == "memory":
        from stepwise.api.store.memory import MemoryApiStore

        return MemoryApiStore()
    from stepwise.api.store.dynamodb import DynamoApiStore

    return DynamoApiStore(settings.api_table)
