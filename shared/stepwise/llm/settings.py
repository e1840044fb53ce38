"""LLM-layer settings: an optional YAML file (``STEPWISE_LLM_CONFIG``) overlaid by ``STEPWISE_LLM_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from stepwise.errors import SettingError
from stepwise.settings import validated

#: The default key variables of the providers that need one.
CREDENTIAL_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
#: Any of these makes Bedrock usable (``ModelHub.tiers``).
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_LAMBDA_FUNCTION_NAME")


class ProviderSettings(BaseModel):
    """One provider's endpoint, timeout, region and key variable."""

    model_config = ConfigDict(extra="forbid")
    base_url: str | None = None
    timeout_seconds: float | None = None
    region: str | None = None  # bedrock
    api_key_env: str | None = None  # which variable holds the key (default OPENAI_API_KEY / ANTHROPIC_API_KEY)


class LLMSettings(BaseModel):
    """The LLM layer's settings: cache, budgets, retries and providers."""

    model_config = ConfigDict(extra="forbid")
    cache: Literal["off", "exact", "semantic"] = "exact"
    cache_ttl_seconds: int = Field(default=3600, ge=1)
    semantic_threshold: float = Field(default=0.85, gt=0, le=1)
    embedder: str = "hashing"
    #: onnxruntime threads of the ``minilm`` embedder (``STEPWISE_EMBED_THREADS``, shared with memory).
    embed_threads: int = Field(default=1, ge=1)
    valkey_url: str | None = None
    #: Secrets Manager secret with the Valkey user's credentials (``STEPWISE_VALKEY_SECRET``, set by the stack).
    valkey_secret: str | None = None
    timeout_seconds: float = Field(default=60.0, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_seconds: float = Field(default=30.0, ge=0)
    run_budget_usd: float | None = Field(default=None, ge=0)
    tenant_budget_usd: float | None = Field(default=None, ge=0)
    tenant_budgets: dict[str, float] = Field(default_factory=dict)
    #: ``auto`` / ``tier:X`` choose among these; default: every priced model whose provider has credentials.
    tiers: dict[str, list[str]] = Field(default_factory=dict)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    #: Run every LLM node on this model, whatever the graph says (``STEPWISE_MODEL``): one switch to go live.
    model_override: str | None = None
    prices_file: str | None = None
    #: The credential variables the providers read (``OPENAI_API_KEY``, a provider's ``api_key_env``, their
    #: ``STEPWISE_<VAR>_SECRET``, the AWS ones that make Bedrock usable), copied from the environment by
    #: ``from_env``. Never printed: out of ``repr`` and of every dump.
    credentials: dict[str, str] = Field(default_factory=dict, repr=False, exclude=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LLMSettings:
        """The settings in ``environ`` (default: this process's environment) over the ``STEPWISE_LLM_CONFIG`` file;
        a bad value (or an unreadable file) raises ``SettingError`` naming the variable or the file's key."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        names: dict[str, str] = {}
        path = env.get("STEPWISE_LLM_CONFIG")
        if path:
            try:
                loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
                raise SettingError(f"STEPWISE_LLM_CONFIG={path!r} cannot be read as YAML ({reason}): fix it or unset it") from None
            if not isinstance(loaded, dict):
                raise SettingError(f"STEPWISE_LLM_CONFIG={path!r} must hold a mapping of settings, not {type(loaded).__name__}")
            data.update(loaded)
            names.update({str(key): f"{path}: {key}" for key in loaded})

        def take(field: str, var: str) -> None:
            if var in env:
                data[field], names[field] = env[var], var

        for name in (
            "cache",
            "cache_ttl_seconds",
            "semantic_threshold",
            "embedder",
            "timeout_seconds",
            "breaker_failures",
            "breaker_cooldown_seconds",
            "prices_file",
        ):
            take(name, f"STEPWISE_LLM_{name.upper()}")
        for name, var in (
            ("prices_file", "STEPWISE_LLM_PRICES"),  # the documented name of prices_file
            ("run_budget_usd", "STEPWISE_LLM_RUN_BUDGET_USD"),
            ("tenant_budget_usd", "STEPWISE_LLM_TENANT_BUDGET_USD"),
            ("valkey_url", "STEPWISE_VALKEY_URL"),
            ("embed_threads", "STEPWISE_EMBED_THREADS"),
            ("valkey_secret", "STEPWISE_VALKEY_SECRET"),
            ("model_override", "STEPWISE_MODEL"),
        ):
            if env.get(var):
                take(name, var)
        if env.get("AWS_LAMBDA_FUNCTION_NAME") and not data.get("valkey_url") and "cache" not in data:
            data["cache"] = "off"  # on Lambda the cache needs ElastiCache (STEPWISE_VALKEY_URL); never an embedded server
        settings = validated(cls, data, names)
        keys = {*CREDENTIAL_VARS, *(p.api_key_env for p in settings.providers.values() if p.api_key_env)}
        held = {*AWS_VARS, "STEPWISE_LOCAL_API_KEY", *keys, *(f"STEPWISE_{k}_SECRET" for k in keys)}
        return settings.model_copy(update={"credentials": {n: env[n] for n in sorted(held) if env.get(n)}})
