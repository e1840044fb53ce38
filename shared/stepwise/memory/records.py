"""Long-term memory records: plain pydantic data shared by every store adapter.

A record lives in a *namespace* — a ``/``-separated path whose first segment is the tenant
(``acme/support-agent/user-42``). Records with the same ``key`` in a namespace form a history: a new
version *supersedes* the active one (``valid_to`` and ``superseded_by`` are set on the old one) instead
of deleting it, so a query "as of" any moment sees what was true then.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stepwise.errors import StepwiseError

Strategy = Literal["semantic", "summary", "preference", "episode", "procedural"]
STRATEGIES: tuple[str, ...] = ("semantic", "summary", "preference", "episode", "procedural")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")


class MemoryError_(StepwiseError, RuntimeError):
    """A memory request that cannot be served (bad namespace, unknown record, backend down)."""


class MemoryUnavailable(MemoryError_):
    """The memory backend did not answer; callers fall back to cached or empty results."""


def check_namespace(namespace: str) -> str:
    """Validate ``tenant/agent/user/...``: 1-8 segments of letters, digits and ``_.@:-``."""
    parts = namespace.strip("/").split("/")
    if not namespace or len(parts) > 8 or not all(_SEGMENT.match(p) for p in parts):
        raise MemoryError_(
            f"invalid memory namespace {namespace!r}: use 1-8 '/'-separated segments of letters, digits and _.@:- "
            "(the first is the tenant), e.g. 'acme/assistant/user-42'"
        )
    return "/".join(parts)


def tenant_of(namespace: str) -> str:
    return check_namespace(namespace).split("/", 1)[0]


def in_namespace(namespace: str, prefix: str) -> bool:
    """True when ``namespace`` is ``prefix`` or below it (segment-wise, so ``a/b`` does not match ``a/bc``)."""
    return namespace == prefix or namespace.startswith(prefix + "/")


def content_hash(namespace: str, strategy: str, key: str | None, text: str) -> str:
    norm = " ".join(text.split()).lower()
    return hashlib.sha256("\x1f".join((namespace, strategy, key or "", norm)).encode()).hexdigest()[:32]


class MemoryRecord(BaseModel):
    """One version of one memory. ``id`` is unique per version; ``key`` ties versions together."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    namespace: str
    strategy: Strategy = "semantic"
    text: str = Field(min_length=1, max_length=32_000)
    key: str | None = Field(default=None, max_length=256)
    metadata: dict[str, Any] = Field(default_factory=dict)
    importance: float = Field(default=0.5, ge=0, le=1)
    created_at: float = Field(default_factory=time.time)
    valid_from: float = Field(default_factory=time.time)
    valid_to: float | None = None
    superseded_by: str | None = None
    expires_at: float | None = None
    hash: str = ""
    source: dict[str, Any] = Field(default_factory=dict)

    @field_validator("namespace")
    @classmethod
    def _ns(cls, value: str) -> str:
        return check_namespace(value)

    @property
    def tenant(self) -> str:
        return self.namespace.split("/", 1)[0]

    def active(self, at: float | None = None) -> bool:
        now = time.time() if at is None else at
        if self.expires_at is not None and self.expires_at <= (time.time() if at is None else at):
            return False
        if at is None:
            return self.valid_to is None
        return self.valid_from <= now and (self.valid_to is None or now < self.valid_to)

    def with_hash(self) -> MemoryRecord:
        if not self.hash:
            self.hash = content_hash(self.namespace, self.strategy, self.key, self.text)
        return self


class MemoryHit(BaseModel):
    """A memory found by a search, with its score."""

    record: MemoryRecord
    score: float


class MemoryQuery(BaseModel):
    """What to look for: text (embedded by the store), where (namespace prefixes), how many, and filters."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    namespaces: list[str] = Field(min_length=1)
    strategies: list[Strategy] | None = None
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)
    top_k: int = Field(default=5, ge=1, le=100)
    as_of: float | None = None
    min_score: float = -1.0

    @field_validator("namespaces")
    @classmethod
    def _nss(cls, value: list[str]) -> list[str]:
        return [check_namespace(v) for v in value]
