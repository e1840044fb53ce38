"""The ``webhooks`` Lambda: delivers webhook jobs from the webhooks queue. Thin on purpose.

Each SQS record is one signed POST (``stepwise.api.webhooks_aws.deliver_messages``: SSRF checks, the
signature, retries by message visibility with exponential backoff, a secret-free record on the
dead-letter queue after the last try or on a final answer). Outside the VPC and with no data permissions:
it can reach the internet and its two queues, nothing of the stack's.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from stepwise.api.webhooks_aws import deliver_messages
from stepwise.awsclients import client

logger = Logger(service="stepwise-webhooks")
_sqs: Any = None


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _sqs
    if _sqs is None:
        _sqs = client("sqs")
    env = os.environ
    answer = deliver_messages(
        [r for r in event.get("Records", []) if r.get("eventSource") == "aws:sqs"],
        sqs=_sqs,
        queue_url=env["STEPWISE_WEBHOOK_QUEUE_URL"],
        dead_letter_url=env["STEPWISE_WEBHOOK_DEAD_LETTER_URL"],
        attempts=int(env.get("STEPWISE_WEBHOOK_ATTEMPTS", "5")),
        base=float(env.get("STEPWISE_WEBHOOK_BACKOFF_SECONDS", "30")),
        allow_private=env.get("STEPWISE_WEBHOOK_ALLOW_PRIVATE", "").lower() in ("1", "true", "yes"),
    )
    logger.info("webhooks", extra=answer["counts"])  # never the URLs' secrets or bodies
    return {"batchItemFailures": answer["batchItemFailures"]}
