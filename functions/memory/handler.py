"""The ``memory`` Lambda: background consolidation, invoked by an EventBridge schedule.

One pass over the threads agent nodes registered in ElastiCache (``stepwise.memory.consolidate``): each
thread's messages are re-read from its event log in DynamoDB, STM over budget is summarised into the
OpenSearch collection and evicted. Idempotent, so overlapping or repeated invocations store nothing twice.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from stepwise.config import Settings, build_client
from stepwise.memory.service import MemoryServices
from stepwise.memory.settings import MemorySettings
from stepwise.memory.worker import run_pass

logger = Logger(service="stepwise-memory")
_parts: tuple[Any, MemoryServices] | None = None


def parts() -> tuple[Any, MemoryServices]:
    global _parts
    if _parts is None:
        settings = Settings.from_env()  # the Lambda's cold start: settings read once, here
        _parts = (build_client(settings).services.events, MemoryServices(home=settings.home, settings=MemorySettings.from_env()))
    return _parts


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    events, memory = parts()
    reports = run_pass(memory, events, limit=int((event or {}).get("limit", 100)))
    logger.info("consolidated", extra={"threads": len(reports), "evicted": sum(r.evicted for r in reports)})
    return {"threads": len(reports), "evicted": sum(r.evicted for r in reports), "stored": sum(len(r.stored) for r in reports)}
