"""The action executor: run the tool calls a model asked for — concurrently, each with its own timeout,
retried 2× with linear 500 ms waits on timeouts and transport errors; a tool that still fails becomes an
observation for the agent ("error: ..."), never a crashed step.

Each call carries an idempotency key ``{step key}|tool|{call id}``: it is sent to the tool (MCP ``_meta``)
and journalled with the result, so a retried step reads the recorded result instead of calling again.
``ToolPolicy`` is the seam for permissions, sandboxing and guardrails (a later issue): it can veto a call.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stepwise.llm.base import ToolCall
from stepwise.runtime.journal import Journal
from stepwise.state.events import TOOL_CALL
from stepwise.tools.registry import ToolError, ToolRegistry, UnknownTool

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class ToolInvocation:
    name: str
    arguments: dict[str, Any]
    call_id: str
    idempotency_key: str
    node: str = ""
    run_id: str = ""


class ToolPolicy(Protocol):
    """Raise ``PermissionError`` to refuse a call; the refusal goes back to the agent as an observation."""

    def check(self, invocation: ToolInvocation) -> None: ...


class AllowAll:
    def check(self, invocation: ToolInvocation) -> None:
        return None


@dataclass
class ToolOutcome:
    call_id: str
    name: str
    arguments: dict[str, Any]
    idempotency_key: str
    ok: bool
    result: Any = None
    error: str | None = None
    attempts: int = 1
    replayed: bool = False
    waits: list[float] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        content = json.dumps(self.result, default=str) if self.ok else f"error: {self.error}"
        return {"role": "tool", "tool_call_id": self.call_id, "name": self.name, "content": content}

    def event_data(self) -> dict[str, Any]:
        data = {
            "tool": self.name,
            "call_id": self.call_id,
            "arguments": self.arguments,
            "ok": self.ok,
            "result": self.result if self.ok else self.error,
            "idempotency_key": self.idempotency_key,
            "attempts": self.attempts,
        }
        if self.waits:
            data["waits"] = self.waits
        return data

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> ToolOutcome:
        ok = bool(data.get("ok"))
        return cls(
            call_id=data["call_id"],
            name=data["tool"],
            arguments=data.get("arguments") or {},
            idempotency_key=data["idempotency_key"],
            ok=ok,
            result=data.get("result") if ok else None,
            error=None if ok else str(data.get("result")),
            attempts=int(data.get("attempts", 1)),
            replayed=True,
        )


class ActionExecutor:
    def __init__(
        self,
        registry: ToolRegistry,
        *,
        timeouts: dict[str, float] | None = None,
        default_timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        sleep: Sleep | None = None,
        policy: ToolPolicy | None = None,
    ) -> None:
        self.registry = registry
        self.timeouts = dict(timeouts or {})
        self.default_timeout = default_timeout
        self.retries, self.backoff = retries, backoff
        self.sleep: Sleep = sleep or asyncio.sleep
        self.policy = policy or AllowAll()

    def run(
        self, calls: list[ToolCall], *, key_prefix: str, journal: Journal | None = None, node: str = "", run_id: str = ""
    ) -> list[ToolOutcome]:
        """Execute ``calls`` (in parallel), reusing journalled results; results come back in call order."""
        outcomes: dict[int, ToolOutcome] = {}
        pending: list[tuple[int, ToolInvocation]] = []
        for i, call in enumerate(calls):
            key = f"{key_prefix}|tool|{call.id}"
            found = journal.lookup(key) if journal is not None else None
            if found is not None:
                outcomes[i] = ToolOutcome.from_event(found.data)
            else:
                pending.append((i, ToolInvocation(call.name, dict(call.arguments), call.id, key, node, run_id)))
        if pending:
            done = self.registry.run(self._all([inv for _, inv in pending]))
            for (i, _), outcome in zip(pending, done, strict=True):
                if journal is not None:
                    journal.record(TOOL_CALL, outcome.idempotency_key, outcome.event_data())
                outcomes[i] = outcome
        return [outcomes[i] for i in range(len(calls))]

    async def _all(self, invocations: list[ToolInvocation]) -> list[ToolOutcome]:
        return list(await asyncio.gather(*(self._one(inv) for inv in invocations)))

    async def _one(self, inv: ToolInvocation) -> ToolOutcome:
        outcome = ToolOutcome(inv.call_id, inv.name, inv.arguments, inv.idempotency_key, ok=False, attempts=0)
        try:
            self.policy.check(inv)
        except PermissionError as exc:
            outcome.error = f"denied: {exc}"
            return outcome
        timeout = self.timeouts.get(inv.name, self.default_timeout)
        for attempt in range(self.retries + 1):
            outcome.attempts = attempt + 1
            try:
                outcome.result = await asyncio.wait_for(
                    self.registry.acall(inv.name, inv.arguments, idempotency_key=inv.idempotency_key, timeout=timeout), timeout
                )
                outcome.ok, outcome.error = True, None
                return outcome
            except (ToolError, UnknownTool) as exc:  # the tool answered: retrying would not change it
                outcome.error = f"{type(exc).__name__}: {exc}"
                return outcome
            except TimeoutError:
                outcome.error = f"timed out after {timeout:g}s"
            except Exception as exc:  # noqa: BLE001 - transport failures are retried, then observed
                outcome.error = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                wait = self.backoff * (attempt + 1)
                outcome.waits.append(wait)
                await self.sleep(wait)
        outcome.error = f"{outcome.error} (after {outcome.attempts} attempts)"
        return outcome
