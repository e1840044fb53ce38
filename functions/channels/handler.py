"""The ``channels`` Lambda: pushes run events out of AWS as they are written.

Fed by the events table's DynamoDB stream (INSERT records only, filtered by the event source mapping):

- each new log event is posted to the WebSocket connections subscribed to its run
  (``stepwise.api.websocket.fan_out``; the ``postToConnection`` endpoint is stored with each subscription,
  taken from API Gateway's request context);
- an event that ends a run or makes it wait, for a run with a webhook, becomes a job on the webhooks queue
  (``stepwise.api.webhooks_aws.dispatch``); the ``webhooks`` Lambda delivers it.

Outside the VPC: it talks to DynamoDB, API Gateway and SQS only. A batch that fails is retried by the
event source mapping (bisected), so a post that raises for another reason than a gone connection (410,
which just drops the subscription) is not lost silently.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from stepwise.api.settings import ApiSettings, build_store
from stepwise.api.webhooks_aws import dispatch, run_webhook, send_jobs
from stepwise.api.websocket import DynamoConnections, ManagementApi, fan_out
from stepwise.awsclients import client
from stepwise.store import ApiStore

logger = Logger(service="stepwise-channels")
_parts: tuple[DynamoConnections, ManagementApi, ApiStore, Any] | None = None


def parts() -> tuple[DynamoConnections, ManagementApi, ApiStore, Any]:
    global _parts
    if _parts is None:
        table = os.environ["STEPWISE_API_TABLE"]
        store = build_store(ApiSettings(backend="aws", api_table=table))
        _parts = (DynamoConnections(table), ManagementApi(), store, client("sqs"))
    return _parts


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    connections, post, store, sqs = parts()
    records = [r for r in event.get("Records", []) if r.get("eventSource") == "aws:dynamodb"]
    counts = fan_out(records, connections, post)
    jobs = dispatch(records, lambda run_id: run_webhook(store, run_id))
    queued = send_jobs(jobs, os.environ["STEPWISE_WEBHOOK_QUEUE_URL"], sqs) if jobs else 0
    logger.info("fan-out", extra={**counts, "webhooks": queued})
    return {"websocket": counts, "webhooks": queued}
