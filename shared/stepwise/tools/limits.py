"""Resource limits for tool calls, enforced outside the tool: a wall and a CPU budget, and bounded output.

Why outside: a tool that burns CPU in pure Python holds the GIL, so a timeout in the same process (an
``asyncio.wait_for`` around it) never gets to fire — the probe's ``(((9**99)**99)**99)**99`` ran for
ten minutes. So a CPU-bound built-in runs in a child process (from a ``forkserver``, which is safe in a
threaded server and makes each call a cheap fork of a warm process) with ``RLIMIT_CPU`` set, and the
parent waits at most the wall budget, then kills it. I/O-bound async tools (``http_fetch``) get the wall
budget as a cancellation, which works because they yield to the loop.

This module is the seam the sandbox (stepwise/tools, the safety work) can replace: it exposes
:func:`run_bounded` for a named built-in and :class:`ToolBudget` for the numbers.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
from collections.abc import Awaitable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from stepwise.errors import StepwiseError

T = TypeVar("T")


class ToolLimitError(StepwiseError, RuntimeError):
    """A tool call went over its budget (wall time, CPU time or output size)."""


@dataclass(frozen=True)
class ToolBudget:
    """Wall time, CPU time and output size one tool call may use (``ToolSettings.budget()``: from ``STEPWISE_TOOL_*``)."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    max_output_bytes: int = 200_000
    #: How long the child may take to start before the wall clock starts (the forkserver's first start, and
    #: the parent's ``__main__`` module, which a multiprocessing child imports again): not the tool's time.
    start_seconds: float = 120.0


_context_lock = threading.Lock()
_context: Any = None


def _mp() -> Any:
    """The forkserver context, started once per process with the built-ins preloaded."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            # the child unpickles _child from this module: preloading it too leaves the child nothing to import
            ctx.set_forkserver_preload(["stepwise.tools.builtin", "stepwise.tools.limits"])
            _context = ctx
    return _context


def _child(conn: Connection, name: str, kwargs: dict[str, Any], cpu_seconds: int) -> None:  # pragma: no cover - runs in the child
    import resource

    from stepwise.tools import builtin

    conn.send(("ready", None))  # start-up is over: the parent's wall clock starts now
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    try:
        if ":" in name:  # an import path (tests, and tools that are not built-ins)
            import importlib

            module, _, attr = name.partition(":")
            fn = getattr(importlib.import_module(module), attr)
        else:
            fn = builtin.BUILTINS[name][0]
        result = fn(**kwargs)
        conn.send(("ok", json.dumps(result, default=str)))
    except Exception as exc:  # noqa: BLE001 - the parent re-raises it with its type name
        conn.send(("error", (type(exc).__name__, str(exc))))
    finally:
        conn.close()


_REraisable: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "TypeError": TypeError,
    "PermissionError": PermissionError,
    "LookupError": LookupError,
    "KeyError": KeyError,
    "ZeroDivisionError": ValueError,
    "OverflowError": ValueError,
}


def run_bounded(name: str, kwargs: dict[str, Any], budget: ToolBudget | None = None) -> Any:
    """Call the built-in ``name`` (or a ``module:function`` path) with ``kwargs`` in a child process within ``budget``; return its result.

    Raises ToolLimitError over budget; the tool's own ValueError/TypeError/... come back as themselves."""
    budget = budget or ToolBudget()
    ctx = _mp()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, name, kwargs, budget.cpu_seconds), daemon=True)
    proc.start()
    child.close()
    try:
        _started(parent, name, budget)
        if not parent.poll(budget.wall_seconds):
            raise ToolLimitError(f"tool {name!r} ran over its wall budget of {budget.wall_seconds:g}s and was stopped")
        try:
            kind, payload = parent.recv()
        except EOFError:
            raise ToolLimitError(f"tool {name!r} ran over its CPU budget of {budget.cpu_seconds}s and was stopped") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    if kind == "error":
        type_name, message = payload
        raise _REraisable.get(type_name, RuntimeError)(message)
    if len(payload) > budget.max_output_bytes:
        raise ToolLimitError(f"tool {name!r} returned {len(payload)} bytes, over the {budget.max_output_bytes}-byte output budget")
    return json.loads(payload)


def _started(parent: Connection, name: str, budget: ToolBudget) -> None:
    """Wait for the child's "ready": under load, starting the forkserver and re-importing the parent's main
    module can take seconds, which must not count against the tool's wall budget."""
    if not parent.poll(budget.start_seconds):
        raise ToolLimitError(f"the child process for tool {name!r} did not start within {budget.start_seconds:g}s")
    try:
        parent.recv()
    except EOFError:
        raise ToolLimitError(
            f"the child process for tool {name!r} exited while starting; if this is a script, put its top-level code "
            'under `if __name__ == "__main__":` (every tool child imports the main module again)'
        ) from None


async def arun_bounded(name: str, kwargs: dict[str, Any], budget: ToolBudget | None = None) -> Any:
    """:func:`run_bounded` without blocking the event loop."""
    return await asyncio.to_thread(run_bounded, name, kwargs, budget)


async def within_wall(coro: Awaitable[T], name: str, budget: ToolBudget | None = None) -> T:
    """Await an I/O-bound tool's coroutine for at most the wall budget."""
    budget = budget or ToolBudget()
    try:
        return await asyncio.wait_for(coro, budget.wall_seconds)
    except TimeoutError:
        raise ToolLimitError(f"tool {name!r} ran over its wall budget of {budget.wall_seconds:g}s and was stopped") from None
