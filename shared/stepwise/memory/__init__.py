"""Memory for agents: short-term (the thread's context window in Valkey, token-budgeted), long-term
(vector + metadata records in tenant namespaces, superseded not deleted), procedural (tool-call patterns
from successful runs) and the consolidation pipeline between them. See docs/memory.md.

Ports sit beside their adapters: ``ltm.LongTermStore`` with ``local.EmbeddedLongTermStore`` (SQLite +
usearch under ``.stepwise/memory/``) and ``opensearch.OpenSearchLongTermStore``; ``stm.ShortTermMemory``
over any redis-py client (``valkey.client()``: embedded Valkey or ElastiCache).
"""

from __future__ import annotations

from stepwise.memory.records import STRATEGIES, MemoryError_, MemoryHit, MemoryQuery, MemoryRecord, MemoryUnavailable, Strategy

__all__ = ["STRATEGIES", "MemoryError_", "MemoryHit", "MemoryQuery", "MemoryRecord", "MemoryUnavailable", "Strategy"]
