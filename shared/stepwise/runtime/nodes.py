"""Node kinds: each turns (state, context) into an update; this module is the dispatch table.

The agent, planner and synthesizer logic lives in ``agents.py``; the context they run with in ``context.py``.
"""

from __future__ import annotations

import importlib
import inspect
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from stepwise.aio import run_sync
from stepwise.errors import MaxIterationsError, NodeError
from stepwise.runtime.context import NodeContext

__all__ = ["MaxIterationsError", "NodeContext", "NodeError", "Offload", "import_function", "run_node", "run_node_async"]


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
    if inspect.iscoroutine(update):  # an ``async def`` function node on a sequential path
        update = run_sync(update)
    return _checked(update, ctx)


def _checked(update: Any, ctx: NodeContext) -> dict[str, Any]:
    if update is None:
        return {}
    if not isinstance(update, dict):
        raise NodeError(f"node {ctx.node!r} returned {type(update).__name__}; a node returns a dict of channel updates")
    return update


_QUICK: dict[str, bool] = {}


class Offload:
    """Where a branch's synchronous node runs: inline on the event loop's thread, or on a thread.

    Quick CPU-bound functions (most function nodes) lose time on a thread hand-off and gain nothing under
    the GIL; a node that blocks (a synchronous SDK call, ``time.sleep``) must not hold up its siblings.
    Agent, planner and synthesizer nodes (LLM calls) always go to a thread. A function node goes to a
    thread until it has been seen to be quick: its call took under ``quick_s`` of wall time, most of it on
    the CPU. A function seen to block once stays on threads for good, even if a later call is quick (the
    last of several branches meeting at a lock returns at once; inlining it would hold up its siblings next
    time). Results and merge order do not depend on where a node ran.
    """

    def __init__(self, max_workers: int = 256, quick_s: float = 0.001) -> None:
        self.max_workers = max_workers
        self.quick_s = quick_s
        self._quick = _QUICK  # what was learned about a function holds for every run in the process
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="stepwise-node")
            return self._pool

    def inline(self, fn_path: str) -> bool:
        return self._quick.get(fn_path, False)

    def observe(self, fn_path: str, wall: float, cpu: float) -> None:
        self._quick[fn_path] = self._quick.get(fn_path, True) and wall < self.quick_s and cpu >= wall / 2

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None


def _timed_call(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    result = fn()
    return result, time.perf_counter() - wall, time.thread_time() - cpu


async def run_node_async(state: dict[str, Any], ctx: NodeContext, offload: Offload | None) -> dict[str, Any]:
    """``run_node`` for a branch running on an event loop (see ``Offload``)."""
    kind = ctx.node_spec.kind
    if kind == "function":
        path = str(ctx.node_spec.fn)
        fn, takes_ctx = import_function(path)
        if inspect.iscoroutinefunction(fn):
            return _checked(await (fn(state, ctx) if takes_ctx else fn(state)), ctx)
        call: Callable[[], Any] = (lambda: fn(state, ctx)) if takes_ctx else (lambda: fn(state))
        if offload is None:
            return _checked(call(), ctx)
        if offload.inline(path):
            update, wall, cpu = _timed_call(call)
        else:
            update, wall, cpu = await _loop().run_in_executor(offload.pool(), _timed_call, call)
        offload.observe(path, wall, cpu)
        if inspect.iscoroutine(update):  # a sync function that returned a coroutine
            update = await update
        return _checked(update, ctx)
    if kind in ("human", "subgraph") or offload is None:
        return run_node(state, ctx)
    result: dict[str, Any] = await _loop().run_in_executor(offload.pool(), run_node, state, ctx)
    return result


def _loop() -> Any:
    import asyncio

    return asyncio.get_running_loop()


def _function(state: dict[str, Any], ctx: NodeContext) -> Any:
    fn, takes_ctx = import_function(str(ctx.node_spec.fn))
    return fn(state, ctx) if takes_ctx else fn(state)


def _human(state: dict[str, Any], ctx: NodeContext) -> Any:
    return dict(ctx.resume_input or {})


def _passthrough(state: dict[str, Any], ctx: NodeContext) -> Any:
    return {}


def _agents(kind: str) -> Callable[[dict[str, Any], NodeContext], Any]:
    """Agent, planner and synthesizer nodes, imported on first use (the LLM layer stays out of function-only runs)."""

    def run(state: dict[str, Any], ctx: NodeContext) -> Any:
        from stepwise.runtime import agents

        return getattr(agents, kind)(state, ctx)

    return run


_RUNNERS: dict[str, Callable[[dict[str, Any], NodeContext], Any]] = {
    "function": _function,
    "human": _human,
    "subgraph": _passthrough,
    "agent": _agents("agent"),
    "planner": _agents("planner"),
    "synthesizer": _agents("synthesizer"),
}
