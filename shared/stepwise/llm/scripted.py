"""An offline, deterministic model: it answers from a script, for examples, tests and benchmarks.

A script is a list of responses; call ``n`` of a node gets entry ``n`` (the last entry repeats).
An entry is a string (the reply), or a mapping with ``content``, ``tool_calls`` and any extra
fields (a planner's ``subtasks``, a synthesizer's ``quality``). ``{task}`` in a string is replaced
by the current Map item's title, ``{question}`` by the last user message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from stepwise.llm.base import ChatRequest, ChatResponse, StreamEvent, ToolCall, Usage


class ScriptedModel:
    """A model that answers from a script: offline, deterministic runs."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script

    def complete(self, request: ChatRequest) -> ChatResponse:
        turn = int(request.metadata.get("turn", 0))
        question = next((m.get("content", "") for m in reversed(request.messages) if m.get("role") == "user"), "")
        task = str((request.metadata.get("item") or {}).get("title", ""))
        if not self.script:
            entry: Any = f"{request.metadata.get('node', 'agent')}: {task or question}".strip()
        else:
            entry = self.script[min(turn, len(self.script) - 1)]
        if isinstance(entry, str):
            entry = {"content": entry}
        content = str(entry.get("content", "")).replace("{task}", task).replace("{question}", str(question))
        if "{memory}" in content:  # the first retrieved memory of the prompt's memory section (docs/memory.md)
            content = content.replace("{memory}", _first_memory(request.system))
        calls = [
            ToolCall(id=c.get("id", f"call_{turn}_{i}"), name=c["name"], arguments=c.get("arguments", {}))
            for i, c in enumerate(entry.get("tool_calls", []))
        ]
        extra = {k: v for k, v in entry.items() if k not in ("content", "tool_calls")}
        prompt_chars = sum(len(json.dumps(m)) for m in request.messages) + len(request.system or "")
        return ChatResponse(
            content=content,
            tool_calls=calls,
            stop_reason="tool_use" if calls else "end_turn",
            usage=Usage(input_tokens=prompt_chars // 4, output_tokens=max(1, len(content) // 4)),
            model="scripted",
            extra=extra,
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """The scripted reply in word-sized text deltas, then ``done``: offline streaming (SSE, `stepwise run`)."""
        response = self.complete(request)
        for piece in re.findall(r"\S+\s*|\s+", response.content):
            yield StreamEvent(type="text", text=piece)
        yield StreamEvent(type="done", response=response)


def _first_memory(system: str | None) -> str:
    inside = (system or "").partition('<memory version="1">')[2].partition("</memory>")[0]
    line = next((ln for ln in inside.splitlines() if ln.startswith("- [")), "")
    return line.partition("] ")[2] or "(no memory)"
