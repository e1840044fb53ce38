"""The seams where node kinds meet the outside layers, as Protocols: what the runtime needs from a model
gateway, a tool runtime, tool permissions, memory and guardrails, so ``Services`` and ``NodeContext`` are
typed without importing those layers at run time."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from stepwise.llm.base import ChatRequest, ChatResponse
from stepwise.tools.ports import ToolRuntime

if TYPE_CHECKING:
    from stepwise.graph.guardrails import Stage
    from stepwise.guardrails.engine import StreamGuard, Verdict
    from stepwise.memory.ltm import LongTermStore
    from stepwise.memory.resilient import ResilientMemory
    from stepwise.memory.stm import ShortTermMemory
    from stepwise.tools.executor import ToolInvocation

__all__ = ["CallRecord", "GuardrailPort", "MemoryPort", "ModelGateway", "ToolGrants", "ToolRuntime"]


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


class ToolGrants(Protocol):
    """The step's side of tool permissions: authorize one call and mint its capability token;
    ``tools.permissions.PermissionManager`` (which is also the executor's ``ToolPolicy``)."""

    def grant(self, inv: ToolInvocation) -> str: ...

    def check(self, inv: ToolInvocation) -> None: ...


class MemoryPort(Protocol):
    """The memory an agent node reads and writes back; ``memory.service.MemoryServices``."""

    @property
    def ltm(self) -> LongTermStore: ...

    @property
    def stm(self) -> ShortTermMemory: ...

    @property
    def resilient(self) -> ResilientMemory: ...

    @property
    def procedural(self) -> Any: ...

    @property
    def valkey(self) -> Any: ...


class GuardrailPort(Protocol):
    """A node's rails (graph rails merged with the node's); ``guardrails.engine.Guardrails``."""

    def has(self, stage: Stage) -> bool: ...

    def check(self, stage: Stage, text: str) -> Verdict: ...

    def check_value(self, stage: Stage, value: Any) -> tuple[Any, Verdict]: ...

    def stream(self, emit: Callable[[str], None], stage: Stage = "output") -> StreamGuard: ...
