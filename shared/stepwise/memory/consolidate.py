"""Consolidation: STM over budget → importance → summarize → embed → store in LTM → evict from STM.

``consolidate_thread`` is the one pipeline, run (a) inline at an agent node's end when the thread's STM
is over its budget, (b) in the background by ``stepwise memory consolidate``, the opt-in worker thread of
``stepwise serve`` (``STEPWISE_MEMORY_WORKER=1``) and, on AWS, the consolidation Lambda on an EventBridge
schedule. Agent nodes with a ``memory:`` block register their thread in a Valkey set (``pending``) so the
background runs know which threads to look at.

Idempotent: memories are content-hashed (storing the same text twice returns the stored record), the
summary record's key is the thread's, and eviction only moves the STM offset forward — running it twice
stores nothing twice and evicts nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepwise.memory.extract import Candidate, extract_rules, summarize
from stepwise.memory.ltm import LongTermStore
from stepwise.memory.records import MemoryRecord
from stepwise.memory.stm import ShortTermMemory
from stepwise.memory.tokens import counter_for

PENDING_KEY = "stepwise:memory:pending"
Extractor = Callable[[Sequence[dict[str, Any]]], list[Candidate]]


@dataclass
class ConsolidationReport:
    """What one consolidation of a thread evicted and stored."""

    thread_id: str
    evicted: int = 0
    stored: list[str] = field(default_factory=list)
    skipped_low_importance: int = 0
    summary: str | None = None
    tokens_before: int = 0
    tokens_after: int = 0

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def store_candidates(
    ltm: LongTermStore,
    tenant: str,
    namespace: str,
    candidates: Sequence[Candidate],
    *,
    min_importance: float = 0.3,
    source: dict[str, Any] | None = None,
    now: float | None = None,
) -> tuple[list[MemoryRecord], int]:
    """Embed and store the candidates worth keeping; returns (stored or already-stored records, skipped)."""
    keep = [c for c in candidates if c.importance >= min_importance]
    records = [
        MemoryRecord(namespace=namespace, text=c.text, strategy=c.strategy, key=c.key, importance=c.importance, source=dict(source or {}))  # type: ignore[arg-type]
        for c in keep
    ]
    stored = ltm.remember_many(tenant, records, now=now) if records else []
    return stored, len(candidates) - len(keep)


def consolidate_thread(
    *,
    tenant: str,
    thread_id: str,
    stm: ShortTermMemory,
    ltm: LongTermStore,
    namespace: str,
    budget: int,
    model: str | None = None,
    thread_messages: Sequence[dict[str, Any]] | None = None,
    extractor: Extractor = extract_rules,
    min_importance: float = 0.3,
    now: float | None = None,
) -> ConsolidationReport:
    report = ConsolidationReport(thread_id)
    if thread_messages is not None:
        stm.sync(tenant, thread_id, thread_messages)
    counter, _ = counter_for(model)
    offset, held, previous = stm.state(tenant, thread_id)
    window = stm.window(tenant, thread_id, budget, model=model)  # with the running summary, as the agent sees it
    report.tokens_before = sum(counter(str(m.get("content") or "")) for m in held)
    if window.dropped == 0:  # within budget: nothing to consolidate
        report.tokens_after = report.tokens_before
        return report
    # 1. what falls out of the window is the oldest contiguous part (fit_window keeps a recent suffix + pins)
    # evict down to a low watermark (half the budget) so the next turns — and a second run — fit again
    kept = stm.window(tenant, thread_id, max(1, budget // 2), model=model).messages
    count = next((i for i, m in enumerate(held) if m in kept and not m.get("pin")), len(held))
    evicted = held[:count]
    pinned = [Candidate(str(m.get("content") or ""), "semantic", None, 1.0) for m in evicted if m.get("pin") and m.get("content")]
    # 2. importance: extract candidates and score them; keep the ones over the threshold
    source = {"thread_id": thread_id, "from": offset, "to": offset + count}
    stored, skipped = store_candidates(
        ltm, tenant, namespace, [*pinned, *extractor(evicted)], min_importance=min_importance, source=source, now=now
    )
    # 3. summarize what is evicted (with the previous running summary) and store it as a summary memory
    summary = summarize(evicted, previous, limit=max(200, budget))  # about a quarter of the budget in tokens
    digest = hashlib.sha256(f"{thread_id}:{offset + count}".encode()).hexdigest()[:12]
    summary_record = MemoryRecord(
        namespace=namespace,
        text=summary,
        strategy="summary",
        key=f"summary:{thread_id}"[:256],
        importance=0.5,
        source={**source, "digest": digest},
    )
    stored += ltm.remember_many(tenant, [summary_record], now=now)
    # 4. evict from STM (moving the offset) and keep the running summary in STM
    stm.evict(tenant, thread_id, count, summary)
    report.evicted, report.summary, report.skipped_low_importance = count, summary, skipped
    report.stored = [r.id for r in stored]
    report.tokens_after = sum(counter(str(m.get("content") or "")) for m in held[count:])
    return report


def mark_pending(client: Any, *, tenant: str, thread_id: str, namespace: str, budget: int, model: str | None) -> None:
    """Register a thread for background consolidation (a Valkey hash: one entry per thread)."""
    entry = json.dumps(
        {"tenant": tenant, "thread_id": thread_id, "namespace": namespace, "budget": budget, "model": model, "at": time.time()}
    )
    client.hset(PENDING_KEY, hashlib.sha256(f"{tenant}\x1f{thread_id}".encode()).hexdigest()[:24], entry)


def consolidate_pending(
    client: Any,
    stm: ShortTermMemory,
    ltm: LongTermStore,
    *,
    messages_of: Callable[[str, str], Sequence[dict[str, Any]] | None] | None = None,
    limit: int = 100,
) -> list[ConsolidationReport]:
    """One background pass over the registered threads (CLI, serve worker, scheduled Lambda)."""
    reports = []
    for field_name, raw in list(client.hgetall(PENDING_KEY).items())[:limit]:
        entry = json.loads(raw)
        thread_messages = messages_of(entry["tenant"], entry["thread_id"]) if messages_of else None
        if thread_messages is None and not stm.exists(entry["tenant"], entry["thread_id"]):
            client.hdel(PENDING_KEY, field_name)
            continue
        reports.append(
            consolidate_thread(
                tenant=entry["tenant"],
                thread_id=entry["thread_id"],
                stm=stm,
                ltm=ltm,
                namespace=entry["namespace"],
                budget=int(entry["budget"]),
                model=entry.get("model"),
                thread_messages=thread_messages,
            )
        )
        client.hdel(PENDING_KEY, field_name)
    return reports
