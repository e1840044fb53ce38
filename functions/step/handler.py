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

from stepwise.config import Settings, build_client
from stepwise.executors.stepfunctions import task_error
from stepwise.runtime.services import Services
from stepwise.runtime.step import RouteJump, step

logger = Logger(service="stepwise-step")
#: ``route_jumps`` counts the invocations that ended in a route jump (graph.routing: jump): each is a Lambda
#: error by the Lambda service's count, so real errors = ``Errors`` − ``route_jumps`` (docs/deploy.md).
metrics = Metrics(namespace="Stepwise", service="stepwise-step")
_services: Services | None = None


def services() -> Services:
    global _services
    if _services is None:
        _services = build_client(Settings.from_env()).services
    return _services


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    cursor = event.get("cursor") or {}
    logger.append_keys(node=event.get("node"), run_id=cursor.get("run_id"), thread_id=cursor.get("thread_id"))
    try:
        return step(services(), event)
    except RouteJump as exc:  # a conditional route to a Catch target: control flow, not a failure to log
        metrics.add_metric(name="route_jumps", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()  # one EMF line, only on a jump (the other invocations publish nothing)
        raise task_error(exc) from None
    except Exception as exc:
        logger.exception("step failed")
        raise task_error(exc) from exc
