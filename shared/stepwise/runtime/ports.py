"""The seams where node kinds meet the outside layers, as Protocols: what the runtime needs from a model
gateway, a tool runtime, memory and guardrails, so ``Services`` is typed without importing those layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from stepwise.llm.base import ChatRequest, ChatResponse, ToolSpec

__all__ = ["CallRecord", "ModelGateway", "ToolRuntime"]


class CallRecord(Protocol):
    """What the gateway reports about one call (provider, attempts, cache hit, cost), journalled with it."""

    def to_json(self) -> dict[str, Any]: ...


class ModelGateway(Protocol):
    """Routes one chat request to a model (with caching, budgets and failover); ``llm.gateway.ModelHub``."""

    def call(
        self,
        request: ChatRequest,
        *,
        script: list[Any] | None = None,
        tenant: str = "default",
        run_id: str = "",
        cache_mode: Any = None,
        on_text: Callable[[str], None] | None = None,
    ) -> tuple[ChatResponse, CallRecord]: ...


class ToolRuntime(Protocol):
    """The tools a node may call, by name; ``tools.registry.ToolRegistry`` (MCP servers and built-ins)."""

    def specs(self, names: list[str]) -> list[ToolSpec]: ...
