"""The ``act`` half of a ReAct loop as a function node: run the tool calls of the last assistant message."""

from __future__ import annotations

import json
from typing import Any

from stepwise.state.events import TOOL_CALL
from stepwise.tools.builtin import BUILTINS


def run_tool_calls(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Execute each pending tool call; a failing tool becomes an observation for the agent, not a crash."""
    last = (state.get("messages") or [{}])[-1]
    results = []
    for call in last.get("tool_calls") or []:
        name, args = call["name"], call.get("arguments") or {}
        idempotency_key = f"{ctx.key}|{call['id']}"
        try:
            fn = BUILTINS[name][0]
            output: Any = fn(**args)
            ok = True
        except Exception as exc:  # noqa: BLE001 - the error goes back to the agent as an observation
            output, ok = f"error: {type(exc).__name__}: {exc}", False
        ctx.record(TOOL_CALL, tool=name, arguments=args, result=output, ok=ok, idempotency_key=idempotency_key)
        results.append({"role": "tool", "tool_call_id": call["id"], "name": name, "content": json.dumps(output)})
    return {"messages": results}
