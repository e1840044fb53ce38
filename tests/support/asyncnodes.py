"""Function nodes for the local engine's concurrency tests: branches that can only finish if they run together."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

WIDTH = 50
_gate: dict[str, Any] = {}


def reset(width: int = WIDTH) -> None:
    _gate.clear()
    _gate.update(waiting=0, width=width, threads=set(), order=[], barrier=threading.Barrier(5, timeout=20))


def split(state: dict[str, Any]) -> dict[str, Any]:
    return {}


async def together(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Waits until every branch is waiting: only possible if all of them are in flight at once."""
    index = int(ctx.node.lstrip("b"))
    if "event" not in _gate:
        _gate["event"] = asyncio.Event()
        _gate["done"] = {i: asyncio.Event() for i in range(_gate["width"] + 1)}
    _gate["threads"].add(threading.current_thread().name)
    _gate["waiting"] += 1
    if _gate["waiting"] == _gate["width"]:
        _gate["event"].set()
    await asyncio.wait_for(_gate["event"].wait(), timeout=20)
    # finish in reverse branch order: branch i waits for branch i+1 (the last one goes first)
    if index + 1 < _gate["width"]:
        await asyncio.wait_for(_gate["done"][index + 1].wait(), timeout=20)
    _gate["order"].append(index)
    _gate["done"][index].set()
    return {"results": [index]}


def blocking(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A synchronous node that blocks until five of its siblings block with it."""
    _gate["barrier"].wait()
    return {"results": [int(ctx.node.lstrip("b"))]}


async def single(state: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"results": ["async"]}


def count(state: dict[str, Any]) -> dict[str, Any]:
    return {"count": len(state.get("results", []))}
