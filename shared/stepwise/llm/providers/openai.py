"""OpenAI Chat Completions, and any OpenAI-compatible server (Ollama, vLLM, llama.cpp) through ``base_url``.

The SDK's own retries are off (``max_retries=0``): the router owns the retry table and failover.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai

from stepwise.llm.base import ChatRequest, ChatResponse, StreamEvent, ToolCall, Usage
from stepwise.llm.errors import LLMError, TransientError, from_sdk_error
from stepwise.llm.wire import finish_stream, name_map, parse_arguments, text_of, wire_name

_STOP = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "content_filter",
}
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class OpenAIChat:
    """Chat over the OpenAI Chat Completions API (normal and streaming), or a compatible server."""

    def __init__(self, model: str, *, api_key: str, base_url: str | None = None, timeout: float = 60.0, label: str = "openai") -> None:
        self.model = model
        self.label = label
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIChat({self.label}:{self.model})"

    # -- requests -------------------------------------------------------------------------------
    def params(self, request: ChatRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": request.system}] if request.system else []
        for m in request.messages:
            messages.append(_message(m))
        params: dict[str, Any] = {"model": self.model, "messages": messages}
        if request.tools:
            params["tools"] = [
                {"type": "function", "function": {"name": wire_name(t.name), "description": t.description, "parameters": t.parameters}}
                for t in request.tools
            ]
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        if request.stop:
            params["stop"] = request.stop
        if request.response_schema is not None:
            params["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": request.response_schema}}
        return params

    def complete(self, request: ChatRequest) -> ChatResponse:
        try:
            resp = self.client.chat.completions.create(**self.params(request))
        except openai.OpenAIError as exc:
            raise self.error(exc) from exc
        if not resp.choices:
            raise TransientError(f"{self.label} returned no choices", provider=self.label)
        choice = resp.choices[0]
        names = name_map(request.tools)
        calls = [
            ToolCall(id=c.id, name=names.get(c.function.name, c.function.name), arguments=parse_arguments(c.function.arguments))
            for c in (choice.message.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        usage = Usage(input_tokens=resp.usage.prompt_tokens, output_tokens=resp.usage.completion_tokens) if resp.usage else Usage()
        return ChatResponse(
            content=choice.message.content or "",
            tool_calls=calls,
            stop_reason=_STOP.get(choice.finish_reason or "stop", "end_turn"),
            usage=usage,
            model=f"{self.label}:{resp.model or self.model}",
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        names = name_map(request.tools)
        text: list[str] = []
        partial: dict[int, dict[str, str]] = {}
        finish, usage, model = "stop", Usage(), self.model
        try:
            chunks = self.client.chat.completions.create(**self.params(request), stream=True, stream_options={"include_usage": True})
            for chunk in chunks:
                model = chunk.model or model
                if chunk.usage:
                    usage = Usage(input_tokens=chunk.usage.prompt_tokens, output_tokens=chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        yield StreamEvent(type="text", text=delta.content)
                    for tc in delta.tool_calls or []:
                        slot = partial.setdefault(tc.index, {"id": "", "name": "", "json": ""})
                        slot["id"] = tc.id or slot["id"]
                        if tc.function is not None:
                            slot["name"] += tc.function.name or ""
                            slot["json"] += tc.function.arguments or ""
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except openai.OpenAIError as exc:
            raise self.error(exc) from exc
        yield from finish_stream(
            text, partial, names, stop_reason=_STOP.get(finish, "end_turn"), usage=usage, model=f"{self.label}:{model}"
        )

    def health(self) -> bool:
        """A cheap authenticated call: listing models."""
        try:
            self.client.models.list()
        except openai.OpenAIError:
            return False
        return True

    def error(self, exc: Exception) -> LLMError:
        detail = _detail(exc) if isinstance(exc, openai.APIStatusError) else ""
        return from_sdk_error(exc, openai, self.label, detail=detail)


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    return str(exc)[:300]


def _message(m: dict[str, Any]) -> dict[str, Any]:
    role = m.get("role", "user")
    if role == "tool":
        return {"role": "tool", "tool_call_id": m.get("tool_call_id", ""), "content": text_of(m.get("content"))}
    out: dict[str, Any] = {"role": role, "content": m.get("content") if m.get("content") is not None else ""}
    if role == "assistant" and m.get("tool_calls"):
        out["content"] = m.get("content") or None
        out["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": wire_name(c["name"]), "arguments": json.dumps(c.get("arguments") or {})},
            }
            for c in m["tool_calls"]
        ]
    name = m.get("name")
    if role in ("user", "assistant") and isinstance(name, str) and name and set(name) <= _NAME_OK:
        out["name"] = name
    return out
