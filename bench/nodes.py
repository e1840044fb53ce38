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
