"""Small translations every provider shares: tool names on the wire, tolerant argument parsing, and the end
of a stream (assembled tool calls, then the final response)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from stepwise.llm.base import ChatResponse, StreamEvent, ToolCall, ToolSpec, Usage

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def wire_name(name: str) -> str:
    """Provider-safe tool name: ``server/tool`` becomes ``server__tool`` (APIs allow [A-Za-z0-9_-] only)."""
    return _UNSAFE.sub("_", name.replace("/", "__"))[:64]


def name_map(tools: list[ToolSpec]) -> dict[str, str]:
    """Wire name → the name the graph used, to translate the model's tool calls back."""
    return {wire_name(t.name): t.name for t in tools}


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments arrive as a JSON string (OpenAI) or an object (Anthropic, Bedrock)."""
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_value": value}


def text_of(content: Any) -> str:
    """Message content as text, whether it is a string or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return json.dumps(content)


Block = dict[str, Any]


def alternating_turns(
    messages: list[dict[str, Any]],
    *,
    text: Callable[[str], Block],
    tool_result: Callable[[str, str], Block],
    tool_use: Callable[[str, str, dict[str, Any]], Block],
) -> list[dict[str, Any]]:
    """OpenAI-style messages → user/assistant turns of content blocks (Anthropic Messages, Bedrock Converse):
    system messages are dropped (they travel separately), tool results become user blocks, consecutive
    same-role turns merge, the first turn is a user turn and the last is not the assistant's (a trailing
    assistant turn would be read as a prefill to continue). The providers differ only in block shapes."""
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[Block]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for m in messages:
        role = m.get("role")
        if role == "system":
            continue
        if role == "tool":
            add("user", [tool_result(m.get("tool_call_id", ""), text_of(m.get("content")))])
            continue
        body = text_of(m.get("content"))
        blocks = [text(body)] if body else []
        if role == "assistant":
            blocks += [tool_use(c["id"], wire_name(c["name"]), c.get("arguments") or {}) for c in m.get("tool_calls") or []]
            add("assistant", blocks)
        else:
            add("user", blocks)
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [text("(start)")]})
    if turns[-1]["role"] == "assistant":
        turns.append({"role": "user", "content": [text("Continue.")]})
    return turns


def finish_stream(
    text: list[str], blocks: dict[int, dict[str, str]], names: dict[str, str], *, stop_reason: str, usage: Usage, model: str
) -> Iterator[StreamEvent]:
    """The end of every provider's stream: one ``tool_call`` event per tool call assembled from its deltas
    (``blocks``: index -> id, wire name and the JSON text so far; in index order), then ``done`` with the
    whole response."""
    calls = [
        ToolCall(id=b["id"] or f"call_{i}", name=names.get(b["name"], b["name"]), arguments=parse_arguments(b["json"]))
        for i, b in sorted(blocks.items())
    ]
    for call in calls:
        yield StreamEvent(type="tool_call", tool_call=call)
    response = ChatResponse(content="".join(text), tool_calls=calls, stop_reason=stop_reason, usage=usage, model=model)
    yield StreamEvent(type="done", response=response)
