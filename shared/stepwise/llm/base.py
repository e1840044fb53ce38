"""The one interface every LLM provider implements, and the request/response types it speaks.

Messages are OpenAI-style dicts (``{"role": ..., "content": ..., "tool_calls": [...]}``) because that
is what graph state holds; providers translate to and from their own wire formats.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class ToolSpec(BaseModel):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class ChatRequest(BaseModel):
    model: str
    messages: list[dict[str, Any]]
    system: str | None = None
    tools: list[ToolSpec] = Field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, exclude=True)

    def cache_key(self) -> str:
        """Hash of the normalised request: what the exact response cache and replay key on."""
        body = self.model_dump(exclude={"metadata"}, exclude_none=True)
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ChatResponse(BaseModel):
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


@runtime_checkable
class ChatModel(Protocol):
    """A provider: turn a request into a response. Streaming providers also offer ``stream``."""

    def complete(self, request: ChatRequest) -> ChatResponse: ...


class ModelResolver(Protocol):
    """Maps a model string from a graph (``openai:gpt-4o-mini``, ``scripted``…) to a ChatModel."""

    def resolve(self, model: str) -> ChatModel: ...
