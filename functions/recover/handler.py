"""The ``recover`` Lambda: recovery of stale Step Functions runs, invoked by EventBridge. Thin on purpose.

Two rules invoke it. Step Functions' own event for an execution of an agent state machine that ended
FAILED, TIMED_OUT or ABORTED recovers that one run within seconds (``Stepwise.recover``, which does nothing to
a run that recorded its end or is executing again), for one ``DescribeExecution``. Step Functions sends those
events best effort (and EventBridge may deliver one twice), so a scheduled pass is the backstop for an event
that never arrived.

A run whose execution ended (failed while recording its failure, timed out, stopped by hand) while its record
still says running or waiting is stuck: nothing else will ever end it. Each pass lists such runs
(``Stepwise.stale_runs``: every run in flight, read from the runs table's sparse index of active runs) and
recovers each (``Stepwise.recover``: a compare-and-set to failed naming the execution, then a redrive from its
start or its failed node). The compare-and-set makes overlapping invocations safe: a run another recoverer
took meanwhile is counted as ``skipped``. One run that cannot be recovered is logged and counted as
``failed``; the others are still tried.

The same pass sweeps double texting ``enqueue`` queues: a thread whose queued runs were not started when its
run ended (the step's drain failed, e.g. throttled) gets its oldest queued run started
(``Stepwise.queued_threads`` from the store, ``Stepwise.drain_queue``: the rivals check and the claim are one
conditional write, so a sweep beside a step's drain or an API request starts it once).

Metrics (EMF, namespace ``Stepwise``): ``stale_runs``, ``recovered_runs``, ``skipped_runs``, ``failed_recoveries``,
``queued_threads``, ``drained_runs``, ``failed_drains``; for an event, ``ended_executions`` and the first four but
``stale_runs``.
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field

from stepwise.client import Stepwise
from stepwise.config import Settings, build_client
from stepwise.errors import ConflictingRequestError
from stepwise.executors.stepfunctions import run_of_execution

logger = Logger(service="stepwise-recover")
metrics = Metrics(namespace="Stepwise", service="stepwise-recover")
_client: Stepwise | None = None


class Pass(BaseModel):
    """The invocation: EventBridge's scheduled event (its fields ignored) or a manual ``{"limit": n}`` /
    ``{"backfill": true}``."""

    model_config = ConfigDict(extra="ignore")
    limit: int = Field(1000, ge=1, le=100_000, description="at most this many stale runs recovered in one pass, the oldest first")
    backfill: bool = Field(False, description="first index the runs in flight from before the sparse index existed (once, after upgrading)")


class ExecutionDetail(BaseModel):
    """The part of Step Functions' status-change event the function reads."""

    model_config = ConfigDict(extra="ignore")
    executionArn: str = Field(min_length=1)
    name: str = Field(min_length=1)
    status: str


class ExecutionEnded(BaseModel):
    """Step Functions' "Execution Status Change" event, as EventBridge delivers it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    source: Literal["aws.states"]
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    detail: ExecutionDetail


#: Statuses of an execution that ended without finishing; the rule sends only these.
ENDED = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})


def client() -> Stepwise:
    """The AWS-backed client, built once per container from the ``STEPWISE_*`` environment."""
    global _client
    if _client is None:
        _client = build_client(Settings.from_env())
    return _client


def sweep_queues(stepwise: Stepwise) -> dict[str, int]:
    """Start the oldest queued run of every thread with nothing in flight; one thread failing is logged."""
    counts = {"queued_threads": 0, "drained": 0, "drain_failed": 0}
    for thread_id in stepwise.queued_threads():
        counts["queued_threads"] += 1
        try:
            started = stepwise.drain_queue(thread_id)
        except Exception:
            counts["drain_failed"] += 1
            logger.exception("queued run not started", extra={"thread_id": thread_id})
            continue
        counts["drained"] += len(started)
        for run_id in started:
            logger.info("queued run started", extra={"run_id": run_id, "thread_id": thread_id})
    return counts


def publish(**counts: int) -> None:
    """Counts as EMF metrics, flushed when the invocation returns (``log_metrics``)."""
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def recover_one(stepwise: Stepwise, run_id: str, counts: dict[str, int]) -> None:
    """Recover one run, counted as recovered, skipped (another recoverer won the compare-and-set, it recorded its
    end, or it is executing again) or failed (logged; the caller goes on)."""
    try:
        result = stepwise.recover(run_id)
    except ConflictingRequestError as exc:  # RunBusyError is one: executing again
        counts["skipped"] += 1
        logger.info("stale run skipped", extra={"run_id": run_id, "reason": str(exc)})
    except Exception:
        counts["failed"] += 1
        logger.exception("stale run not recovered", extra={"run_id": run_id})
    else:
        counts["recovered"] += 1
        logger.info("stale run recovered", extra={"run_id": run_id, "thread_id": result.thread_id, "status": result.status})


def execution_ended(stepwise: Stepwise, event: ExecutionEnded) -> dict[str, int]:
    """One execution ended without finishing: recover its run if the run's record still says it is in flight.
    An execution of a run this store does not hold (another deployment's, a run deleted since) is ignored."""
    counts = {"ended": 1, "recovered": 0, "skipped": 0, "failed": 0, "unknown": 0}
    detail = event.detail
    run_id = run_of_execution(detail.name)
    if detail.status not in ENDED:
        counts["ended"] = 0
    elif stepwise.get_run(run_id) is None:
        counts["unknown"] = 1
        logger.info("execution of no known run", extra={"execution_arn": detail.executionArn})
    else:
        recover_one(stepwise, run_id, counts)
    publish(
        ended_executions=counts["ended"],
        recovered_runs=counts["recovered"],
        skipped_runs=counts["skipped"],
        failed_recoveries=counts["failed"],
    )
    logger.info("execution ended", extra={"execution_arn": detail.executionArn, "status": detail.status, **counts})
    return counts


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    if (event or {}).get("source") == "aws.states":
        ended = ExecutionEnded.model_validate(event)
        return execution_ended(client(), ended)
    request = Pass.model_validate(event or {})
    stepwise = client()
    backfilled = stepwise.backfill_in_flight_index() if request.backfill else None
    if backfilled is not None:
        logger.info("in-flight index backfilled", extra={"runs": backfilled})
    stale = stepwise.stale_runs(limit=request.limit)
    counts = {"stale": len(stale), "recovered": 0, "skipped": 0, "failed": 0}
    for run in stale:
        recover_one(stepwise, run.run_id, counts)
    publish(
        stale_runs=counts["stale"],
        recovered_runs=counts["recovered"],
        skipped_runs=counts["skipped"],
        failed_recoveries=counts["failed"],
    )
    drained = sweep_queues(stepwise)
    counts |= drained
    publish(queued_threads=drained["queued_threads"], drained_runs=drained["drained"], failed_drains=drained["drain_failed"])
    if backfilled is not None:
        counts["backfilled"] = backfilled
    logger.info("recovery pass", extra=counts)
    return counts
