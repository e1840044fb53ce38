"""Anthropic Messages API. Translates OpenAI-style messages to alternating user/assistant turns with
``tool_use`` / ``tool_result`` blocks; the SDK's own retries are off so the router owns them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic

from stepwise.llm.base import ChatRequest, ChatResponse, StreamEvent, ToolCall, Usage
from stepwise.llm.errors import LLMError, from_sdk_error
from stepwise.llm.wire import alternating_turns, finish_stream, name_map, parse_arguments, wire_name

_STOP = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "refusal": "content_filter",
    "pause_turn": "end_turn",
}
DEFAULT_MAX_TOKENS = 4096


class AnthropicChat:
    """Chat over the Anthropic Messages API (normal and streaming)."""

    def __init__(self, model: str, *, api_key: str, base_url: str | None = None, timeout: float = 60.0, label: str = "anthropic") -> None:
        self.model = model
        self.label = label
        self.client = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    def __repr__(self) -> str:
        return f"AnthropicChat({self.model})"

    def params(self, request: ChatRequest) -> dict[str, Any]:
        system = request.system or ""
        if request.response_schema is not None:
            system = f"{system}\n\nReply with only a JSON value matching this JSON schema:\n{json.dumps(request.response_schema)}".strip()
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": to_turns(request.messages),
        }
        if system:
            params["system"] = system
        if request.tools:
            params["tools"] = [
                {"name": wire_name(t.name), "description": t.description, "input_schema": t.parameters} for t in request.tools
            ]
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.stop:
            params["stop_sequences"] = request.stop
        return params

    def complete(self, request: ChatRequest) -> ChatResponse:
        try:
            resp = self.client.messages.create(**self.params(request))
        except anthropic.AnthropicError as exc:
            raise self.error(exc) from exc
        names = name_map(request.tools)
        text, calls = [], []
        for block in resp.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                calls.append(ToolCall(id=block.id, name=names.get(block.name, block.name), arguments=parse_arguments(block.input)))
        return ChatResponse(
            content="".join(text),
            tool_calls=calls,
            stop_reason=_STOP.get(resp.stop_reason or "end_turn", "end_turn"),
            usage=Usage(input_tokens=resp.usage.input_tokens, output_tokens=resp.usage.output_tokens),
            model=f"{self.label}:{resp.model or self.model}",
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        names = name_map(request.tools)
        text: list[str] = []
        blocks: dict[int, dict[str, str]] = {}
        stop, usage, model = "end_turn", Usage(), self.model
        try:
            for event in self.client.messages.create(**self.params(request), stream=True):
                kind = event.type
                if kind == "message_start":
                    model = event.message.model or model
                    usage.input_tokens = event.message.usage.input_tokens
                elif kind == "content_block_start" and event.content_block.type == "tool_use":
                    blocks[event.index] = {"id": event.content_block.id, "name": event.content_block.name, "json": ""}
                elif kind == "content_block_delta":
                    if event.delta.type == "text_delta":
                        text.append(event.delta.text)
                        yield StreamEvent(type="text", text=event.delta.text)
                    elif event.delta.type == "input_json_delta" and event.index in blocks:
                        blocks[event.index]["json"] += event.delta.partial_json
                elif kind == "message_delta":
                    stop = event.delta.stop_reason or stop
                    usage.output_tokens = event.usage.output_tokens
        except anthropic.AnthropicError as exc:
            raise self.error(exc) from exc
        yield from finish_stream(text, blocks, names, stop_reason=_STOP.get(stop, "end_turn"), usage=usage, model=f"{self.label}:{model}")

    def health(self) -> bool:
        try:
            self.client.models.list(limit=1)
        except anthropic.AnthropicError:
            return False
        return True

    def error(self, exc: Exception) -> LLMError:
        return from_sdk_error(exc, anthropic, self.label, transient_statuses=(408, 409, 529))  # 529: overloaded


def to_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-style messages → Anthropic turns (text, tool_use and tool_result blocks)."""
    return alternating_turns(
        messages,
        text=lambda text: {"type": "text", "text": text},
        tool_result=lambda call_id, text: {"type": "tool_result", "tool_use_id": call_id, "content": text},
        tool_use=lambda call_id, name, args: {"type": "tool_use", "id": call_id, "name": name, "input": args},
    )
