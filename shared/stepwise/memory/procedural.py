"""Procedural memory: tool-call patterns that worked, keyed by task type, retrieved as few-shot guidance.

A pattern is the sequence of tool names with the *shape* of their arguments (the keys, never the values —
values may hold user data), stored as an LTM record of strategy ``procedural`` with key
``proc:<task type>:<sequence hash>`` and metadata ``{task_type, successes, failures, weight}``. Each
outcome supersedes the previous version (so the history of a pattern's record is its track record);
``weight = (successes + 1) / (successes + failures + 2)`` (Laplace), so a pattern that later fails loses
weight and sinks below the ones that keep working. ``suggest`` ranks by similarity × weight.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stepwise.memory.ltm import Filter, LongTermStore
from stepwise.memory.records import MemoryQuery, MemoryRecord


@dataclass
class Pattern:
    """A stored tool sequence and how well it matches a task."""

    record: MemoryRecord
    score: float

    @property
    def weight(self) -> float:
        return float(self.record.metadata.get("weight", 0.5))

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.record.metadata.get("steps") or [])


def tool_sequence(messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """(steps, all ok) from a turn's assistant tool calls and their results."""
    steps: list[dict[str, Any]] = []
    ok = True
    for m in messages:
        for call in m.get("tool_calls") or []:
            if isinstance(call, dict):
                steps.append({"tool": call.get("name"), "args": sorted((call.get("arguments") or {}).keys())})
        if m.get("role") == "tool" and str(m.get("content") or "").startswith("error:"):
            ok = False
    return steps, ok


def describe(task_type: str, steps: Sequence[dict[str, Any]]) -> str:
    chain = " → ".join(f"{s['tool']}({', '.join(s['args'])})" for s in steps)
    return f"For a {task_type} task: {chain}"


class ProceduralMemory:
    """Remembers which tool sequences worked for which tasks, and suggests them."""

    def __init__(self, ltm: LongTermStore) -> None:
        self.ltm = ltm

    def record(self, tenant: str, namespace: str, task_type: str, steps: Sequence[dict[str, Any]], ok: bool) -> MemoryRecord | None:
        if not steps:
            return None
        digest = hashlib.sha256(json.dumps(list(steps), sort_keys=True).encode()).hexdigest()[:12]
        key = f"proc:{task_type}:{digest}"[:256]
        current = [r for r in self.ltm._find(Filter(tenant, namespaces=[namespace], key=key), 5) if r.namespace == namespace]
        meta: dict[str, Any] = (
            dict(current[0].metadata) if current else {"task_type": task_type, "steps": list(steps), "successes": 0, "failures": 0}
        )
        meta["successes" if ok else "failures"] = int(meta.get("successes" if ok else "failures", 0)) + 1
        s, f = int(meta["successes"]), int(meta["failures"])
        meta["weight"] = round((s + 1) / (s + f + 2), 4)
        text = f"{describe(task_type, steps)} (worked {s}×, failed {f}×)"
        return self.ltm.remember(tenant, namespace, text, strategy="procedural", key=key, metadata=meta, importance=float(meta["weight"]))

    def suggest(self, tenant: str, namespaces: Sequence[str], task_type: str, text: str, k: int = 3) -> list[Pattern]:
        query = MemoryQuery(
            text=text or task_type, namespaces=list(namespaces), strategies=["procedural"], metadata={"task_type": task_type}, top_k=20
        )
        hits = self.ltm.search(tenant, query)
        ranked = sorted((Pattern(h.record, h.score * float(h.record.metadata.get("weight", 0.5))) for h in hits), key=lambda p: -p.score)
        return ranked[:k]


def few_shot(patterns: Sequence[Pattern]) -> str:
    if not patterns:
        return ""
    lines = [f"- {p.record.text}" for p in patterns]
    return "Tool sequences that worked for similar tasks before (weight = past success rate):\n" + "\n".join(lines)
