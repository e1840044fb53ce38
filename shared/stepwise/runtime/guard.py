"""Where the guardrail engine meets an agent's turn: input before the model, retrieved memory, tool
arguments and results, streamed and final output. Every decision is journalled as a ``guardrail`` event
(rule, stage, check, action, kinds — never the matched text); a block or escalation is also written to the
``guardrail`` channel so a conditional edge can route to a human node (``state.guardrail.action == 'escalate'``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from stepwise.guardrails.engine import REFUSAL, Decision, Guardrails, Verdict
from stepwise.state.events import GUARDRAIL

if TYPE_CHECKING:
    from stepwise.graph.spec import GraphSpec, NodeSpec
    from stepwise.runtime.ports import GuardrailPort
    from stepwise.state.journal import Journal


@dataclass
class GuardState:
    """One step's guardrail state: its rails (None: none configured), the texts already checked, how many
    decisions it journalled, and those that blocked or escalated (for the ``guardrail`` channel)."""

    rails: GuardrailPort | None
    seen: set[str] = field(default_factory=set)
    journalled: int = 0
    fired: list[Decision] = field(default_factory=list)


class GuardedContext(Protocol):
    """What the guardrails use of a node's context (``runtime/context.py``'s ``NodeContext`` is the one that
    runs): the step's key and journal, the graph and node specs whose rails apply, and the guard state kept
    on it. A Protocol, so the context may call in here without this module importing it back."""

    key: str
    spec: GraphSpec
    node_spec: NodeSpec
    guard_state: GuardState | None

    @property
    def journal(self) -> Journal: ...


class Blocked(Exception):
    """Input was blocked: the agent answers with the refusal instead of calling the model."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.decisions[-1].rule if verdict.decisions else "blocked")
        self.verdict = verdict


def state_of(ctx: GuardedContext) -> GuardState:
    """The step's guardrail state, made on first use: the node's rails are the graph's merged with its own."""
    if ctx.guard_state is None:
        graph_rails = ctx.spec.guardrails
        node_rails = ctx.node_spec.guardrails
        config = graph_rails.merged(node_rails) if graph_rails is not None else node_rails
        ctx.guard_state = GuardState(Guardrails(config) if config is not None else None)
    return ctx.guard_state


def guard_of(ctx: GuardedContext) -> GuardrailPort | None:
    """The node's rails (graph rails merged with the node's), or None when it has none."""
    return state_of(ctx).rails


def record(ctx: GuardedContext, decisions: list[Decision]) -> None:
    state = state_of(ctx)
    for d in decisions:
        ctx.journal.record(GUARDRAIL, f"{ctx.key}|guard|{state.journalled}", d.to_json())
        state.journalled += 1
        if d.action in ("block", "escalate"):
            state.fired.append(d)


def channel_update(ctx: GuardedContext) -> dict[str, Any]:
    """``{"guardrail": {...}}`` when a rail blocked or escalated in this step (for routing to a human)."""
    fired = ctx.guard_state.fired if ctx.guard_state is not None else []
    if not fired:
        return {}
    worst = next((d for d in fired if d.action == "escalate"), fired[-1])
    return {"guardrail": {"action": worst.action, "rule": worst.rule, "stage": worst.stage, "kinds": worst.kinds}}


def _once(ctx: GuardedContext, stage: str, text: str) -> bool:
    """True the first time this step checks this text at this stage (a fused loop rebuilds its prompt each turn)."""
    digest = hashlib.sha256(f"{stage}\0{text}".encode()).hexdigest()
    seen = state_of(ctx).seen
    if digest in seen:
        return False
    seen.add(digest)
    return True


# -- input and memory -------------------------------------------------------------------------------------
def guard_input(ctx: GuardedContext, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check user messages before the model sees them; redactions apply to the request, blocks raise."""
    guard = guard_of(ctx)
    if guard is None or not guard.has("input"):
        return history
    out = []
    for message in history:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str) and content:
            verdict = guard.check("input", content)
            if _once(ctx, "input", content):
                record(ctx, verdict.decisions)
            if verdict.blocked:
                raise Blocked(verdict)
            message = {**message, "content": verdict.text}
        out.append(message)
    return out


def guard_memory(ctx: GuardedContext, section: str) -> str:
    """Check retrieved memory (the section added to the system prompt); a block drops it."""
    guard = guard_of(ctx)
    if guard is None or not guard.has("memory") or not section:
        return section
    verdict = guard.check("memory", section)
    if _once(ctx, "memory", section):
        record(ctx, verdict.decisions)
    return "" if verdict.blocked else verdict.text


# -- tools ------------------------------------------------------------------------------------------------
def run_guarded(
    ctx: GuardedContext, calls: list[Any], execute: Callable[[list[Any], Callable[[Any], None] | None], list[Any]]
) -> list[Any]:
    """Check each call's arguments (blocked calls never run), run the rest, check their results.

    ``execute(calls, screen)`` runs the calls and hands each fresh outcome to ``screen`` before journalling
    it, so the ``tool_call`` event stores the result as the ``tool_results`` rails left it (redacted, or
    withheld), never the raw text they caught. Outcomes replayed from the journal were screened when first
    recorded and are not checked again."""
    guard = guard_of(ctx)
    if guard is None or not (guard.has("tool_args") or guard.has("tool_results")):
        return execute(calls, None)
    from stepwise.tools.executor import ToolOutcome

    refused: dict[int, Any] = {}
    allowed: list[tuple[int, Any]] = []
    for i, call in enumerate(calls):
        if guard.has("tool_args"):
            args, verdict = guard.check_value("tool_args", dict(call.arguments))
            record(ctx, verdict.decisions)
            if verdict.blocked:
                rule = verdict.decisions[-1].rule
                refused[i] = ToolOutcome(
                    call.id, call.name, {}, f"{ctx.key}|tool|{call.id}", ok=False, error=f"blocked by guardrail {rule}"
                )
                continue
            call = call.model_copy(update={"arguments": args})
        allowed.append((i, call))

    def screen(outcome: Any) -> None:
        screen_result(ctx, guard, outcome)

    done = execute([c for _, c in allowed], screen if guard.has("tool_results") else None) if allowed else []
    out: dict[int, Any] = dict(refused)
    for (i, _), outcome in zip(allowed, done, strict=True):
        out[i] = outcome
    return [out[i] for i in range(len(calls))]


def screen_result(ctx: GuardedContext, guard: GuardrailPort, outcome: Any) -> None:
    """The ``tool_results`` rails on one outcome, in place: its result (or its error text, which may echo
    what the tool read) is redacted, or withheld on a block."""
    if outcome.ok:
        result, verdict = guard.check_value("tool_results", outcome.result)
        record(ctx, verdict.decisions)
        if verdict.blocked:
            outcome.ok, outcome.result, outcome.error = False, None, f"result withheld by guardrail {verdict.decisions[-1].rule}"
        else:
            outcome.result = result
    elif outcome.error:
        checked = guard.check("tool_results", outcome.error)
        record(ctx, checked.decisions)
        outcome.error = f"error withheld by guardrail {checked.decisions[-1].rule}" if checked.blocked else checked.text


# -- the stored llm_call --------------------------------------------------------------------------------------
def screen_logged_response(ctx: Any, message: dict[str, Any]) -> dict[str, Any]:
    """The model's final answer as the ``llm_call`` event stores it: the node's ``output`` rails that are
    ``check: pii`` with ``action: redact`` are applied to it first, so the log does not keep what the answer's
    reader never sees. Only those: their result is what ``guard_output`` yields for the raw answer too, so a
    replayed step (which reads this record instead of calling the model) ends with the same text. A turn
    with tool calls is stored as written (it is not an answer; its arguments meet the ``tool_args`` rails)."""
    content = message.get("content")
    graph_rails, node_rails = ctx.spec.guardrails, ctx.node_spec.guardrails
    config = graph_rails.merged(node_rails) if graph_rails is not None else node_rails
    if config is None or message.get("tool_calls") or not isinstance(content, str) or not content:
        return message
    rails = [r for r in config.rails("output") if r.check == "pii" and r.action == "redact"]
    if not rails:
        return message
    from stepwise.graph.guardrails import GuardrailsConfig

    screened = Guardrails(GuardrailsConfig(output=rails)).check("output", content)
    return {**message, "content": screened.text} if screened.decisions else message


# -- output -----------------------------------------------------------------------------------------------
def guard_output(ctx: GuardedContext, text: str, repair: Callable[[str], str] | None = None) -> Verdict:
    """Check the final answer; a failing ``schema`` rail gets one repair (``repair(problem) -> new text``)."""
    guard = guard_of(ctx)
    if guard is None or not guard.has("output"):
        return Verdict(text)
    verdict = guard.check("output", text)
    record(ctx, verdict.decisions)
    if verdict.invalid is not None and repair is not None:
        again = guard.check("output", repair(verdict.invalid))
        record(ctx, again.decisions)
        return again
    return verdict


def stream_hook(ctx: GuardedContext, emit: Callable[[str], None]) -> tuple[Callable[[str], None], Callable[[], None]]:
    """(on_text, finish) for a streamed model call: deltas pass through the output rails in windows."""
    guard = guard_of(ctx)
    if guard is None or not guard.has("output"):
        return emit, lambda: None
    sg = guard.stream(emit)

    def finish() -> None:
        sg.close()
        record(ctx, sg.decisions)

    return sg.feed, finish


__all__ = ["REFUSAL", "Blocked", "channel_update", "guard_input", "guard_memory", "guard_of", "guard_output", "run_guarded", "stream_hook"]
