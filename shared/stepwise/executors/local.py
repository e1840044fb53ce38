"""The embedded default executor: the compiled ASL interpreted in-process, with the step as a local call."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from stepwise.asl.compiler import RATE_LIMITED_ERROR
from stepwise.asl.interpreter import Clock, ExecutionResult, Interpreter, Parked, task_failure
from stepwise.executors.base import STEP_FUNCTION
from stepwise.runtime.nodes import Offload
from stepwise.runtime.services import Services
from stepwise.runtime.step import astep, step
from stepwise.state.leases import Heartbeat
from stepwise.state.ports import RunRecord, RunTransitionError

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """The embedded default: interpret the ASL in-process, synchronously, with the step as a local call.

    A resumed run is replayed from its start cursor; the idempotent step makes completed tasks instant.
    """

    synchronous = True

    def __init__(self, services: Services, clock: Clock | None = None, max_concurrency: int | None = None) -> None:
        self.services = services
        self.clock = clock
        # Parallel/Map branches run as tasks on an event loop: an ``async def`` node's wait holds no thread.
        # Blocking nodes (agents' LLM calls, synchronous functions that are not quick) run on up to this
        # many threads; Map states may set their own, lower MaxConcurrency.
        self.max_concurrency = max_concurrency or services.settings.local_concurrency
        self.offload = Offload(max_workers=self.max_concurrency)
        self._handed: dict[str, dict[str, Any]] = {}  # run id -> the cursor its continuation execution starts with
        self._lock = threading.Lock()
        services.handover = self.handover

    def handover(self, run_id: str, cursor: dict[str, Any], number: int) -> None:
        """The step ended this execution at a node boundary: record where the continuation starts (a replay
        after a crash or a human's answer starts there too) and run it when this execution returns."""
        self.services.runs.transition(run_id, start_cursor=cursor)
        with self._lock:
            self._handed[run_id] = cursor

    def deploy(self, ref: str, asl: dict[str, Any]) -> None:
        return None

    def start(self, run: RunRecord, asl: dict[str, Any]) -> ExecutionResult:
        """Run (or replay) the execution from the run's start cursor, then each continuation it hands over to."""
        cursor = run.start_cursor
        # a run this process has just begun knows its head: only the run's own steps may append after it
        begun = self.services.begun.pop(run.run_id, None)
        fresh = self._fresh(run, cursor, begun)
        transitions = 0
        with Heartbeat.track(self.services.runs, run.run_id, self.services.settings.run_lease_seconds):
            while True:
                interpreter = self._interpreter(fresh)
                result = interpreter.execute(asl, cursor, name=str(cursor.get("execution") or run.run_id))
                transitions += result.transitions
                with self._lock:
                    handed = self._handed.pop(run.run_id, None)
                if interpreter.parked is not None:
                    self._park(run, interpreter.parked)
                if handed is None or result.status != "SUCCEEDED" or interpreter.parked is not None:
                    result.transitions = transitions
                    return result
                cursor = handed
                fresh = self._fresh(run, cursor)

    def _fresh(self, run: RunRecord, cursor: dict[str, Any], head: int | None = None) -> bool:
        """Nothing after the cursor yet, so no task of this execution can have completed: every task key names
        its input seq, and any task's write lands after it. The step then skips the completed-task lookup
        (one statement a step). True of a new run, and of a continuation execution this process starts at
        the head; a replay, or a continuation another writer appended past, looks its tasks up."""
        return bool((head if head is not None else self.services.events.head(run.thread_id)) == cursor["seq"])

    def _interpreter(self, fresh: bool) -> Interpreter:
        return Interpreter(
            {STEP_FUNCTION: lambda payload: step(self.services, payload, fresh=fresh)},
            async_functions={STEP_FUNCTION: lambda payload: astep(self.services, payload, fresh=fresh, offload=self.offload)},
            tokens=self.services.runs,
            clock=self.clock,
            max_workers=self.max_concurrency,
            park_after=self.services.settings.park_after_seconds,
            park_errors=frozenset({RATE_LIMITED_ERROR}),
        )

    def _park(self, run: RunRecord, parked: Parked) -> None:
        """Record the parked run: waiting, with when to continue it (``Stepwise.continue_parked``; the
        scheduler in ``stepwise serve`` does that when it falls due). Durable: it is in the run record."""
        current = self.services.runs.get(run.run_id)
        parks = int(((current.waiting if current else None) or {}).get("parks", 0)) + 1
        waiting = {
            "kind": "retry",
            "node": parked.state,
            "error": parked.error,
            "retry_at": time.time() + parked.seconds,
            "parks": parks,
            "prompt": f"rate-limited ({parked.error}); continues after {parked.seconds:g} s",
        }
        with contextlib.suppress(RunTransitionError):  # cancelled meanwhile: it stays cancelled
            self.services.runs.update(run.run_id, expect=("running",), status="waiting", waiting=waiting, lease_until=None)

    def send_token(self, run: RunRecord, token: str, output: dict[str, Any]) -> ExecutionResult:
        return self._complete(run, token, output)

    def fail_token(self, run: RunRecord, token: str, error: str, cause: str) -> ExecutionResult:
        """Fail a human node's task token (Step Functions' SendTaskFailure; ``States.Timeout`` when its wait's
        deadline passed) and replay the run: the Task fails with ``error``, and its Retry and Catch take it
        from there (by default to the fail step)."""
        return self._complete(run, token, task_failure(error, cause))

    def _complete(self, run: RunRecord, token: str, output: dict[str, Any]) -> ExecutionResult:
        """Store the token's outcome where any replay reads it, then replay the run up to the next wait or end."""
        self.services.runs.complete_token(token, output)
        found = self.services.registry.get(run.graph_ref)
        assert found is not None, run.graph_ref
        return self.start(run, found[1])

    def execution_status(self, run: RunRecord) -> str | None:
        """None: a local run has no execution outside its process (its lease says whether it is alive)."""
        return None

    def stop(self, run: RunRecord, *, cause: str = "cancelled") -> None:
        """Nothing to stop: a local run executes synchronously in its caller; the cancelled run record is what
        a later ``resume`` sees."""
        return None
