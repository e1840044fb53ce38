"""Node kinds: each turns (state, context) into an update. Pure with respect to storage: events they
want recorded (LLM calls, tool calls) go into ``ctx.records`` and the step appends them with the update."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from stepwise.graph.spec import GraphSpec, NodeSpec
from stepwise.llm.base import ChatRequest, ChatResponse
from stepwise.state.events import LLM_CALL, Event
from stepwise.tools.builtin import BUILTINS


class NodeError(Exception):
    """A node raised or returned something invalid. Its ASL error name is ``Stepwise.NodeError``."""

    error_name = "Stepwise.NodeError"


class MaxIterationsError(Exception):
    error_name = "Stepwise.MaxIterationsExceeded"


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
    models: Any
    item: dict[str, Any] | None = None
    resume_input: dict[str, Any] | None = None
    items: list[dict[str, Any]] | None = None
    records: list[Event] = field(default_factory=list)

    def record(self, kind: str, **data: Any) -> None:
        self.records.append(Event(type=kind, run_id=self.run_id, node=self.node, scope=self.scope, data=data))

    def call_model(self, request: ChatRequest) -> ChatResponse:
        model = self.models.resolve(self.node_spec.model or "scripted", self.node_spec.script)
        response: ChatResponse = model.complete(request)
        self.record(
            LLM_CALL,
            request_hash=request.cache_key(),
            model=response.model or request.model,
            response=response.message(),
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            cost_usd=response.cost_usd,
            cached=response.cached,
        )
        return response


@lru_cache(maxsize=512)
def import_function(path: str) -> tuple[Callable[..., Any], bool]:
    """Import 'pkg.module:function'; also tell whether it takes the context argument."""
    module, _, attr = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise NodeError(f"cannot import {path!r}: {exc}. Run from the project directory or add it to PYTHONPATH") from None
    try:
        takes_ctx = len(inspect.signature(fn).parameters) >= 2
    except (TypeError, ValueError):
        takes_ctx = False
    return fn, takes_ctx


def run_node(state: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    runner = _RUNNERS[ctx.node_spec.kind]
    update = runner(state, ctx)
    if update is None:
        return {}
    if not isinstance(update, dict):
        raise NodeError(f"node {ctx.node!r} returned {type(update).__name__}; a node returns a dict of channel updates")
    return update


def _function(state: dict[str, Any], ctx: NodeContext) -> Any:
    fn, takes_ctx = import_function(str(ctx.node_spec.fn))
    return fn(state, ctx) if takes_ctx else fn(state)


def _human(state: dict[str, Any], ctx: NodeContext) -> Any:
    return dict(ctx.resume_input or {})


def _passthrough(state: dict[str, Any], ctx: NodeContext) -> Any:
    return {}


def _request(state: dict[str, Any], ctx: NodeContext, extra_user: str | None = None) -> ChatRequest:
    messages = list(state.get("messages") or [])
    if extra_user:
        messages.append({"role": "user", "content": extra_user})
    tools = [BUILTINS[t][1] for t in ctx.node_spec.tools if t in BUILTINS]
    return ChatRequest(
        model=ctx.node_spec.model or "scripted",
        messages=messages,
        system=ctx.node_spec.system,
        tools=tools,
        metadata={"turn": ctx.turn, "item": _item_details(state, ctx), "node": ctx.node},
    )


def _item_details(state: dict[str, Any], ctx: NodeContext) -> dict[str, Any] | None:
    if ctx.item is None:
        return None
    subtasks = state.get("subtasks") or []
    found = next((t for t in subtasks if isinstance(t, dict) and t.get("id") == ctx.item.get("id")), None)
    return {**ctx.item, **(found or {})}


def _write(ctx: NodeContext, channel: str, value: Any, message: dict[str, Any]) -> dict[str, Any]:
    reducer = ctx.spec.reducer_of(channel)
    if reducer == "merge":
        key = ctx.item["id"] if ctx.item else ctx.node
        return {channel: {key: value}}
    if reducer == "append":
        return {channel: [message]}
    return {channel: value}


def _agent(state: dict[str, Any], ctx: NodeContext) -> Any:
    item = _item_details(state, ctx)
    response = ctx.call_model(_request(state, ctx, extra_user=item.get("title") if item else None))
    message = {**response.message(), "name": ctx.node}
    return _write(ctx, ctx.node_spec.output or "messages", response.content, message)


def _planner(state: dict[str, Any], ctx: NodeContext) -> Any:
    response = ctx.call_model(_request(state, ctx))
    subtasks = response.extra.get("subtasks")
    if subtasks is None:
        try:
            subtasks = json.loads(response.content)
        except json.JSONDecodeError:
            raise NodeError(f"planner {ctx.node!r}: the model returned no subtasks (expected a JSON list)") from None
    if not isinstance(subtasks, list) or not all(isinstance(t, dict) for t in subtasks):
        raise NodeError(f"planner {ctx.node!r}: subtasks must be a list of objects with id, kind and title")
    workers = ctx.node_spec.workers
    clean = []
    for index, task in enumerate(subtasks):
        kind = str(task.get("kind") or next(iter(workers), "task"))
        if workers and kind not in workers:
            raise NodeError(f"planner {ctx.node!r}: subtask kind {kind!r} has no worker; workers: {', '.join(workers)}")
        clean.append({**task, "id": str(task.get("id") or f"t{index + 1}"), "kind": kind})
    ctx.items = [{"id": t["id"], "kind": t["kind"]} for t in clean]
    return {ctx.node_spec.output or "subtasks": clean}


def _synthesizer(state: dict[str, Any], ctx: NodeContext) -> Any:
    response = ctx.call_model(_request(state, ctx))
    quality = response.extra.get("quality", 1.0)
    return {ctx.node_spec.output or "answer": response.content, "quality": quality}


_RUNNERS: dict[str, Callable[[dict[str, Any], NodeContext], Any]] = {
    "function": _function,
    "human": _human,
    "subgraph": _passthrough,
    "agent": _agent,
    "planner": _planner,
    "synthesizer": _synthesizer,
}
