"""The executor protocol: how a client runs a registered graph's ASL, wherever that happens."""

from __future__ import annotations

from typing import Any, Protocol

from stepwise.asl.interpreter import ExecutionResult
from stepwise.state.ports import RunRecord

__all__ = ["STEP_FUNCTION", "Executor"]

#: The step's function name in compiled ASL; the local executor serves it in-process, AWS binds it to a Lambda ARN.
STEP_FUNCTION = "stepwise-step"


class Executor(Protocol):
    """Runs a registered graph's ASL: the local interpreter (``local.py``) or Step Functions (``stepfunctions.py``).

    ``start`` and ``send_token`` return the execution's result when it ran to an end or a wait in the
    caller (local), or ``None`` when it continues elsewhere (Step Functions); either way the step has
    written the run's status into the run store.
    """

    #: True when ``start`` runs the execution in the caller's thread and returns when it ends or waits
    #: (the local interpreter); False when the execution continues elsewhere (Step Functions).
    synchronous: bool

    def deploy(self, ref: str, asl: dict[str, Any]) -> None:
        """Make graph version ``ref`` runnable (a no-op locally; create/publish a state machine on AWS)."""
        ...

    def start(self, run: RunRecord, asl: dict[str, Any]) -> ExecutionResult | None:
        """Start (or, for a run whose process died, replay) the run's execution from its start cursor."""
        ...

    def send_token(self, run: RunRecord, token: str, output: dict[str, Any]) -> ExecutionResult | None:
        """Complete a human node's task token with ``output`` so the execution continues."""
        ...

    def execution_status(self, run: RunRecord) -> str | None:
        """Where the run's execution is, if something other than this process runs it: ``RUNNING``,
        ``SUCCEEDED``, ``FAILED``, ``TIMED_OUT``, ``ABORTED`` (Step Functions); None when unknown or local."""
        ...

    def stop(self, run: RunRecord, *, cause: str = "cancelled") -> None:
        """Stop the run's execution if it is still going (for cancel); a finished one is left as it is."""
        ...
