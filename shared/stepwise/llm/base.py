"""The one interface every LLM provider implements, and the request/response types it speaks.

Messages are OpenAI-style dicts (``{"role": ..., "content": ..., "tool_calls": [...]}``) because that
is what graph state holds; providers translate to and from their own wire formats. Stop reasons are
normalised to ``end_turn | tool_use | max_tokens | stop_sequence | content_filter``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "content_filter"]


class ToolSpec(BaseModel):
    """A tool as a model sees it: name, description and JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolCall(BaseModel):
    """A tool call a model asked for."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Usage(BaseModel):
    """Tokens one call used."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatRequest(BaseModel):
    """One provider-neutral chat request."""

    model: str
    messages: list[dict[str, Any]]
    system: str | None = None
    tools: list[ToolSpec] = Field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None
    #: JSON schema the reply must match (structured output); providers that support it enforce it natively.
    response_schema: dict[str, Any] | None = None
    stop: list[str] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, exclude=True)

    def cache_key(self) -> str:
        """Hash of the normalised request: what the exact response cache and replay key on."""
        body = self.model_dump(exclude={"metadata"}, exclude_none=True)
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def prompt_text(self) -> str:
        """The request as plain text (system, then each message): what semantic caching embeds."""
        parts = [f"system: {self.system}"] if self.system else []
        for m in self.messages:
            content = m.get("content")
            parts.append(f"{m.get('role')}: {content if isinstance(content, str) else json.dumps(content, sort_keys=True)}")
            if m.get("tool_calls"):
                parts.append(json.dumps(m["tool_calls"], sort_keys=True))
        return "\n".join(parts)


class ChatResponse(BaseModel):
    """One provider-neutral chat response, with usage and cost."""

    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    stop_reason: str = "end_turn"
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    cost_usd: float = 0.0
    cached: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        return msg


class StreamEvent(BaseModel):
    """One piece of a streamed reply. ``text`` deltas arrive as they are generated; the provider ends
    every stream with one ``done`` event that carries the assembled response (tool calls, usage, stop)."""

    type: Literal["text", "tool_call", "done"]
    text: str = ""
    tool_call: ToolCall | None = None
    response: ChatResponse | None = None


@runtime_checkable
class ChatModel(Protocol):
    """A provider: turn a request into a response. Streaming providers also offer ``stream``."""

    def complete(self, request: ChatRequest) -> ChatResponse: ...


@runtime_checkable
class StreamingChatModel(ChatModel, Protocol):
    """A chat model that can also stream its response."""

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]: ...


class ModelResolver(Protocol):
    """Maps a model string from a graph (``openai:gpt-4o-mini``, ``scripted``…) to a ChatModel."""

    def resolve(self, model: str) -> ChatModel: ...


def collect(events: Iterator[StreamEvent], on_text: Callable[[str], None] | None = None) -> ChatResponse:
    """Drain a stream into its final response, forwarding text deltas to ``on_text`` as they come."""
    final: ChatResponse | None = None
    for event in events:
        if event.type == "text" and on_text is not None and event.text:
            on_text(event.text)
        elif event.type == "done":
            final = event.response
    if final is None:
        raise RuntimeError("the stream ended without a final response")
    return final


def complete(model: ChatModel, request: ChatRequest, on_text: Callable[[str], None] | None = None) -> ChatResponse:
    """Stream when the model can and someone listens; otherwise one blocking call."""
    if on_text is not None and isinstance(model, StreamingChatModel):
        return collect(model.stream(request), on_text)
    return model.complete(request)
