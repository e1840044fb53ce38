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
stepwise:triggers     graphs whose ``triggers:`` the stack turns into EventBridge rules and Scheduler schedules,
                      as ``tenant=path.yaml`` pairs (comma-separated string, or a JSON list of
                      ``{"tenant": ..., "graph": ...}``); paths relative to the repository root
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
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
    allowed_modules: str = "statemachines.,stepwise.tools."
    triggers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for what, value in (("stepwise:prefix", self.prefix), ("stepwise:stage", self.stage)):
            if not _NAME.match(value):
                raise ValueError(f"{what}={value!r}: use 1-20 lowercase letters, digits or '-', starting with a letter")

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
            allowed_modules=str(get("allowedModules") or cls.allowed_modules),
            triggers=_trigger_graphs(get("triggers")),
        )


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
