"""The ``recover`` Lambda: recovery of stale Step Functions runs, invoked by an EventBridge schedule. Thin on purpose.

A run whose execution ended (failed while recording its failure, timed out, stopped by hand) while its record
still says running or waiting is stuck: nothing else will ever end it. Each invocation lists such runs
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
``queued_threads``, ``drained_runs``, ``failed_drains``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field

from stepwise.client import Stepwise
from stepwise.config import Settings, build_client
from stepwise.errors import ConflictingRequestError

logger = Logger(service="stepwise-recover")
metrics = Metrics(namespace="Stepwise", service="stepwise-recover")
_client: Stepwise | None = None


class Pass(BaseModel):
    """The invocation: EventBridge's scheduled event (its fields ignored) or a manual ``{"limit": n}`` /
    ``{"backfill": true}``."""

    model_config = ConfigDict(extra="ignore")
    limit: int = Field(1000, ge=1, le=100_000, description="at most this many stale runs recovered in one pass, the oldest first")
    backfill: bool = Field(False, description="first index the runs in flight from before the sparse index existed (once, after upgrading)")


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


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    request = Pass.model_validate(event or {})
    stepwise = client()
    backfilled = stepwise.backfill_in_flight_index() if request.backfill else None
    if backfilled is not None:
        logger.info("in-flight index backfilled", extra={"runs": backfilled})
    stale = stepwise.stale_runs(limit=request.limit)
    counts = {"stale": len(stale), "recovered": 0, "skipped": 0, "failed": 0}
    for run in stale:
        try:
            result = stepwise.recover(run.run_id)
        except ConflictingRequestError as exc:  # another recoverer won the compare-and-set, or it is executing again
            counts["skipped"] += 1
            logger.info("stale run skipped", extra={"run_id": run.run_id, "reason": str(exc)})
        except Exception:
            counts["failed"] += 1
            logger.exception("stale run not recovered", extra={"run_id": run.run_id, "thread_id": run.thread_id})
        else:
            counts["recovered"] += 1
            logger.info("stale run recovered", extra={"run_id": run.run_id, "thread_id": run.thread_id, "status": result.status})
    for name, value in (
        ("stale_runs", counts["stale"]),
        ("recovered_runs", counts["recovered"]),
        ("skipped_runs", counts["skipped"]),
        ("failed_recoveries", counts["failed"]),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    drained = sweep_queues(stepwise)
    counts |= drained
    for name, value in (
        ("queued_threads", drained["queued_threads"]),
        ("drained_runs", drained["drained"]),
        ("failed_drains", drained["drain_failed"]),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if backfilled is not None:
        counts["backfilled"] = backfilled
    logger.info("recovery pass", extra=counts)
    return counts
