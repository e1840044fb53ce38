"""The counters the chaos tests add to and the session summary prints (one module, imported by both)."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()
