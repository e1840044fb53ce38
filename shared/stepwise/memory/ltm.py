"""The long-term memory port. ``LongTermStore`` owns the protocol — embedding, idempotency, supersede
with history, "as of" reads, TTL, tenant checks — and adapters implement five primitives over their
backend (``local.py``: SQLite + numpy/usearch on disk; ``opensearch.py``: OpenSearch k-NN).

Tenant isolation: every call names the caller's tenant, every namespace it touches must start with that
tenant, and every primitive receives the tenant and filters on it in the backend, so no query can return
another tenant's records even with a crafted namespace.
"""

from __future__ import annotations

import builtins
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from stepwise.memory.embedders import Embedder, make_embedder
from stepwise.memory.records import (
    MemoryError_,
    MemoryHit,
    MemoryQuery,
    MemoryRecord,
    Strategy,
    check_namespace,
    content_hash,
)


class Filter:
    """Backend-neutral filter: tenant (always), namespace prefixes, strategies, metadata equality, key, hash, time."""

    def __init__(
        self,
        tenant: str,
        *,
        namespaces: Sequence[str] | None = None,
        strategies: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        key: str | None = None,
        hash: str | None = None,
        ids: Sequence[str] | None = None,
        active_only: bool = True,
        as_of: float | None = None,
        now: float | None = None,
    ) -> None:
        self.tenant = tenant
        self.namespaces = list(namespaces or [])
        self.strategies = list(strategies or [])
        self.metadata = dict(metadata or {})
        self.key, self.hash = key, hash
        self.ids = list(ids) if ids is not None else None
        self.active_only, self.as_of = active_only, as_of
        self.now = time.time() if now is None else now

    def matches(self, r: MemoryRecord) -> bool:
        """The reference semantics every adapter's backend query must agree with (the contract suite checks it)."""
        if r.tenant != self.tenant:
            return False
        if self.namespaces and not any(r.namespace == n or r.namespace.startswith(n + "/") for n in self.namespaces):
            return False
        if self.strategies and r.strategy not in self.strategies:
            return False
        if any(r.metadata.get(k) != v for k, v in self.metadata.items()):
            return False
        if self.key is not None and r.key != self.key:
            return False
        if self.hash is not None and r.hash != self.hash:
            return False
        if self.ids is not None and r.id not in self.ids:
            return False
        if r.expires_at is not None and r.expires_at <= self.now:
            return False
        if self.as_of is not None:
            return r.valid_from <= self.as_of and (r.valid_to is None or self.as_of < r.valid_to)
        return not self.active_only or r.valid_to is None


class LongTermStore(ABC):
    """Base class: the memory protocol on top of five adapter primitives."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder or make_embedder()

    # -- primitives ------------------------------------------------------------------------------
    @abstractmethod
    def _put(self, tenant: str, records: Sequence[MemoryRecord], vectors: np.ndarray | None) -> None:
        """Upsert by ``id``. ``vectors`` is None when only fields other than the text changed."""

    @abstractmethod
    def _find(self, where: Filter, limit: int) -> list[MemoryRecord]: ...

    @abstractmethod
    def _search(self, where: Filter, vector: np.ndarray, k: int) -> list[tuple[MemoryRecord, float]]: ...

    @abstractmethod
    def _delete(self, tenant: str, ids: Sequence[str]) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources (indexes on disk, connections)."""

    # -- protocol --------------------------------------------------------------------------------
    @staticmethod
    def _own(tenant: str, namespace: str) -> str:
        namespace = check_namespace(namespace)
        if namespace.split("/", 1)[0] != tenant:
            raise MemoryError_(f"namespace {namespace!r} is not in tenant {tenant!r}: namespaces start with the tenant")
        return namespace

    def remember(
        self,
        tenant: str,
        namespace: str,
        text: str,
        *,
        strategy: Strategy = "semantic",
        key: str | None = None,
        metadata: dict[str, Any] | None = None,
        importance: float = 0.5,
        ttl_seconds: float | None = None,
        source: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> MemoryRecord:
        """Store a memory. Idempotent: the same text in the same namespace/strategy/key returns the stored record.
        With a ``key``, the active record of that key is superseded (kept in history), not deleted."""
        return self.remember_many(
            tenant,
            [
                MemoryRecord(
                    namespace=self._own(tenant, namespace),
                    text=text,
                    strategy=strategy,
                    key=key,
                    metadata=metadata or {},
                    importance=importance,
                    source=source or {},
                    expires_at=(now or time.time()) + ttl_seconds if ttl_seconds else None,
                )
            ],
            now=now,
        )[0]

    def remember_many(self, tenant: str, records: Sequence[MemoryRecord], *, now: float | None = None) -> list[MemoryRecord]:
        now = time.time() if now is None else now
        out: list[MemoryRecord] = []
        new: list[MemoryRecord] = []
        closed: list[MemoryRecord] = []
        for record in records:
            self._own(tenant, record.namespace)
            record = record.model_copy(update={"created_at": now, "valid_from": now, "valid_to": None, "superseded_by": None, "hash": ""})
            record.with_hash()
            same = self._find(Filter(tenant, namespaces=[record.namespace], hash=record.hash, now=now), 10)
            same = [r for r in same if r.namespace == record.namespace] or [r for r in new if r.hash == record.hash]
            if same:
                out.append(same[0])
                continue
            if record.key:
                for old in self._find(Filter(tenant, namespaces=[record.namespace], key=record.key, now=now), 100):
                    if old.namespace == record.namespace:
                        closed.append(old.model_copy(update={"valid_to": now, "superseded_by": record.id}))
                for old in new:
                    if old.key == record.key and old.namespace == record.namespace and old.valid_to is None:
                        old.valid_to, old.superseded_by = now, record.id
            new.append(record)
            out.append(record)
        if new:
            self._put(tenant, new, self.embedder.embed([r.text for r in new]))
        if closed:
            self._put(tenant, closed, None)
        return out

    def search(self, tenant: str, query: MemoryQuery, *, now: float | None = None) -> list[MemoryHit]:
        namespaces = [self._own(tenant, n) for n in query.namespaces]
        where = Filter(tenant, namespaces=namespaces, strategies=query.strategies, metadata=query.metadata, as_of=query.as_of, now=now)
        vector = self.embedder.embed([query.text or " "])[0]
        hits = self._search(where, vector, query.top_k)
        return [MemoryHit(record=r, score=s) for r, s in hits if s >= query.min_score][: query.top_k]

    def get(self, tenant: str, record_id: str) -> MemoryRecord:
        found = self._find(Filter(tenant, ids=[record_id], active_only=False), 1)
        if not found:
            raise MemoryError_(f"no memory {record_id!r} in tenant {tenant!r}")
        return found[0]

    def list(
        self,
        tenant: str,
        namespace: str | None = None,
        *,
        strategies: Sequence[str] | None = None,
        include_history: bool = False,
        as_of: float | None = None,
        limit: int = 100,
    ) -> list[MemoryRecord]:
        namespaces = [self._own(tenant, namespace)] if namespace else [tenant]
        where = Filter(tenant, namespaces=namespaces, strategies=strategies, active_only=not include_history, as_of=as_of)
        return sorted(self._find(where, limit), key=lambda r: (r.created_at, r.id))

    def history(self, tenant: str, record_id: str) -> builtins.list[MemoryRecord]:
        """Every version of the memory ``record_id`` belongs to, oldest first."""
        record = self.get(tenant, record_id)
        if not record.key:
            chain = [record]
        else:
            chain = [
                r
                for r in self._find(Filter(tenant, namespaces=[record.namespace], key=record.key, active_only=False), 1000)
                if r.namespace == record.namespace
            ]
        return sorted(chain, key=lambda r: (r.valid_from, r.created_at))

    def edit(self, tenant: str, record_id: str, text: str, *, metadata: dict[str, Any] | None = None) -> MemoryRecord:
        """A reviewed correction: a new version that supersedes ``record_id`` (which stays in history)."""
        old = self.get(tenant, record_id)
        if old.valid_to is not None:
            raise MemoryError_(f"memory {record_id!r} was superseded by {old.superseded_by!r}; edit the current version")
        key = old.key or f"id:{old.id}"
        if not old.key:
            self._put(tenant, [old.model_copy(update={"key": key})], None)
        return self.remember(
            tenant,
            old.namespace,
            text,
            strategy=old.strategy,
            key=key,
            metadata={**old.metadata, **(metadata or {})},
            importance=old.importance,
            source={**old.source, "edited_from": old.id},
        )

    def forget(self, tenant: str, record_id: str) -> int:
        """Delete a memory and every version of it (the only hard delete). Returns how many versions went."""
        chain = self.history(tenant, record_id)
        self._delete(tenant, [r.id for r in chain])
        return len(chain)

    def forget_namespace(self, tenant: str, namespace: str) -> int:
        found = self._find(Filter(tenant, namespaces=[self._own(tenant, namespace)], active_only=False, now=0.0), 100_000)
        self._delete(tenant, [r.id for r in found])
        return len(found)

    def expire(self, tenant: str, *, now: float | None = None) -> int:
        """Delete records whose TTL has passed (reads already hide them)."""
        now = time.time() if now is None else now
        found = self._find(Filter(tenant, namespaces=[tenant], active_only=False, now=0.0), 100_000)
        gone = [r.id for r in found if r.expires_at is not None and r.expires_at <= now]
        if gone:
            self._delete(tenant, gone)
        return len(gone)


def exact_top_k(matrix: np.ndarray, vector: np.ndarray, k: int) -> builtins.list[tuple[int, float]]:
    """Brute-force cosine top-k over unit rows (the numpy baseline and the small-collection path)."""
    if len(matrix) == 0:
        return []
    scores = matrix @ vector
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(i), float(scores[i])) for i in top]


__all__ = ["Filter", "LongTermStore", "content_hash", "exact_top_k"]
