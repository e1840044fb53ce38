"""Stepwise function nodes for the benchmark graphs (referenced as ``bench.nodes:<name>`` in the specs)."""

from __future__ import annotations

from typing import Any

from bench import workload


def agent(state: dict[str, Any]) -> dict[str, Any]:
    return workload.agent_update(state["messages"], state["turns"])


def tool(state: dict[str, Any]) -> dict[str, Any]:
    return workload.tool_update(state["messages"])


def split(state: dict[str, Any]) -> dict[str, Any]:
    return workload.split_update(workload.FANOUT_WORKERS)


def worker(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    # every worker node shares this function; its index is in its node name (w0 .. w49)
    return workload.worker_update(int(ctx.node.rsplit("/", 1)[-1].lstrip("w")))


def join(state: dict[str, Any]) -> dict[str, Any]:
    return workload.join_update(state["results"])


def _index(ctx: Any) -> int:
    return int(ctx.node.rsplit("/", 1)[-1].lstrip("io"))


def io_worker_sync(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """W5, blocking: a node that waits on I/O the way a synchronous SDK call does."""
    import time

    time.sleep(float(state.get("latency", workload.IO_LATENCY_S)))
    return workload.io_update(_index(ctx))


async def io_worker_async(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """W5, awaiting: the same wait as an ``async def`` node (an async SDK call)."""
    import asyncio

    await asyncio.sleep(float(state.get("latency", workload.IO_LATENCY_S)))
    return workload.io_update(_index(ctx))


def io_join(state: dict[str, Any]) -> dict[str, Any]:
    return {"count": len(state.get("results", []))}


def short_a(state: dict[str, Any]) -> dict[str, Any]:
    return workload.short_update(1)


def short_b(state: dict[str, Any]) -> dict[str, Any]:
    return workload.short_update(2)


def short_c(state: dict[str, Any]) -> dict[str, Any]:
    return workload.short_update(3)
