"""Deployment settings from CDK context (``cdk.json`` or ``-c key=value``).

stepwise:prefix       name prefix of every resource (default ``stepwise``)
stepwise:stage        stage name, e.g. dev / prod (default ``dev``); ``prod`` retains data on delete,
                      turns on deletion protection and OpenSearch standby replicas
stepwise:region       deploy region (default: the CLI's, ``CDK_DEFAULT_REGION``; unset = env-agnostic)
stepwise:account      deploy account (default ``CDK_DEFAULT_ACCOUNT``)
stepwise:bundle       ``false`` skips building the layer (template-only synth, tests, no network)
stepwise:vectorStore  ``false`` leaves out the OpenSearch Serverless collection (its idle cost dominates)
stepwise:natGateways  NAT gateways for the functions' internet egress (LLM APIs), default 1
stepwise:allowedModules  STEPWISE_API_ALLOWED_MODULES for the API (comma-separated module prefixes)
stepwise:cognito      ``true`` creates a Cognito user pool whose ID tokens the API accepts (tenant in ``custom:tenant``,
                      roles from the pool's groups)
stepwise:jwtIssuer, stepwise:jwtAudience, stepwise:jwtTenantClaim, stepwise:jwtRolesClaim
                      accept JWTs of any other OIDC issuer instead (not with ``stepwise:cognito``)
stepwise:usagePlans   API Gateway usage plans for the tenants: JSON ``{"<name>": {"rate": r, "burst": b,
                      "quota": n, "period": "DAY|WEEK|MONTH"}}`` (quota optional; the first plan is the default
                      for new keys), or ``false`` for none; default ``{"default": {"rate": 50, "burst": 100}}``
stepwise:code         your agents' code, deployed without editing this repository: comma-separated directories
                      (absolute, or relative to the repository root) whose Python packages go into an "agent
                      code" layer on the step, api and trigger functions; each package is added to
                      stepwise:allowedModules, so graphs sent to the API may name its functions (docs/deploy.md)
stepwise:triggers     graphs whose ``triggers:`` the stack turns into EventBridge rules and Scheduler schedules,
                      as ``tenant=path.yaml`` pairs (comma-separated string, or a JSON list of
                      ``{"tenant": ..., "graph": ...}``); paths relative to the repository root
stepwise:recoverEvery minutes between passes of the scheduled recovery of stale Step Functions runs (the
                      ``recover`` Lambda, infra/stacks/recovery.py), 1-1440, default 5; ``false`` (or 0) deploys none
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("false", "0", "no", "off")


@dataclass(frozen=True)
class StackConfig:
    prefix: str = "stepwise"
    stage: str = "dev"
    region: str | None = None
    account: str | None = None
    bundle: bool = True
    vector_store: bool = True
    nat_gateways: int = 1
    allowed_modules: str = "statemachines.,stepwise.examples.,stepwise.tools."  # as `stepwise serve` (a test keeps them equal)
    triggers: tuple[tuple[str, str], ...] = ()
    code_dirs: tuple[str, ...] = ()
    cognito: bool = False
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_tenant_claim: str = "tenant"
    jwt_roles_claim: str = "roles"
    usage_plans: tuple[UsagePlan, ...] = ()
    recover_minutes: int | None = 5

    def __post_init__(self) -> None:
        if self.recover_minutes is not None and not 1 <= self.recover_minutes <= 1440:
            raise ValueError(
                f"stepwise:recoverEvery={self.recover_minutes!r}: minutes between recovery passes, 1-1440"
                " (or false for no scheduled recovery)"
            )
        for what, value in (("stepwise:prefix", self.prefix), ("stepwise:stage", self.stage)):
            if not _NAME.match(value):
                raise ValueError(f"{what}={value!r}: use 1-20 lowercase letters, digits or '-', starting with a letter")
        if self.cognito and self.jwt_issuer:
            raise ValueError(
                "set either stepwise:cognito=true (a user pool of this stack) or stepwise:jwtIssuer (another issuer), not both"
            )
        if bool(self.jwt_issuer) != bool(self.jwt_audience):
            raise ValueError("stepwise:jwtIssuer and stepwise:jwtAudience go together (the audience is the client id tokens are issued to)")
        if self.jwt_issuer and not self.jwt_issuer.startswith("https://"):
            raise ValueError(f"stepwise:jwtIssuer={self.jwt_issuer!r}: an OIDC issuer is an https:// URL")

    @property
    def name_prefix(self) -> str:
        """``<prefix>-<stage>``: the prefix of resource names and of the agents' state machines."""
        return f"{self.prefix}-{self.stage}"

    @property
    def production(self) -> bool:
        return self.stage == "prod"

    @classmethod
    def from_context(cls, node: Any) -> StackConfig:
        def get(key: str) -> Any:
            return node.try_get_context(f"stepwise:{key}")

        return cls(
            prefix=str(get("prefix") or "stepwise"),
            stage=str(get("stage") or "dev"),
            region=get("region") or os.environ.get("CDK_DEFAULT_REGION"),
            account=get("account") or os.environ.get("CDK_DEFAULT_ACCOUNT"),
            bundle=_flag(get("bundle"), True),
            vector_store=_flag(get("vectorStore"), True),
            nat_gateways=int(get("natGateways") if get("natGateways") is not None else 1),
            allowed_modules=_with_code(str(get("allowedModules") or cls.allowed_modules), _code_dirs(get("code"))),
            code_dirs=_code_dirs(get("code")),
            triggers=_trigger_graphs(get("triggers")),
            cognito=_flag(get("cognito"), False),
            jwt_issuer=get("jwtIssuer") or None,
            jwt_audience=get("jwtAudience") or None,
            jwt_tenant_claim=str(get("jwtTenantClaim") or "tenant"),
            jwt_roles_claim=str(get("jwtRolesClaim") or "roles"),
            usage_plans=_usage_plans(get("usagePlans")),
            recover_minutes=_recover_minutes(get("recoverEvery")),
        )


def _recover_minutes(value: Any) -> int | None:
    """``stepwise:recoverEvery``: minutes (default 5); ``false``/``0``/``off`` for no scheduled recovery."""
    if value is None:
        return 5
    if value is False or not _flag(value, True):
        return None
    try:
        minutes = int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"stepwise:recoverEvery={value!r}: a whole number of minutes (1-1440), or false for no scheduled recovery"
        ) from None
    return minutes or None


def _code_dirs(value: Any) -> tuple[str, ...]:
    """``stepwise:code``: directories of agent code (a comma-separated string or a JSON list)."""
    if not value:
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def code_packages(directory: Path) -> list[str]:
    """The Python packages at the top of an agent-code directory (folders with an ``__init__.py``)."""
    if not directory.is_dir():
        raise ValueError(f"stepwise:code: {directory} is not a directory; point it at the folder that holds your packages")
    found = sorted(p.name for p in directory.iterdir() if (p / "__init__.py").is_file() and p.name.isidentifier())
    if not found:
        raise ValueError(f"stepwise:code: {directory} holds no Python package (a folder with __init__.py)")
    return found


def resolve_code_dir(path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(__file__).resolve().parents[2] / candidate


def _with_code(allowed: str, code_dirs: tuple[str, ...]) -> str:
    """The allow-list plus every package of the agent-code directories (``mypkg.``)."""
    prefixes = [p for p in allowed.split(",") if p]
    for directory in code_dirs:
        prefixes += [f"{name}." for name in code_packages(resolve_code_dir(directory)) if f"{name}." not in prefixes]
    return ",".join(prefixes)


@dataclass(frozen=True)
class UsagePlan:
    """One API Gateway usage plan: steady requests/second, burst, and an optional quota per period."""

    name: str
    rate: float
    burst: int
    quota: int | None = None
    period: str = "DAY"

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z0-9_-]{1,40}$", self.name):
            raise ValueError(f"usage plan name {self.name!r}: 1-40 letters, digits, '-' or '_'")
        if self.rate <= 0 or self.burst < 1 or (self.quota is not None and self.quota < 1):
            raise ValueError(f"usage plan {self.name!r}: rate > 0, burst >= 1 and quota >= 1 (or no quota)")
        if self.period not in ("DAY", "WEEK", "MONTH"):
            raise ValueError(f"usage plan {self.name!r}: period is DAY, WEEK or MONTH, not {self.period!r}")


DEFAULT_USAGE_PLANS = {"default": {"rate": 50, "burst": 100}}


def _usage_plans(value: Any) -> tuple[UsagePlan, ...]:
    if value is None:
        value = DEFAULT_USAGE_PLANS
    if isinstance(value, str):
        if not _flag(value, True):
            return ()
        value = json.loads(value)
    if value is False:
        return ()
    if not isinstance(value, dict) or not value:
        raise ValueError('stepwise:usagePlans: a JSON object {"<name>": {"rate": 50, "burst": 100}} or false')
    plans = []
    for name, spec in value.items():
        if not isinstance(spec, dict) or not {"rate", "burst"} <= set(spec) or not set(spec) <= {"rate", "burst", "quota", "period"}:
            raise ValueError(f"stepwise:usagePlans: plan {name!r} needs rate and burst (and optionally quota, period)")
        plans.append(UsagePlan(name=str(name), **spec))
    return tuple(plans)


def _trigger_graphs(value: Any) -> tuple[tuple[str, str], ...]:
    """``stepwise:triggers``: "acme=graphs/a.yaml,globex=graphs/b.yaml" or [{"tenant": "acme", "graph": "graphs/a.yaml"}]."""
    if not value:
        return ()
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = json.loads(value)
    pairs: list[tuple[str, str]] = []
    items = value if isinstance(value, list) else str(value).split(",")
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("tenant"), str) and isinstance(item.get("graph"), str):
            pairs.append((item["tenant"], item["graph"]))
        elif isinstance(item, str) and item.count("=") == 1 and all(part.strip() for part in item.split("=")):
            tenant, graph = (part.strip() for part in item.split("="))
            pairs.append((tenant, graph))
        else:
            raise ValueError(f"stepwise:triggers: {item!r} is not tenant=path.yaml (or {{'tenant': ..., 'graph': ...}})")
    return tuple(pairs)
