"""The ``act`` half of a graph-level ReAct loop as a function node: run the tool calls of the last
assistant message through the action executor (MCP, timeouts, retries, parallel calls, journalled with
idempotency keys). A failing tool becomes an observation for the agent, not a crash."""

from __future__ import annotations

from typing import Any


def run_tool_calls(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    from stepwise.llm.base import ToolCall

    last = (state.get("messages") or [{}])[-1]
    calls = [ToolCall.model_validate(c) for c in last.get("tool_calls") or []]
    if not calls:
        return {"messages": []}
    timeouts = dict((ctx.node_spec.config or {}).get("tool_timeouts") or {})
    outcomes = ctx.run_tools(calls, timeouts=timeouts, allowed=declared_tools(last, ctx))
    return {"messages": [o.message() for o in outcomes]}


def declared_tools(message: dict[str, Any], ctx: Any) -> list[str]:
    """The tools this act node may run: its own ``tools:`` if it declares some, else those of the agent node
    that wrote the message (``name``). Anything else (an unattributed message) may run nothing."""
    if ctx.node_spec.tools:
        return list(ctx.node_spec.tools)
    author = ctx.spec.graph.nodes.get(str(message.get("name") or ""))
    return list(author.tools) if author is not None else []
