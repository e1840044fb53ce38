"""Memory in the agent's turn: "Retrieve Context" before Think, "Consolidate" after the answer.

``prepare`` (called by ``agents.build_request``) fits the conversation to the node's STM budget (Valkey
holds the thread's evicted offset and running summary) and adds the retrieved long-term memories to the
system prompt in the versioned section below. ``write_back`` (called when the agent has its final answer)
stores what the turn taught — preferences and facts from the user's words, the episode, the tool-call
pattern — and consolidates STM when it is over budget. Neither ever fails the run: an outage is logged,
reported to observers (``memory_degraded``) and the turn goes on without memory.

Prompt section, version 1 (``MEMORY_SECTION_VERSION``); changing its shape bumps the version::

    <memory version="1">
    Retrieved memories (most relevant first). They may be outdated; what the user says now wins.
    - [preference, 2026-12-01] The user prefers window seats on long flights.
    Earlier in this conversation (summary): …
    </memory>
"""

from __future__ import annotations

import logging
import time
from typing import Any

from stepwise.graph.memory import MemoryConfig, render_namespace
from stepwise.memory.consolidate import consolidate_thread, mark_pending, store_candidates
from stepwise.memory.extract import MODEL_EXTRACT_PROMPT, Candidate, ExtractionError, episode, extract_rules, from_model_json
from stepwise.memory.procedural import few_shot, tool_sequence
from stepwise.memory.records import MemoryHit, MemoryQuery
from stepwise.memory.service import default_memory
from stepwise.memory.settings import MemorySettings
from stepwise.memory.stm import fit_window
from stepwise.memory.tokens import counter_for
from stepwise.runtime.context import NodeContext
from stepwise.runtime.ports import MemoryPort
from stepwise.settings import Settings

log = logging.getLogger("stepwise.memory")
MEMORY_SECTION_VERSION = 1


def services_of(ctx: NodeContext) -> MemoryPort:
    """The run's memory (``Services.memory``), else the process-wide default for the run's memory settings."""
    services = ctx.services
    if services is None:
        return default_memory(MemorySettings(), Settings().home)
    return services.memory if services.memory is not None else default_memory(services.memory_settings, services.settings.home)


def namespaces(ctx: NodeContext, state: dict[str, Any], cfg: MemoryConfig, templates: list[str] | None = None) -> list[str]:
    user = state.get(cfg.user_channel)
    values = {"tenant": ctx.tenant, "graph": ctx.spec.name, "node": ctx.node, "thread": ctx.thread_id, "user": str(user) if user else None}
    out = [render_namespace(t, values) for t in (templates or cfg.namespaces)]
    return [n for n in out if n]


def render_section(hits: list[MemoryHit], summary: str | None = None, guidance: str = "") -> str:
    if not hits and not summary and not guidance:
        return ""
    lines = [f'<memory version="{MEMORY_SECTION_VERSION}">']
    if hits:
        lines.append("Retrieved memories (most relevant first). They may be outdated; what the user says now wins.")
        for hit in hits:
            day = time.strftime("%Y-%m-%d", time.gmtime(hit.record.valid_from))
            lines.append(f"- [{hit.record.strategy}, {day}] {' '.join(hit.record.text.split())}")
    if summary:
        lines.append(f"Earlier in this conversation (summary): {summary}")
    if guidance:
        lines.append(guidance)
    lines.append("</memory>")
    return "\n".join(lines)


def _question(history: list[dict[str, Any]]) -> str:
    return next((str(m.get("content") or "") for m in reversed(history) if m.get("role") == "user"), "")


def _degraded(ctx: NodeContext, stage: str, exc: Exception) -> None:
    log.warning("memory %s degraded in node %s: %s", stage, ctx.node, type(exc).__name__)
    ctx.notify(kind="memory_degraded", stage=stage, error=f"{type(exc).__name__}: {exc}"[:300])


def prepare(
    state: dict[str, Any], ctx: NodeContext, history: list[dict[str, Any]], system: str | None, model: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    cfg = ctx.node_spec.memory
    if cfg is None:
        return history, system
    cached = ctx.memory_turn
    if cached is None:
        cached = ctx.memory_turn = _retrieve(state, ctx, cfg, history)
    offset, summary, section = cached[:3]
    if cfg.stm_budget is not None:
        own = len([m for m in state.get("messages") or [] if isinstance(m, dict)])
        history = history[min(offset, own) :]
        counter, name = counter_for(model)
        full_system = "\n\n".join(p for p in (system, section) if p)
        window = fit_window(history, cfg.stm_budget, counter=counter, system=full_system or None, summary=summary, tokenizer=name)
        history = window.messages
        section = render_section(cached[3], window.summary, cached[4])
    if section:
        system = f"{system}\n\n{section}" if system else section
    return history, system


def _retrieve(state: dict[str, Any], ctx: NodeContext, cfg: MemoryConfig, history: list[dict[str, Any]]) -> tuple[Any, ...]:
    mem = services_of(ctx)
    offset, summary = 0, None
    if cfg.stm_budget is not None:
        try:
            thread_messages = [m for m in state.get("messages") or [] if isinstance(m, dict)]
            mem.stm.sync(ctx.tenant, ctx.thread_id, thread_messages)
            offset, _, summary = mem.stm.state(ctx.tenant, ctx.thread_id)
        except Exception as exc:  # noqa: BLE001 - STM is a cache: budget the thread in-process instead
            _degraded(ctx, "stm", exc)
    hits: list[MemoryHit] = []
    guidance = ""
    spaces = namespaces(ctx, state, cfg)
    question = _question(history) or str((ctx.item or {}).get("title") or "")
    if spaces and cfg.top_k > 0:
        query = MemoryQuery(text=question, namespaces=spaces, strategies=list(cfg.strategies), top_k=cfg.top_k, min_score=cfg.min_score)
        try:
            hits = mem.resilient.search(ctx.tenant, query)
            last = mem.resilient.last
            if last is not None and last.source != "live":
                ctx.notify(kind="memory_degraded", stage="ltm", source=last.source, error=last.error)
        except Exception as exc:  # noqa: BLE001 - e.g. a namespace the tenant cannot use
            _degraded(ctx, "ltm", exc)
    if cfg.procedural and spaces:
        try:
            guidance = few_shot(mem.procedural.suggest(ctx.tenant, spaces, f"{ctx.spec.name}.{ctx.node}", question))
        except Exception as exc:  # noqa: BLE001
            _degraded(ctx, "procedural", exc)
    ctx.notify(kind="memory_retrieved", count=len(hits), ids=[h.record.id for h in hits])
    return offset, summary, render_section(hits, summary, guidance), hits, guidance


def write_back(state: dict[str, Any], ctx: NodeContext, produced: list[dict[str, Any]], answer: str, model: str | None) -> None:
    cfg = ctx.node_spec.memory
    if cfg is None or not cfg.write_back:
        return
    try:
        _write_back(state, ctx, cfg, produced, answer, model)
    except Exception as exc:  # noqa: BLE001 - consolidation never fails the run
        _degraded(ctx, "write_back", exc)


def _write_back(
    state: dict[str, Any], ctx: NodeContext, cfg: MemoryConfig, produced: list[dict[str, Any]], answer: str, model: str | None
) -> None:
    mem = services_of(ctx)
    target = namespaces(ctx, state, cfg, [cfg.write_namespace or cfg.namespaces[0]])
    if not target:
        ctx.notify(kind="memory_skipped", reason=f"namespace {cfg.write_namespace or cfg.namespaces[0]!r} needs a value the state lacks")
        return
    namespace = target[0]
    thread = [m for m in state.get("messages") or [] if isinstance(m, dict)]
    last_user = max((i for i, m in enumerate(thread) if m.get("role") == "user"), default=-1)
    turn = thread[last_user:] if last_user >= 0 else []
    if cfg.extract == "model":
        try:
            candidates = _model_candidates(ctx, turn, model)
        except ExtractionError as exc:  # a malformed reply: store nothing for this turn, say why
            ctx.notify(kind="memory_skipped", reason=f"extract: model: {exc}")
            return
    else:
        candidates = extract_rules(turn[:1])
    question = str(turn[0].get("content") or "") if turn else ""
    if question and answer:
        candidates.append(episode(question, answer))
    source = {"thread_id": ctx.thread_id, "run_id": ctx.run_id, "node": ctx.node}
    stored, _ = store_candidates(mem.ltm, ctx.tenant, namespace, candidates, source=source)
    if cfg.procedural:
        steps, ok = tool_sequence([*turn, *produced])
        mem.procedural.record(ctx.tenant, namespace, f"{ctx.spec.name}.{ctx.node}", steps, ok)
    ctx.notify(kind="memory_stored", ids=[r.id for r in stored])
    if cfg.stm_budget is not None:
        messages = [*thread, *produced]
        report = consolidate_thread(
            tenant=ctx.tenant, thread_id=ctx.thread_id, stm=mem.stm, ltm=mem.ltm, namespace=namespace,
            budget=cfg.stm_budget, model=model, thread_messages=messages,
        )  # fmt: skip
        if report.evicted:
            ctx.notify(kind="memory_consolidated", evicted=report.evicted, stored=len(report.stored))
        else:
            mark_pending(mem.valkey, tenant=ctx.tenant, thread_id=ctx.thread_id, namespace=namespace, budget=cfg.stm_budget, model=model)


def _model_candidates(ctx: NodeContext, turn: list[dict[str, Any]], model: str | None) -> list[Candidate]:
    """Ask the node's model for the turn's memories (``MODEL_EXTRACT_PROMPT``): a journalled call, so a
    retried step replays it. Raises ``ExtractionError`` when the reply is not the JSON list asked for."""
    from stepwise.llm.base import ChatRequest
    from stepwise.runtime.reasoning import extract_json

    request = ChatRequest(
        model=model or "scripted",
        messages=[*turn, {"role": "user", "content": MODEL_EXTRACT_PROMPT}],
        metadata={"turn": ctx.turn, "node": f"{ctx.node}.memory"},
    )
    response = ctx.call_model(request, script=["[]"])
    try:
        data = extract_json(response.content or "")
    except ValueError:
        excerpt = " ".join((response.content or "").split())[:80]
        raise ExtractionError(f"the model's reply holds no JSON (starts {excerpt!r}); expected a JSON list of memories") from None
    candidates, rejected = from_model_json(data)
    if rejected:
        ctx.notify(kind="memory_rejected", count=len(rejected), reasons=rejected[:5])
    return candidates
