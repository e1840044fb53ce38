"""The ``step`` Lambda: the very stateless step the local engine calls, behind a Lambda handler.

Step Functions invokes it for every Task with ``{node, cursor, ...}`` and gets the next cursor back.
Services (DynamoDB/S3 adapters, warm hydration cache) are built once per container from the
``STEPWISE_*`` environment. Errors are re-raised under their ASL name (``Stepwise.NodeError``…) so the
compiled Retry/Catch rules match them.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from stepwise.client import Stepwise
from stepwise.config import Settings, build_client
from stepwise.executors.stepfunctions import task_error
from stepwise.runtime.services import Services
from stepwise.runtime.step import RouteJump, step

logger = Logger(service="stepwise-step")
#: ``route_jumps`` counts the invocations that ended in a route jump (graph.routing: jump): each is a Lambda
#: error by the Lambda service's count, so real errors = ``Errors`` − ``route_jumps`` (docs/deploy.md).
metrics = Metrics(namespace="Stepwise", service="stepwise-step")
_client: Stepwise | None = None


def client() -> Stepwise:
    global _client
    if _client is None:
        _client = build_client(Settings.from_env())
    return _client


def services() -> Services:
    return client().services


def drain(thread_id: str) -> None:
    """Double texting ``enqueue``: the run ended, so its thread's oldest queued run starts (compare-and-set
    ``queued`` → ``running``, then StartExecution). A failure here is logged; it must not fail the run's end."""
    try:
        started = client().drain_queue(thread_id)
    except Exception:
        logger.exception("starting the thread's queued run failed; the next request on the thread retries")
        return
    if started:
        logger.info("started queued run", extra={"queued_run_id": started[0]})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    cursor = event.get("cursor") or {}
    logger.append_keys(node=event.get("node"), run_id=cursor.get("run_id"), thread_id=cursor.get("thread_id"))
    try:
        out = step(services(), event)
    except RouteJump as exc:  # a conditional route to a Catch target: control flow, not a failure to log
        metrics.add_metric(name="route_jumps", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()  # one EMF line, only on a jump (the other invocations publish nothing)
        raise task_error(exc) from None
    except Exception as exc:
        logger.exception("step failed")
        raise task_error(exc) from exc
    if event.get("mode") in ("finish", "fail") and cursor.get("thread_id"):  # the run ended
        drain(str(cursor["thread_id"]))
    return out
