"""Running coroutines from synchronous code, cheaply: one event loop per OS thread, kept for reuse.

The local engine is synchronous on its main path (a sequential run never touches an event loop) and
switches to a loop only where concurrency pays: Parallel/Map branches and ``async def`` nodes.
Creating a loop costs ~0.1–0.5 ms, so each thread keeps its own. A thread that already runs a loop
(an async server calling the synchronous client) gets the work done on a helper thread instead of
re-entering its own loop.
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # asyncio is imported on first use: a sequential run never needs it
    import asyncio

T = TypeVar("T")

_local = threading.local()
_helper = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stepwise-aio")


def thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's reusable event loop (created on first use)."""
    import asyncio

    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code and return its result (or raise its error)."""
    import asyncio

    if asyncio._get_running_loop() is not None:  # called from inside a running loop: never block or re-enter it
        return _helper.submit(_run_here, coro).result()
    return _run_here(coro)


def _run_here(coro: Coroutine[Any, Any, T]) -> T:
    return thread_loop().run_until_complete(coro)
