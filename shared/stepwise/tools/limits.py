"""Resource limits for tool calls, enforced outside the tool: a wall and a CPU budget, and bounded output.

Why outside: a tool that burns CPU in pure Python holds the GIL, so a timeout in the same process (an
``asyncio.wait_for`` around it) never gets to fire — the probe's ``(((9**99)**99)**99)**99`` ran for
ten minutes. So a CPU-bound built-in runs in a child process (from a ``forkserver``, which is safe in a
threaded server and makes each call a cheap fork of a warm process) with ``RLIMIT_CPU`` set, and the
parent waits at most the wall budget, then kills it. The child never imports the caller's ``__main__``
(:class:`_MainFreeProcess`), so a plain script needs no ``if __name__ == "__main__":`` guard. I/O-bound
async tools (``http_fetch``) get the wall budget as a cancellation, which works because they yield to the loop.

This module is the seam the sandbox (stepwise/tools, the safety work) can replace: it exposes
:func:`run_bounded` for a named built-in and :class:`ToolBudget` for the numbers.
"""

from __future__ import annotations

import asyncio
import io
import json
import multiprocessing
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from multiprocessing import context as mp_context
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
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
    #: How long the child may take to start before the wall clock starts (the forkserver's first start, which
    #: imports the built-ins, can take seconds on a loaded machine): not the tool's time.
    start_seconds: float = 120.0


def _new_forkserver() -> forkserver.ForkServer:
    """A fork server of our own, with the built-ins preloaded (it starts on the first bounded call). Not the
    process-wide one: its preload list and its process belong to the caller's own ``multiprocessing`` use."""
    server = forkserver.ForkServer()
    # the child unpickles _child from this module: preloading it too leaves the child nothing to import
    server.set_forkserver_preload(["stepwise.tools.builtin", "stepwise.tools.limits"])
    return server


_forkserver = _new_forkserver()


def _forget_forkserver() -> None:
    """In a forked child: the parent's fork server is not this process's child, so it cannot be checked on
    (``waitpid`` fails) or relied on; start a fresh one when this process first needs it."""
    global _forkserver
    _forkserver = _new_forkserver()


os.register_at_fork(after_in_child=_forget_forkserver)


#: The keys of ``multiprocessing.spawn.get_preparation_data`` that make a child import the parent's main module.
_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


class _MainFreePopen(popen_forkserver.Popen):
    """A forkserver launch whose child does not import the parent's ``__main__`` module.

    Why: CPython's ``spawn.get_preparation_data`` always names the main module (by path or by module name),
    and ``spawn.prepare`` in every forkserver child imports it again as ``__mp_main__``: a plain script without
    ``if __name__ == "__main__":`` would run its top level once more per tool call, or die while starting.
    Our children never need it (the target is :func:`_child`, tools are built-ins or ``module:function``
    paths). No public switch exists, so ``_launch`` is CPython's own (identical in 3.11, 3.12 and 3.13,
    ``Lib/multiprocessing/popen_forkserver.py``) with two changes: the main-module keys are dropped from the
    preparation data, and the child comes from our own fork server. Only processes of :class:`_MainFreeProcess`
    use it: nothing global is patched or started, and the caller's own ``multiprocessing`` use is unchanged."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        for key in _MAIN_KEYS:  # the one change from CPython
            prep_data.pop(key, None)
        buf = io.BytesIO()
        mp_context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            mp_context.set_spawning_popen(None)

        self.sentinel, w = _forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]  # set in Popen.__init__, not in typeshed
        _parent_w = os.dup(w)  # the child watches this copy of the data pipe's write end as its parent sentinel
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))  # type: ignore[attr-defined]  # not in typeshed
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _MainFreeProcess(mp_context.ForkServerProcess):
    """A forkserver process started by :class:`_MainFreePopen` (its child skips the parent's ``__main__``)."""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _MainFreePopen(process_obj)


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
    parent, child = multiprocessing.Pipe(duplex=False)
    proc = _MainFreeProcess(target=_child, args=(child, name, kwargs, budget.cpu_seconds), daemon=True)
    proc.start()
    child.close()
    try:
        _started(parent, name, budget, proc)
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


def _started(parent: Connection, name: str, budget: ToolBudget, proc: Any) -> None:
    """Wait for the child's "ready": under load, starting the forkserver (which imports the built-ins) can take
    seconds, which must not count against the tool's wall budget."""
    if not parent.poll(budget.start_seconds):
        raise ToolLimitError(f"the child process for tool {name!r} did not start within {budget.start_seconds:g}s")
    try:
        parent.recv()
    except EOFError:
        proc.join(5)
        raise ToolLimitError(
            f"the child process for tool {name!r} exited while starting (exit code {proc.exitcode}); check this "
            "process's stderr for the child's traceback, and its limits: memory (ulimit -v) and processes (ulimit -u); "
            "a negative code is the signal that killed it (e.g. -9: the OOM killer)"
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
