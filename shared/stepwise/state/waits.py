"""Deadlines of human waits (``config.timeout_seconds``), read the same way by the step, the client and the API.

On Step Functions the human node's ``.waitForTaskToken`` Task carries ``TimeoutSeconds``: an unanswered wait
fails with ``States.Timeout`` and the graph's Catch fails the run. The local engine has no service keeping
time, so the step records the wait's ``deadline`` (epoch seconds) in the interrupt event and the run's
``waiting``, and whoever sees it pass (``stepwise serve``'s scheduler on time; a resume or ``stepwise runs``
lazily) fails the wait's Task the same way. These helpers are that shared reading.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from stepwise.state.events import INTERRUPT, NODE_UPDATE, Event
from stepwise.state.ports import RunRecord

__all__ = [
    "TIMEOUT_ERROR",
    "deadline_of",
    "describe_deadline",
    "is_overdue",
    "timed_out",
    "timeout_error",
    "timeout_message",
    "wait_deadline",
]

#: What Step Functions fails a Task with when its ``TimeoutSeconds`` pass.
TIMEOUT_ERROR = "States.Timeout"
_INTERRUPT_SUFFIX = "|interrupt"


def wait_deadline(timeout_seconds: Any, now: float) -> dict[str, Any]:
    """The fields a wait of a human node with ``config.timeout_seconds`` records (none without one)."""
    if not timeout_seconds:
        return {}
    seconds = int(timeout_seconds)  # the compiler emits int(TimeoutSeconds): the same rounding on both engines
    return {"timeout_seconds": seconds, "deadline": now + seconds}


def deadline_of(waiting: dict[str, Any] | None) -> float | None:
    """When a human wait times out (epoch seconds); None for no deadline or a run parked on a rate limit."""
    if not waiting or waiting.get("kind") == "retry" or waiting.get("deadline") is None:
        return None
    return float(waiting["deadline"])


def is_overdue(run: RunRecord, now: float) -> bool:
    """The run waits at a human node whose deadline has come."""
    deadline = deadline_of(run.waiting) if run.status == "waiting" else None
    return deadline is not None and deadline <= now


def timed_out(run: RunRecord) -> bool:
    """The run failed because a human wait's deadline passed with no answer."""
    error = run.error or {}
    return run.status == "failed" and error.get("error") == TIMEOUT_ERROR and bool(error.get("node"))


def timeout_message(node: str, seconds: Any) -> str:
    return f"human node {node!r} waited {int(seconds)} s with no answer (config.timeout_seconds: {int(seconds)})"


def describe_deadline(deadline: float) -> str:
    """``2026-01-31 12:00:00 UTC`` for messages."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline))


def timeout_error(events: Iterable[Event], run_id: str) -> dict[str, Any] | None:
    """The run error's ``node``, ``message``, ``cause`` and ``fix`` for a ``States.Timeout`` that reached the fail
    step: the unanswered wait with a deadline among ``events`` (the earliest, if a parallel block waits twice).
    From the log, not the run record, so Step Functions (whose record still says waiting) and the local engine
    (whose record the timeout moved on) name it alike. None when no such wait is there."""
    answered: set[str] = set()
    waits: list[Event] = []
    for event in events:
        if event.run_id != run_id:
            continue
        if event.type == NODE_UPDATE and event.key:
            answered.add(event.key)
        elif event.type == INTERRUPT and event.data.get("timeout_seconds") and event.key:
            waits.append(event)
    open_waits = [e for e in waits if e.key is not None and e.key.removesuffix(_INTERRUPT_SUFFIX) not in answered]
    if not open_waits:
        return None
    wait = min(open_waits, key=lambda e: float(e.data.get("deadline") or 0))
    node = str(wait.data.get("node") or wait.node)
    message = timeout_message(node, wait.data["timeout_seconds"])
    return {
        "node": node,
        "message": message,
        "cause": message,
        "timeout_seconds": int(wait.data["timeout_seconds"]),
        "fix": f"start a new run (or `stepwise redrive {run_id}` to wait again); raise config.timeout_seconds to allow more time",
    }
