"""One exception hierarchy: every error Stepwise raises on purpose is a ``StepwiseError``.

``TaskError`` subclasses are raised inside a step (a Lambda on AWS, an in-process call locally) and
reach the state machine by name: Step Functions matches Retry and Catch on ``error_name``, and the
local interpreter reports the same name. This module imports nothing from the rest of the package,
so every layer may import it.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AnswerError",
    "ConflictingRequestError",
    "MaxIterationsError",
    "NodeError",
    "NodeTimeoutError",
    "RateLimitedError",
    "RunBusyError",
    "SettingError",
    "StaleAnswerError",
    "StateConflictError",
    "StepwiseError",
    "TaskError",
    "ThreadBusyError",
    "WaitTimedOutError",
    "asl_error_name",
]


class StepwiseError(Exception):
    """A user-facing error: the message says what went wrong and what to do."""

    fix: str | None = None  # what to do about it, when known: shown apart from the message (CLI, run errors)


class SettingError(StepwiseError, ValueError):
    """An environment variable holds a value its setting cannot take; the message names each such variable, the
    value given (``'***'`` for secrets) and what is accepted, in one line (``stepwise.settings.validated``)."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)  # one sentence per bad variable
        super().__init__("; ".join(problems))


class AnswerError(StepwiseError):
    """A resume's answer does not fit the waiting human node: missing, unexpected keys, values outside its schema."""

    def __init__(self, run_id: str, node: str, problems: list[str], expected: str) -> None:
        self.run_id = run_id
        self.node = node
        self.problems = problems
        self.expected = expected  # a valid answer, as JSON text
        super().__init__(f"the answer for {node!r} was refused: {'; '.join(problems)}. A valid answer: {expected}")


class ConflictingRequestError(StepwiseError):
    """Another request changed the run or thread first (the API answers 409 with ``code``; the CLI exits 3)."""

    code: ClassVar[str] = "conflict"


class ThreadBusyError(ConflictingRequestError):
    """The thread has a run in progress; a second run on it would interleave their writes."""

    code = "thread_busy"


class StaleAnswerError(ConflictingRequestError):
    """The answer names an interrupt the run no longer waits on."""

    code = "stale_interrupt"


class WaitTimedOutError(ConflictingRequestError):
    """The answer came after the human node's ``config.timeout_seconds``: the run failed with ``States.Timeout``
    (as on Step Functions) and the answer was not applied."""

    code = "wait_timed_out"


class RunBusyError(ConflictingRequestError):
    """The run is running in a live process (its lease is fresh)."""

    code = "run_running"


class TaskError(StepwiseError):
    """An error that fails a Task state under a stable ASL name (``error_name``) that Retry/Catch match on."""

    error_name: ClassVar[str] = "Stepwise.TaskError"


class NodeError(TaskError):
    """A node raised or returned something invalid."""

    error_name = "Stepwise.NodeError"


class RateLimitedError(NodeError):
    """A node failed on an LLM 429 after the provider router's retries: the run is parked and retried later."""

    error_name = "Stepwise.RateLimited"


class NodeTimeoutError(TaskError):
    """A node ran past its ``config.timeout_seconds``: the engine has stopped waiting for its Task
    (``States.Timeout``, Step Functions' name), so the step drops the update it finished with late."""

    error_name = "States.Timeout"


class MaxIterationsError(TaskError):
    """A cycle ran more times than the graph's ``max_iterations`` allows."""

    error_name = "Stepwise.MaxIterationsExceeded"


class StateConflictError(TaskError):
    """Another writer appended first, so what this writer read is stale: re-read and retry, never overwrite.

    Raised by the event store when the expected sequence number is no longer the head, and by the step
    when a conflict means the node must re-run; Step Functions retries it (5× exponential).
    """

    error_name = "Stepwise.StateConflict"

    def __init__(self, thread_id: str, expected: int | None = None, *, detail: str | None = None) -> None:
        super().__init__(detail or f"thread {thread_id!r} moved past seq {expected}; re-read and retry")
        self.thread_id = thread_id
        self.expected = expected


def asl_error_name(exc: BaseException) -> str:
    """The ASL error name an exception fails a Task with: ``error_name`` for task errors, else the class name
    (what Lambda reports as ``errorType``)."""
    return exc.error_name if isinstance(exc, TaskError) else type(exc).__name__
