"""Function nodes that count their calls and can fail once on demand, for tests of where runs (re)start.

Graphs name them as ``tests.support.counted:<fn>``; tests import this module by the same name, so both
see one ``CALLS`` and one ``FAIL_ONCE``."""

from __future__ import annotations

from collections import Counter
from typing import Any

CALLS: Counter[str] = Counter()
FAIL_ONCE: set[str] = set()


def _node(name: str) -> dict[str, Any]:
    CALLS[name] += 1
    if name in FAIL_ONCE:
        FAIL_ONCE.discard(name)
        raise RuntimeError(f"{name}: the downstream service is down")
    return {"trail": [name]}


def tick(state: dict[str, Any]) -> dict[str, Any]:
    return _node("tick")


def done(state: dict[str, Any]) -> dict[str, Any]:
    return _node("done")


def a(state: dict[str, Any]) -> dict[str, Any]:
    return _node("a")


def b(state: dict[str, Any]) -> dict[str, Any]:
    return _node("b")


def c(state: dict[str, Any]) -> dict[str, Any]:
    return _node("c")


def split(state: dict[str, Any]) -> dict[str, Any]:
    return _node("split")


def left(state: dict[str, Any]) -> dict[str, Any]:
    return _node("left")


def right(state: dict[str, Any]) -> dict[str, Any]:
    return _node("right")


def join(state: dict[str, Any]) -> dict[str, Any]:
    return _node("join")
