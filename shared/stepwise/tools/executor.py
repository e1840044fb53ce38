"""The action executor: run the tool calls a model asked for — concurrently, each with its own timeout,
retried 2× with linear 500 ms waits on timeouts and transport errors; a tool that still fails becomes an
observation for the agent ("error: ..."), never a crashed step.

Each call carries an idempotency key ``{step key}|tool|{call id}``: it is sent to the tool (MCP ``_meta``)
and journalled with the result, so a retried step reads the recorded result instead of calling again.
A node may call only the tools it declares (``allowed``): that check lives here, in the executor, not in the
prompt, so a model that names an undeclared tool gets a "denied" observation and the log a ``tool_denied``
event. ``ToolPolicy`` is the further seam (RBAC, capability tokens, guardrails): it can veto a call too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from stepwise.llm.base import ToolCall
from stepwise.state.events import TOOL_CALL, TOOL_DENIED, TOOL_GRANTED
from stepwise.state.journal import Journal
from stepwise.tools.ports import CAPABILITY_META, ToolRuntime
from stepwise.tools.registry import ToolError, UnknownTool

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class ToolInvocation:
    """One tool call to make: name, arguments, and its idempotency key."""

    name: str
    arguments: dict[str, Any]
    call_id: str
    idempotency_key: str
    node: str = ""
    run_id: str = ""
    tenant: str = ""
    #: Filled by a policy that grants the call (a capability token); sent to the tool in ``_meta``.
    meta: dict[str, Any] = field(default_factory=dict)


class ToolPolicy(Protocol):
    """Raise ``PermissionError`` to refuse a call; the refusal goes back to the agent as an observation."""

    def check(self, invocation: ToolInvocation) -> None: ...


class AllowAll:
    """The default tool policy: every declared call may run."""

    def check(self, invocation: ToolInvocation) -> None:
        return None


class ToolDenied(PermissionError):
    """A refused call; ``rule`` names the check that refused it (for the ``tool_denied`` event)."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


def undeclared(name: str, allowed: Collection[str], node: str) -> str | None:
    """Why ``name`` may not be called by ``node`` declaring ``allowed`` (None when it may)."""
    if name in allowed:
        return None
    declared = ", ".join(sorted(allowed)) or "none"
    return f"tool {name!r} is not declared by node {node or '?'!r} (its tools: {declared}); add it to the node's tools: to allow it"


@dataclass
class ToolOutcome:
    """How one tool call ended: its result, or its error."""

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
    denied: str | None = None  # the rule that refused the call, if one did

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
        if self.denied:
            data["denied"] = self.denied
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
            denied=data.get("denied"),
        )


class ActionExecutor:
    """Runs a turn's tool calls in parallel, with timeouts, retries, permissions and the journal."""

    def __init__(
        self,
        registry: ToolRuntime,
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
        self,
        calls: list[ToolCall],
        *,
        key_prefix: str,
        journal: Journal | None = None,
        node: str = "",
        run_id: str = "",
        allowed: Collection[str] | None = None,
        tenant: str = "",
        grant: Callable[[ToolInvocation], str] | None = None,
        screen: Callable[[ToolOutcome], None] | None = None,
    ) -> list[ToolOutcome]:
        """Execute ``calls`` (in parallel), reusing journalled results; results come back in call order.

        ``allowed`` is the calling node's declared tools: any other name is refused before the policy or the
        tool sees it. ``None`` (no declaration known) is for direct library use only; steps always pass it.
        ``grant`` is the step's token minter (``PermissionManager.grant``): each call it grants is journalled
        as ``tool_granted`` and carries the token in ``meta``; one it refuses never reaches the tool.
        ``screen`` sees (and may rewrite) each outcome a tool produced *before* it is journalled: the
        ``tool_results`` guardrails redact or withhold there, so the log never keeps what they remove."""
        outcomes: dict[int, ToolOutcome] = {}
        pending: list[tuple[int, ToolInvocation]] = []
        for i, call in enumerate(calls):
            key = f"{key_prefix}|tool|{call.id}"
            found = journal.lookup(key) if journal is not None else None
            if found is not None:
                outcomes[i] = ToolOutcome.from_event(found.data)
                continue
            inv = ToolInvocation(call.name, dict(call.arguments), call.id, key, node, run_id, tenant)
            why = undeclared(call.name, allowed, node) if allowed is not None else None
            if why is not None:
                outcomes[i] = self._refuse(inv, ToolDenied(why, "declared_tools"), journal)
                continue
            if grant is not None:
                try:
                    inv.meta[CAPABILITY_META] = grant(inv)
                except PermissionError as exc:
                    outcomes[i] = self._refuse(inv, ToolDenied(str(exc), getattr(exc, "rule", "policy")), journal)
                    continue
                if journal is not None:
                    journal.record(TOOL_GRANTED, f"{key}|grant", {"tool": inv.name, "call_id": inv.call_id, "node": node, "tenant": tenant})
            pending.append((i, inv))
        if pending:
            done = self.registry.run(self._all([inv for _, inv in pending]))
            for (i, inv), outcome in zip(pending, done, strict=True):
                if outcome.denied and journal is not None:
                    journal.record(TOOL_DENIED, f"{inv.idempotency_key}|denied", _denial(inv, outcome.denied, outcome.error))
                elif screen is not None:
                    screen(outcome)
                if journal is not None:
                    journal.record(TOOL_CALL, outcome.idempotency_key, outcome.event_data())
                outcomes[i] = outcome
        return [outcomes[i] for i in range(len(calls))]

    def _refuse(self, inv: ToolInvocation, exc: ToolDenied, journal: Journal | None) -> ToolOutcome:
        outcome = ToolOutcome(inv.call_id, inv.name, inv.arguments, inv.idempotency_key, ok=False, attempts=0)
        outcome.error, outcome.denied = f"denied: {exc}", exc.rule
        if journal is not None:
            journal.record(TOOL_DENIED, f"{inv.idempotency_key}|denied", _denial(inv, exc.rule, outcome.error))
            journal.record(TOOL_CALL, inv.idempotency_key, outcome.event_data())
        return outcome

    async def _all(self, invocations: list[ToolInvocation]) -> list[ToolOutcome]:
        return list(await asyncio.gather(*(self._one(inv) for inv in invocations)))

    async def _one(self, inv: ToolInvocation) -> ToolOutcome:
        outcome = ToolOutcome(inv.call_id, inv.name, inv.arguments, inv.idempotency_key, ok=False, attempts=0)
        try:
            self.policy.check(inv)
        except PermissionError as exc:
            outcome.error = f"denied: {exc}"
            outcome.denied = getattr(exc, "rule", None) or "policy"
            return outcome
        timeout = self.timeouts.get(inv.name, self.default_timeout)
        for attempt in range(self.retries + 1):
            outcome.attempts = attempt + 1
            try:
                extra = {"meta": inv.meta} if inv.meta else {}
                outcome.result = await asyncio.wait_for(
                    self.registry.acall(inv.name, inv.arguments, idempotency_key=inv.idempotency_key, timeout=timeout, **extra), timeout
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


def _denial(inv: ToolInvocation, rule: str, reason: str | None) -> dict[str, Any]:
    """The ``tool_denied`` event: which tool, who asked, the rule that refused it and why (arguments omitted:
    they may hold what the refusal was protecting)."""
    return {"tool": inv.name, "call_id": inv.call_id, "node": inv.node, "tenant": inv.tenant, "rule": rule, "reason": reason}
