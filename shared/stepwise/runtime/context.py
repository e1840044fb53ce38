"""The context a node runs with: its run, its journalled LLM and tool calls, and the errors a node raises.

LLM and tool calls go through the context, which journals each one as it completes (``journal.py``): a
retried or resumed step reads completed calls back instead of repeating them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stepwise.graph.spec import GraphSpec, NodeSpec
from stepwise.state.events import LLM_CALL, Event
from stepwise.state.journal import Journal

if TYPE_CHECKING:  # the LLM layer is imported by the nodes that call models, not by every run
    from stepwise.llm.base import ChatRequest, ChatResponse, ToolCall, ToolSpec
    from stepwise.runtime.guard import GuardState
    from stepwise.runtime.ports import ModelGateway
    from stepwise.runtime.services import Services
    from stepwise.tools.executor import ToolOutcome


@dataclass
class NodeContext:
    """What a node may know about its run. Passed as the optional second argument of function nodes."""

    run_id: str
    thread_id: str
    node: str
    scope: str
    turn: int
    key: str
    spec: GraphSpec
    node_spec: NodeSpec
    #: The model hub; None means "ask ``services.models`` when a call is made" (built lazily there).
    models: ModelGateway | None = None
    item: dict[str, Any] | None = None
    resume_input: dict[str, Any] | None = None
    items: list[dict[str, Any]] | None = None
    records: list[Event] = field(default_factory=list)
    #: None only for a context built by hand (a unit test of a node): no log, no tools but the built-ins.
    services: Services | None = None
    #: Extra routing fields for the step's output cursor (the planner's ``more`` flag for dependency waves).
    cursor: dict[str, Any] = field(default_factory=dict)
    #: Work that must follow the step's checkpoint (memory consolidation): the step runs these only once
    #: its node update is committed to the log, never for a step that failed or lost to a duplicate.
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    #: The step's guardrail state (``runtime/guard.py``), made on the first check.
    guard_state: GuardState | None = field(default=None, repr=False)
    #: What memory retrieved for this step (``runtime/memory.py``: STM offset, summary, prompt section, hits),
    #: kept so a fused agent loop retrieves once per step, not once per model turn.
    memory_turn: tuple[Any, ...] | None = field(default=None, repr=False)
    _journal: Journal | None = field(default=None, repr=False)
    _llm_calls: int = field(default=0, repr=False)
    _tenant: str | None = field(default=None, repr=False)

    def record(self, kind: str, **data: Any) -> None:
        self.records.append(Event(type=kind, run_id=self.run_id, node=self.node, scope=self.scope, data=data))

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            events = self.services.events if self.services is not None else None
            self._journal = Journal(
                events, thread_id=self.thread_id, run_id=self.run_id, node=self.node, scope=self.scope, fallback=self.records
            )
        return self._journal

    @property
    def tenant(self) -> str:
        if self._tenant is None:
            run = self.services.runs.get(self.run_id) if self.services is not None else None
            self._tenant = (run.tenant if run is not None else None) or "default"
        return self._tenant

    def notify(self, **event: Any) -> None:
        if self.services is not None:
            self.services.notify(run_id=self.run_id, node=self.node, scope=self.scope, **event)

    # -- LLM calls ---------------------------------------------------------------------------------
    def call_model(
        self,
        request: ChatRequest,
        *,
        script: list[Any] | None = None,
        cache: str | None = None,
        stream: bool = False,
        prompt_version: str | None = None,
    ) -> ChatResponse:
        """One journalled LLM call: replayed from the log if this step already made it."""
        key = f"{self.key}|llm|{self._llm_calls}"
        self._llm_calls += 1
        found = self.journal.lookup(key)
        if found is not None:
            return _replayed(found.data)
        script = script if script is not None else self._script()
        on_text, finish = None, None
        if stream:  # deltas go through the output guardrails in windows (runtime/guard.py)
            from stepwise.runtime.guard import stream_hook

            on_text, finish = stream_hook(self, lambda text: self.notify(kind="llm_delta", text=text))
        info: dict[str, Any] = {}
        response: ChatResponse
        if self.models is None:
            if self.services is None:
                raise RuntimeError(f"node {self.node!r} called a model from a context without services; pass models= or services=")
            self.models = self.services.models
        response, call_info = self.models.call(
            request, script=script, tenant=self.tenant, run_id=self.run_id, cache_mode=cache, on_text=on_text
        )
        info = call_info.to_json()
        if finish is not None:
            finish()
        from stepwise.runtime.guard import screen_logged_response  # output pii redactions reach the log too

        data: dict[str, Any] = {
            "request_hash": request.cache_key(),
            "model": response.model or request.model,
            "response": screen_logged_response(self, response.message()),
            "stop_reason": response.stop_reason,
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
            "cost_usd": response.cost_usd,
            "cached": response.cached,
            **info,
        }
        if response.extra:
            data["extra"] = response.extra
        if prompt_version:
            data["prompt_version"] = prompt_version
        self.journal.record(LLM_CALL, key, data)
        return response

    def _script(self) -> list[Any] | None:
        script = self.node_spec.script
        if script is None or isinstance(script, list):
            return script
        from pathlib import Path

        from stepwise.graph.scripts import load_script

        base = Path(self.spec.source).parent if self.spec.source else None
        return load_script(script, base)

    # -- tools -------------------------------------------------------------------------------------
    def tool_specs(self, names: list[str] | None = None) -> list[ToolSpec]:
        names = list(self.node_spec.tools if names is None else names)
        if not names:
            return []
        if self.services is None:
            from stepwise.tools.builtin import BUILTINS

            return [BUILTINS[n][1] for n in names if n in BUILTINS]
        return list(self.services.tools.specs(names))

    def run_tools(
        self,
        calls: list[ToolCall],
        *,
        prefix: str | None = None,
        timeouts: dict[str, float] | None = None,
        allowed: list[str] | None = None,
    ) -> list[ToolOutcome]:
        """Execute tool calls (in parallel); each result is journalled under its idempotency key.

        Only the tools in ``allowed`` (default: this node's declared ``tools:``) may run; the executor refuses
        any other name with a ``tool_denied`` event and a "denied" observation for the model."""
        grant = None
        if self.services is None:
            from stepwise.tools.executor import ActionExecutor
            from stepwise.tools.registry import ToolRegistry

            executor = ActionExecutor(ToolRegistry(), timeouts=timeouts)
        else:
            executor = self.services.tool_executor(timeouts or {})
            grant = self.services.tool_permissions.grant
        declared = list(self.node_spec.tools) if allowed is None else list(allowed)
        from stepwise.runtime.guard import run_guarded  # tool_args / tool_results guardrails

        return run_guarded(
            self,
            calls,
            lambda subset, screen: list(
                executor.run(
                    subset,
                    key_prefix=prefix or self.key,
                    journal=self.journal,
                    node=self.node,
                    run_id=self.run_id,
                    allowed=declared,
                    tenant=self.tenant,
                    grant=grant,
                    screen=screen,
                )
            ),
        )


def _replayed(data: dict[str, Any]) -> ChatResponse:
    from stepwise.llm.base import ChatResponse, ToolCall, Usage

    message = data.get("response") or {}
    return ChatResponse(
        content=str(message.get("content") or ""),
        tool_calls=[ToolCall.model_validate(c) for c in message.get("tool_calls") or []],
        stop_reason=str(data.get("stop_reason") or "end_turn"),
        usage=Usage(input_tokens=int(data.get("input_tokens", 0)), output_tokens=int(data.get("output_tokens", 0))),
        model=str(data.get("model") or ""),
        cost_usd=float(data.get("cost_usd", 0.0)),
        cached=bool(data.get("cached", False)),
        extra=dict(data.get("extra") or {}),
    )
