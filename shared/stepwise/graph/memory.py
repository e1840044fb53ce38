"""The node-level ``memory:`` block (pure data, validated when the graph loads). See docs/memory.md.

```yaml
memory:
  stm_budget: 2000                 # tokens of conversation sent per call (None: the whole thread)
  namespaces: ["{tenant}/{graph}/{user}"]
  strategies: [preference, semantic, summary, episode]
  top_k: 5
  min_score: 0.0
  write_back: true                 # consolidate the turn into long-term memory after the answer
  extract: rules                   # rules (offline, deterministic) or model (ask the node's model for JSON)
  procedural: false                # retrieve/record tool-call patterns keyed by task type
```
Namespace placeholders: ``{tenant}`` (required first segment: memories never cross tenants), ``{graph}``,
``{node}``, ``{thread}`` and ``{user}`` (the state channel named by ``user_channel``, default ``user_id``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MemoryStrategy = Literal["semantic", "summary", "preference", "episode", "procedural"]
DEFAULT_STRATEGIES: tuple[MemoryStrategy, ...] = ("preference", "semantic", "summary", "episode")
PLACEHOLDERS = frozenset({"tenant", "graph", "node", "thread", "user"})
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class MemoryConfig(BaseModel):
    """An agent node's memory: STM budget, namespaces, retrieval and write-back."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    stm_budget: int | None = Field(default=None, ge=64, le=2_000_000)
    namespaces: list[str] = Field(default_factory=lambda: ["{tenant}/{graph}/{user}"], min_length=1, max_length=8)
    strategies: list[MemoryStrategy] = Field(default_factory=lambda: list(DEFAULT_STRATEGIES), min_length=1)
    top_k: int = Field(default=5, ge=0, le=50)
    min_score: float = Field(default=0.0, ge=-1, le=1)  # top_k bounds what enters the prompt
    write_back: bool = True
    write_namespace: str | None = None  # where write-back stores (default: the first namespace)
    extract: Literal["rules", "model"] = "rules"
    procedural: bool = False
    user_channel: str = "user_id"

    @field_validator("namespaces")
    @classmethod
    def _templates(cls, value: list[str]) -> list[str]:
        for template in value:
            check_template(template)
        return value

    @field_validator("write_namespace")
    @classmethod
    def _write_template(cls, value: str | None) -> str | None:
        if value is not None:
            check_template(value)
        return value


def check_template(template: str) -> None:
    if not template.startswith("{tenant}"):
        raise ValueError(f"namespace {template!r} must start with '{{tenant}}' so memories never cross tenants")
    unknown = [p for p in _PLACEHOLDER.findall(template) if p not in PLACEHOLDERS]
    if unknown:
        raise ValueError(f"namespace {template!r} uses unknown placeholder {{{unknown[0]}}}; use {', '.join(sorted(PLACEHOLDERS))}")
    rest = _PLACEHOLDER.sub("x", template)
    if not re.fullmatch(r"[A-Za-z0-9_.@:/-]+", rest) or "//" in rest:
        raise ValueError(f"namespace {template!r}: segments may hold letters, digits and _.@:- between single '/'")


def render_namespace(template: str, values: dict[str, str | None]) -> str | None:
    """Fill the placeholders; None when a value is missing (then this namespace is skipped, never widened)."""
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(match.group(1))
        if not value:
            missing = True
            return ""
        return re.sub(r"[^A-Za-z0-9_.@:-]", "-", str(value))[:128]

    out = _PLACEHOLDER.sub(fill, template)
    return None if missing else out
