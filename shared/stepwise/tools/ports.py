"""What the tool executor and the runtime need from a tool registry, as a Protocol (``ToolRegistry`` is the
MCP one); a test or an embedding application can hand ``Services`` any object with this shape."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from stepwise.llm.base import ToolSpec

T = TypeVar("T")

#: Where a call's idempotency key travels in the MCP request's ``_meta`` (a server dedupes on it).
IDEMPOTENCY_META = "stepwise/idempotency_key"
#: Where a call's capability token travels in the MCP request's ``_meta`` (capability.py).
CAPABILITY_META = "stepwise/capability"


class ToolRuntime(Protocol):
    """The tools a node may call, by name: their schemas, and an async call run on the registry's loop."""

    def specs(self, names: list[str]) -> list[ToolSpec]: ...

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T: ...

    async def acall(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str,
        timeout: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Any: ...
