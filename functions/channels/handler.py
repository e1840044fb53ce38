"""The ``channels`` Lambda: pushes run events out of AWS as they are written.

Fed by the events table's DynamoDB stream (INSERT records only, filtered by the event source mapping):
each new log event is posted to the WebSocket connections subscribed to its run
(``stepwise.api.websocket.fan_out``; the ``postToConnection`` endpoint is stored with each subscription,
taken from API Gateway's request context). Outside the VPC: it talks to DynamoDB and API Gateway only.

A batch that fails is retried by the event source mapping (bisected), so a post that raises for another
reason than a gone connection (410, which just drops the subscription) is not lost silently.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from stepwise.api.websocket import DynamoConnections, ManagementApi, fan_out

logger = Logger(service="stepwise-channels")
_parts: tuple[DynamoConnections, ManagementApi] | None = None


def parts() -> tuple[DynamoConnections, ManagementApi]:
    global _parts
    if _parts is None:
        _parts = (DynamoConnections(os.environ["STEPWISE_API_TABLE"]), ManagementApi())
    return _parts


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    connections, post = parts()
    records = [r for r in event.get("Records", []) if r.get("eventSource") == "aws:dynamodb"]
    counts = fan_out(records, connections, post)
    logger.info("fan-out", extra=counts)
    return {"websocket": counts}
