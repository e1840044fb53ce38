"""The tool layer's settings, read from the environment once (``ToolSettings.from_env``) where a process starts
(``Services``, the standalone tool server) and passed in: nothing else in ``stepwise.tools`` reads the environment.

Every field is one documented variable (docs/architecture.md lists them all):

STEPWISE_HTTP_ALLOWLIST          hosts ``http_fetch`` may call (comma-separated; empty: none)
STEPWISE_MCP_CONFIG              YAML file of MCP servers (``servers: {name: {command|url, ...}}``)
STEPWISE_RBAC                    ``strict``: a tool no role grants is refused (default: roles only where defined)
STEPWISE_API_TABLE               the DynamoDB table holding roles on AWS
STEPWISE_CAPABILITY_SECRET       Secrets Manager secret with the capability-token key (AWS)
STEPWISE_VALKEY_URL/_SECRET      where spent capability tokens are remembered (else this process)
STEPWISE_TOOL_*                  wall/CPU/output/start budget of one CPU-bound built-in call
STEPWISE_BWRAP, _SANDBOX_PYTHON  the sandbox's bubblewrap binary and jailed interpreter
STEPWISE_SANDBOX_FUNCTION        run the ``python`` tool in this Lambda (AWS) instead of bubblewrap
STEPWISE_SANDBOX_CPUS, _TENANT_CPUS, _TOTAL_CPUS   CPU shares (cores, or ``none``)
STEPWISE_SANDBOX_CGROUPS, _CGROUP                  cgroups off switch, and the cgroup root's name
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stepwise.settings import validated

if TYPE_CHECKING:
    from stepwise.tools.limits import ToolBudget

_OFF = ("off", "0", "false", "no")
_UNCAPPED = ("none", "max", "unlimited")
_CORES = "a number of cores ≥ 0.01 (0.5, 2) or 'none'"
#: Fields read from ``STEPWISE_<FIELD>`` (the ``tool_*``/``sandbox_*`` ones are found by their prefix).
_PLAIN = ("http_allowlist", "mcp_config", "rbac", "api_table", "capability_secret", "valkey_url", "valkey_secret", "bwrap")


class ToolSettings(BaseModel):
    """What the tool layer is configured with: the HTTP allow-list, MCP servers, RBAC, tokens, budgets, sandbox."""

    model_config = ConfigDict(frozen=True)

    http_allowlist: tuple[str, ...] = ()
    mcp_config: Path | None = None
    rbac: str = ""
    api_table: str = "stepwise-api"
    capability_secret: str | None = None
    valkey_url: str | None = None
    valkey_secret: str | None = None
    #: Running on Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set): spent tokens kept per container draw a warning.
    on_lambda: bool = False
    tool_wall_seconds: float = Field(default=10.0, gt=0)
    tool_cpu_seconds: int = Field(default=5, ge=1)
    tool_max_output_bytes: int = Field(default=200_000, ge=1)
    tool_start_seconds: float = Field(default=120.0, gt=0)
    bwrap: str | None = None
    sandbox_python: str | None = None
    sandbox_function: str | None = None
    #: Cores per sandboxed call, per tenant (all its calls) and in all; None: no cap at that level.
    sandbox_cpus: float | None = Field(default=1.0, ge=0.01, json_schema_extra={"accepted": _CORES})
    sandbox_tenant_cpus: float | None = Field(default=1.0, ge=0.01, json_schema_extra={"accepted": _CORES})
    sandbox_total_cpus: float | None = Field(default=None, ge=0.01, json_schema_extra={"accepted": _CORES})
    #: Put sandboxed calls in CPU cgroups where the machine allows it (``STEPWISE_SANDBOX_CGROUPS=off``: never).
    sandbox_cgroups: bool = True
    #: The cgroup root sandboxes sit under (None: ``cgroups.ROOT_NAME``, ``stepwise-sandbox``).
    sandbox_cgroup: str | None = None

    @field_validator("http_allowlist", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip() for h in value.split(",") if h.strip())
        return value

    @field_validator("sandbox_cpus", "sandbox_tenant_cpus", "sandbox_total_cpus", mode="before")
    @classmethod
    def _cores(cls, value: object) -> object:
        if isinstance(value, str):
            raw = value.strip().lower()
            if raw in _UNCAPPED:
                return None
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{value!r}: give cores as a number (0.5, 2) or 'none'") from None
        return value

    @field_validator("sandbox_cgroups", mode="before")
    @classmethod
    def _switch(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() not in _OFF
        return value

    @property
    def rbac_strict(self) -> bool:
        return self.rbac.strip().lower() == "strict"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ToolSettings:
        """The settings in ``environ`` (default: this process's environment); a bad value raises ``SettingError``
        naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {name: env[f"STEPWISE_{name.upper()}"] for name in _PLAIN if env.get(f"STEPWISE_{name.upper()}")}
        for name in cls.model_fields:
            if name.startswith(("tool_", "sandbox_")) and env.get(f"STEPWISE_{name.upper()}", "").strip():
                values[name] = env[f"STEPWISE_{name.upper()}"]
        values["on_lambda"] = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
        return validated(cls, values, {name: f"STEPWISE_{name.upper()}" for name in cls.model_fields})

    def budget(self) -> ToolBudget:
        """The wall/CPU/output budget of one CPU-bound built-in call."""
        from stepwise.tools.limits import ToolBudget

        return ToolBudget(
            wall_seconds=self.tool_wall_seconds,
            cpu_seconds=self.tool_cpu_seconds,
            max_output_bytes=self.tool_max_output_bytes,
            start_seconds=self.tool_start_seconds,
        )
