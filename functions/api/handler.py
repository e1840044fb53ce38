"""The `api` Lambda: API Gateway (REST, proxy) → the Stepwise API app. Thin on purpose.

Everything lives in ``stepwise.api`` (the same object ``stepwise serve`` runs locally); this module adds
Powertools' logger (correlation id = API Gateway request id), tracer (X-Ray) and metrics, and builds
the engine client from the ``STEPWISE_*`` environment the CDK stack sets.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from stepwise.api.app import create_app
from stepwise.api.aws_triggers import Both, TriggerDeployer, TriggerTargets, live_ref
from stepwise.api.webhooks_aws import CancelledWebhooks
from stepwise.config import Settings, build_client

logger = Logger(service="stepwise-api")
tracer = Tracer(service="stepwise-api")
metrics = Metrics(namespace="Stepwise", service="stepwise-api")


class MetricEvents:
    """The API's lifecycle events as CloudWatch metrics (``run.started`` → ``run_started``: 1)."""

    def publish(self, kind: str, tenant: str, detail: dict[str, Any]) -> None:
        metrics.add_metric(name=kind.replace(".", "_"), unit=MetricUnit.Count, value=1)


def _events() -> Any:
    """Metrics, plus what the stack's environment turns on: deploying registered agents' triggers, and
    queuing the webhook of a run the API cancels (the events stream never sees a cancel)."""
    env = os.environ
    sinks: list[Any] = [MetricEvents()]
    if env.get("STEPWISE_TRIGGER_FUNCTION_ARN"):
        targets = TriggerTargets(
            function_arn=env["STEPWISE_TRIGGER_FUNCTION_ARN"],
            scheduler_role_arn=env["STEPWISE_SCHEDULER_ROLE_ARN"],
            bus_name=env["STEPWISE_EVENT_BUS"],
            prefix=env.get("STEPWISE_NAME_PREFIX", "stepwise"),
        )
        sinks.append(TriggerDeployer(targets, lambda ref: app.client.graph(ref), lambda tenant, agent: live_ref(app.store)(tenant, agent)))
    if env.get("STEPWISE_WEBHOOK_QUEUE_URL"):
        sinks.append(CancelledWebhooks(_LazyStore(), env["STEPWISE_WEBHOOK_QUEUE_URL"]))
    return Both(*sinks)


class _LazyStore:
    """The app's API store, looked up when a cancel is published (the app is built after its event sink)."""

    def read_index(self, pk: str, prefix: str = "") -> Any:
        return app.store.read_index(pk, prefix)


app = create_app(lambda: build_client(Settings.from_env()), events=_events())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)  # responses can hold user state: keep them out of traces
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_metric(name="api_requests", unit=MetricUnit.Count, value=1)
    return app(event, context)
