"""Agent, planner and synthesizer nodes.

- agent: ReAct (think → act → observe → reflect). ``config.loop: graph`` makes one LLM call per step and
  lets the graph cycle through a tool node and a reflect node, so every iteration is a state in the
  compiled ASL; ``config.loop: fused`` runs the whole loop inside one step, bounded by ``max_iterations``
  (on the node or under ``config:``; default: the graph's), with every LLM and tool call journalled.
  Unset, the loop is ``graph`` when an edge leads to a node that runs tool calls, else ``fused``: an agent
  with ``tools:`` never ends a run with tool calls nobody executed.
- planner: asks for a subtask DAG (``id, kind, title, depends_on``), validates it and hands the compiled
  Map one *wave* of ready subtasks at a time; the Map loops back through the planner until none is left.
- synthesizer: combines the workers' results, scores them (``quality``) and, when the score is below
  ``config.min_quality``, writes feedback to ``messages`` so the graph can send the work back.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from stepwise.errors import MaxIterationsError, NodeError
from stepwise.graph.spec import AgentConfig
from stepwise.graph.topology import routes_to_tools
from stepwise.llm.base import ChatRequest, ChatResponse
from stepwise.runtime import guard
from stepwise.runtime.context import NodeContext
from stepwise.runtime.reasoning import (
    COT_INSTRUCTION,
    extract_json,
    output_model,
    parse_structured,
    prompt_version,
    render,
    split_thinking,
)

REFLECT_PROMPT = (
    "Review the answer above for correctness and completeness. Reply with exactly 'approve' if it is right; "
    "otherwise reply 'revise: ' followed by what to fix."
)
PLAN_INSTRUCTION = (
    "Decompose the task into subtasks. Reply with only JSON: a list of objects with id, kind (one of: {kinds}), "
    "title and depends_on (ids of subtasks whose results it needs)."
)
SYNTH_INSTRUCTION = (
    "Combine the results below into one answer, then rate it. Reply with only JSON: "
    '{"answer": "...", "quality": 0.0-1.0, "feedback": "what is missing, if anything"}.'
)


def config_of(ctx: NodeContext) -> AgentConfig:
    config = dict(ctx.node_spec.config)
    if ctx.node_spec.max_iterations is not None:  # `max_iterations:` on the node is the same setting
        config.setdefault("max_iterations", ctx.node_spec.max_iterations)
    try:
        return AgentConfig.model_validate(config)
    except ValidationError as exc:
        raise NodeError(f"node {ctx.node!r}: invalid config: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None


def item_details(state: dict[str, Any], ctx: NodeContext) -> dict[str, Any] | None:
    if ctx.item is None:
        return None
    subtasks = state.get("subtasks") or []
    found = next((t for t in subtasks if isinstance(t, dict) and t.get("id") == ctx.item.get("id")), None)
    return {**ctx.item, **(found or {})}


def _variables(state: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    item = item_details(state, ctx)
    question = next(
        (m.get("content") for m in reversed(state.get("messages") or []) if isinstance(m, dict) and m.get("role") == "user"), ""
    )
    return {"state": state, "item": item or {}, "task": (item or {}).get("title", ""), "question": question, "node": ctx.node}


def build_request(
    state: dict[str, Any],
    ctx: NodeContext,
    cfg: AgentConfig,
    *,
    messages: list[dict[str, Any]] | None = None,
    extra_user: str | None = None,
    turn: int | None = None,
    with_tools: bool = True,
    schema: dict[str, Any] | None = None,
) -> ChatRequest:
    variables = _variables(state, ctx)
    history = [m for m in (messages if messages is not None else list(state.get("messages") or [])) if isinstance(m, dict)]
    if ctx.item is not None and variables["task"]:
        history.append({"role": "user", "content": variables["task"]})
        needed = _prerequisites(state, ctx, variables["item"])
        if needed:
            history.append({"role": "user", "content": f"Results of the subtasks this one depends on: {json.dumps(needed, default=str)}"})
    if cfg.feedback:
        entries = state.get(cfg.feedback) or []
        last = entries[-1] if isinstance(entries, list) and entries else None
        text = last.get("content") if isinstance(last, dict) else last
        if text and str(text).strip().lower() != "approve":
            history.append({"role": "user", "content": f"Reviewer feedback: {text}"})
    if ctx.node_spec.prompt:
        history.append({"role": "user", "content": render(ctx.node_spec.prompt, variables)})
    if extra_user:
        history.append({"role": "user", "content": extra_user})
    system = render(ctx.node_spec.system, variables) if ctx.node_spec.system else None
    if cfg.reasoning == "cot":
        system = f"{system}\n\n{COT_INSTRUCTION}" if system else COT_INSTRUCTION
    history = guard.guard_input(ctx, history)  # input guardrails before the model sees it (raises Blocked)
    if ctx.node_spec.memory is not None:  # Retrieve Context: STM budget + retrieved memories (docs/memory.md)
        from stepwise.runtime.memory import prepare

        before = system or ""
        history, system = prepare(state, ctx, history, system, ctx.node_spec.model)
        if system and system.startswith(before) and len(system) > len(before):  # the retrieved section: memory rails
            system = before + guard.guard_memory(ctx, system[len(before) :])
    return ChatRequest(
        model=ctx.node_spec.model or "scripted",
        messages=history,
        system=system,
        tools=ctx.tool_specs() if with_tools else [],
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        response_schema=schema,
        metadata={"turn": ctx.turn if turn is None else turn, "item": item_details(state, ctx), "node": ctx.node},
    )


def _prerequisites(state: dict[str, Any], ctx: NodeContext, item: dict[str, Any]) -> dict[str, Any]:
    """What earlier waves produced for the subtasks ``item`` depends on (merge channels are keyed by subtask id)."""
    found: dict[str, Any] = {}
    for dep in item.get("depends_on") or []:
        for channel, reducer in ctx.spec.state.items():
            value = state.get(channel)
            if reducer == "merge" and isinstance(value, dict) and dep in value:
                found[dep] = value[dep]
    return found


def _version(ctx: NodeContext) -> str:
    return prompt_version(ctx.node_spec.system, ctx.node_spec.prompt, json.dumps(ctx.node_spec.config, sort_keys=True))


def _call(ctx: NodeContext, cfg: AgentConfig, request: ChatRequest, **kwargs: Any) -> ChatResponse:
    return ctx.call_model(request, cache=cfg.cache, stream=cfg.stream, prompt_version=_version(ctx), **kwargs)


def _final(ctx: NodeContext, cfg: AgentConfig, state: dict[str, Any], request: ChatRequest, response: ChatResponse) -> tuple[str, Any]:
    """(message text, channel value): strip chain-of-thought; validate structured output, with one repair call."""
    content = response.content
    if cfg.reasoning == "cot":
        _, content = split_thinking(content)
    verdict = guard.guard_output(ctx, content, _repairer(ctx, cfg, request, response))
    if verdict.blocked or cfg.output_schema is None:
        return verdict.text, verdict.text
    content = verdict.text
    model = output_model(cfg.output_schema)
    try:
        value = parse_structured(content, model)
    except (ValueError, ValidationError) as exc:
        repair = request.model_copy(
            update={
                "messages": [
                    *request.messages,
                    response.message(),
                    {"role": "user", "content": f"That reply was invalid ({str(exc)[:300]}). Reply again with only the JSON."},
                ]
            }
        )
        retry = _call(ctx, cfg, repair)
        try:
            value = parse_structured(split_thinking(retry.content)[1] if cfg.reasoning == "cot" else retry.content, model)
        except (ValueError, ValidationError) as again:
            raise NodeError(f"node {ctx.node!r}: the model's reply does not match output_schema: {again}") from None
    data = value.model_dump(mode="json")
    return json.dumps(data, ensure_ascii=False), data


def _repairer(ctx: NodeContext, cfg: AgentConfig, request: ChatRequest, response: ChatResponse) -> Any:
    """One repair call for a failed ``schema`` output rail: the model is told what was wrong."""

    def repair(problem: str) -> str:
        retry = request.model_copy(
            update={
                "messages": [
                    *request.messages,
                    response.message(),
                    {"role": "user", "content": f"That reply was invalid ({problem[:300]}). Reply again with only the JSON."},
                ]
            }
        )
        return _call(ctx, cfg, retry).content

    return repair


def _write(ctx: NodeContext, channel: str, value: Any, messages: list[dict[str, Any]]) -> dict[str, Any]:
    reducer = ctx.spec.reducer_of(channel)
    if reducer == "merge":
        key = ctx.item["id"] if ctx.item else ctx.node
        return {channel: {key: value}}
    if reducer == "append":
        return {channel: messages}
    return {channel: value}


# -- agent ------------------------------------------------------------------------------------------
def loop_of(ctx: NodeContext, cfg: AgentConfig) -> str:
    """``config.loop``, or by default ``graph`` if the graph runs this agent's tool calls, else ``fused``."""
    if cfg.loop is not None:
        return cfg.loop
    if ctx.node_spec.tools and not routes_to_tools(ctx.spec, ctx.node.rsplit("/", 1)[-1]):
        return "fused"
    return "graph"


def agent(state: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """An agent turn under its guardrails: blocked input gets the refusal, and a block or escalation is
    also written to ``guardrail`` so the graph can route to a human node."""
    try:
        update = _agent(state, ctx)
    except guard.Blocked:
        message = {"role": "assistant", "content": guard.REFUSAL, "name": ctx.node}
        update = _write(ctx, ctx.node_spec.output or "messages", guard.REFUSAL, [message])
    return {**update, **guard.channel_update(ctx)}


def _agent(state: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    cfg = config_of(ctx)
    schema = output_model(cfg.output_schema).model_json_schema() if cfg.output_schema else None
    if loop_of(ctx, cfg) == "fused":
        return _fused(state, ctx, cfg, schema)
    request = build_request(state, ctx, cfg, schema=schema)
    response = _call(ctx, cfg, request)
    if response.tool_calls:  # the graph's act node runs them
        message = {**response.message(), "name": ctx.node}
        return _write(ctx, ctx.node_spec.output or "messages", response.content, [message])
    text, value = _final(ctx, cfg, state, request, response)
    message = {**response.message(), "content": text, "name": ctx.node}
    _consolidate(state, ctx, [message], text)
    return _write(ctx, ctx.node_spec.output or "messages", value, [message])


def _consolidate(state: dict[str, Any], ctx: NodeContext, produced: list[dict[str, Any]], answer: str) -> None:
    """Consolidate to long-term memory once the agent's answer is checkpointed: the step runs the write-back
    after its update is committed, so a step that fails at the checkpoint writes no memories. Never fails
    the run."""
    if ctx.node_spec.memory is not None:
        from stepwise.runtime.memory import write_back

        model = ctx.node_spec.model
        ctx.after_commit.append(lambda: write_back(state, ctx, produced, answer, model))


def _fused(state: dict[str, Any], ctx: NodeContext, cfg: AgentConfig, schema: dict[str, Any] | None) -> dict[str, Any]:
    limit = cfg.max_iterations or ctx.spec.graph.max_iterations
    history = list(state.get("messages") or [])
    produced: list[dict[str, Any]] = []
    reflections = 0
    for i in range(limit):
        request = build_request(state, ctx, cfg, messages=history + produced, turn=ctx.turn + i, schema=schema)
        response = _call(ctx, cfg, request)
        produced.append({**response.message(), "name": ctx.node})
        if response.tool_calls:
            outcomes = ctx.run_tools(response.tool_calls, prefix=f"{ctx.key}|i{i}", timeouts=cfg.tool_timeouts)
            produced.extend(o.message() for o in outcomes)
            continue
        text, value = _final(ctx, cfg, state, request, response)
        produced[-1]["content"] = text
        if cfg.reflect:
            critique = _reflect(state, ctx, cfg, history + produced, reflections)
            reflections += 1
            if critique.strip().lower() != "approve":
                produced.append({"role": "user", "content": f"Reviewer feedback: {critique}", "name": f"{ctx.node}.reflect"})
                continue
        channel = ctx.node_spec.output or "messages"
        _consolidate(state, ctx, produced, text)
        return _write(ctx, channel, value, produced if ctx.spec.reducer_of(channel) == "append" else [produced[-1]])
    error = MaxIterationsError(
        f"agent {ctx.node!r} reached config.max_iterations={limit} without a final answer; raise it or simplify the task"
    )
    error.fix = f"raise `max_iterations` on node {ctx.node!r} above {limit}, or make the task (or the tools' answers) simpler"
    raise error


def _reflect(state: dict[str, Any], ctx: NodeContext, cfg: AgentConfig, messages: list[dict[str, Any]], n: int) -> str:
    request = build_request(state, ctx, cfg, messages=messages, extra_user=cfg.reflect_prompt or REFLECT_PROMPT, turn=n, with_tools=False)
    request.metadata["node"] = f"{ctx.node}.reflect"
    return _call(ctx, cfg, request, script=cfg.reflect_script or ["approve"]).content


# -- planner ----------------------------------------------------------------------------------------
class Subtask(BaseModel):
    """One subtask a planner hands to a worker."""

    id: str
    kind: str | None = None
    title: str = ""
    depends_on: list[str] = Field(default_factory=list)


def waves(tasks: list[Subtask]) -> list[list[str]]:
    """Kahn's algorithm in layers: wave k holds the subtasks whose dependencies are all in earlier waves."""
    ids = [t.id for t in tasks]
    deps = {t.id: set(t.depends_on) for t in tasks}
    done: set[str] = set()
    out: list[list[str]] = []
    while len(done) < len(ids):
        ready = [i for i in ids if i not in done and deps[i] <= done]
        if not ready:
            cycle = sorted(i for i in ids if i not in done)
            raise NodeError(f"the plan's dependencies form a cycle among {', '.join(cycle)}; a subtask cannot depend on itself")
        out.append(ready)
        done.update(ready)
    return out


def planner(state: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    cfg = config_of(ctx)
    channel = ctx.node_spec.output or "subtasks"
    existing = [t for t in (state.get(channel) or []) if isinstance(t, dict)]
    pending = [t for t in existing if t.get("status") == "pending"]
    if pending:  # the Map finished a wave: dispatch the next one, no model call
        wave = min(int(t.get("wave", 0)) for t in pending)
        plan = [{**t, "status": "dispatched"} if t.get("status") == "pending" and int(t.get("wave", 0)) == wave else t for t in existing]
    else:
        plan = _new_plan(state, ctx, cfg)
        wave = 0
    if not cfg.dag:  # no wave loop compiled for this planner: every subtask runs in the one Map
        plan = [{**t, "status": "dispatched"} for t in plan]
        ctx.items = [{"id": t["id"], "kind": t["kind"]} for t in plan]
        return {channel: plan}
    ctx.items = [{"id": t["id"], "kind": t["kind"]} for t in plan if t.get("wave") == wave and t.get("status") == "dispatched"]
    ctx.cursor["more"] = any(t.get("status") == "pending" for t in plan)
    return {channel: plan}


def _new_plan(state: dict[str, Any], ctx: NodeContext, cfg: AgentConfig) -> list[dict[str, Any]]:
    workers = ctx.node_spec.workers
    instruction = PLAN_INSTRUCTION.format(kinds=", ".join(workers) or "task")
    if not cfg.dag:
        instruction = instruction.replace(" and depends_on (ids of subtasks whose results it needs)", "")
    request = build_request(state, ctx, cfg, extra_user=instruction, with_tools=False)
    response = _call(ctx, cfg, request)
    raw = response.extra.get("subtasks")
    if raw is None:
        try:
            raw = extract_json(response.content)
        except ValueError:
            raise NodeError(f"planner {ctx.node!r}: the model returned no subtasks (expected a JSON list)") from None
        if isinstance(raw, dict):
            raw = raw.get("subtasks")
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise NodeError(f"planner {ctx.node!r}: subtasks must be a list of objects with id, kind and title")
    tasks = []
    for index, task in enumerate(raw):
        try:
            tasks.append(Subtask.model_validate({**task, "id": str(task.get("id") or f"t{index + 1}")}))
        except ValidationError as exc:
            raise NodeError(f"planner {ctx.node!r}: subtask {index}: {exc.errors()[0]['msg']}") from None
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise NodeError(f"planner {ctx.node!r}: subtask ids must be unique, got {ids}")
    for t in tasks:
        t.kind = t.kind or next(iter(workers), "task")
        if workers and t.kind not in workers:
            raise NodeError(f"planner {ctx.node!r}: subtask kind {t.kind!r} has no worker; workers: {', '.join(workers)}")
        unknown = [d for d in t.depends_on if d not in ids]
        if unknown:
            raise NodeError(f"planner {ctx.node!r}: subtask {t.id!r} depends on unknown {unknown}; known ids: {ids}")
    level = {tid: n for n, wave in enumerate(waves(tasks)) for tid in wave}
    raw_by_id = {str(r.get("id") or f"t{i + 1}"): r for i, r in enumerate(raw)}
    return [
        {**raw_by_id[t.id], **t.model_dump(), "wave": level[t.id], "status": "dispatched" if level[t.id] == 0 else "pending"} for t in tasks
    ]


# -- synthesizer ------------------------------------------------------------------------------------
class Synthesis(BaseModel):
    """A synthesizer's answer and its self-assessed quality."""

    answer: str
    quality: float = Field(ge=0, le=1)
    feedback: str = ""


def synthesizer(state: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    cfg = config_of(ctx)
    inputs = cfg.inputs if cfg.inputs is not None else [c for c, r in ctx.spec.state.items() if r == "merge"]
    results = {c: state.get(c) for c in inputs if state.get(c) is not None}
    extra = f"{SYNTH_INSTRUCTION}\n\nResults:\n{json.dumps(results, ensure_ascii=False, default=str)}" if results else SYNTH_INSTRUCTION
    request = build_request(state, ctx, cfg, extra_user=extra, with_tools=False, schema=Synthesis.model_json_schema())
    response = _call(ctx, cfg, request)
    if "quality" in response.extra:  # scripted replies carry the score directly
        found = Synthesis(
            answer=response.content, quality=float(response.extra["quality"]), feedback=str(response.extra.get("feedback", ""))
        )
    else:
        try:
            found = parse_structured(split_thinking(response.content)[1], Synthesis)  # type: ignore[assignment]
        except (ValueError, ValidationError):
            found = Synthesis(answer=response.content, quality=1.0, feedback="")
    update: dict[str, Any] = {ctx.node_spec.output or "answer": found.answer, "quality": found.quality}
    if found.quality < cfg.min_quality and found.feedback and ctx.spec.reducer_of("messages") == "append":
        update["messages"] = [{"role": "user", "content": f"Reviewer feedback: {found.feedback}", "name": ctx.node}]
    return update
