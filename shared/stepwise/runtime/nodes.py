"""Node kinds: each turns (state, context) into an update; this module is the dispatch table.

The agent, planner and synthesizer logic lives in ``agents.py``; the context they run with in ``context.py``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from stepwise.errors import MaxIterationsError, NodeError
from stepwise.runtime.agents import agent, planner, synthesizer
from stepwise.runtime.context import NodeContext

__all__ = ["MaxIterationsError", "NodeContext", "NodeError", "import_function", "run_node"]


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


_RUNNERS: dict[str, Callable[[dict[str, Any], NodeContext], Any]] = {
    "function": _function,
    "human": _human,
    "subgraph": _passthrough,
    "agent": agent,
    "planner": planner,
    "synthesizer": synthesizer,
}
