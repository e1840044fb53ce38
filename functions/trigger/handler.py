"""The `trigger` Lambda: an EventBridge rule or Scheduler schedule → a run of the agent it names. Thin on purpose.

The target payload (built by ``stepwise.graph.triggers.aws_trigger_specs``) carries the tenant, agent and
trigger next to the event; ``stepwise.api.triggers.fire`` starts the run with the event as input, once per
event id (a redelivery answers the run already started). A stale rule (agent or trigger gone) is logged
and dropped rather than retried: retrying cannot fix it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from stepwise.api.app import create_app
from stepwise.api.triggers import TriggerError, fire
from stepwise.config import Settings, build_client

logger = Logger(service="stepwise-trigger")
app = create_app(lambda: build_client(Settings.from_env()))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        fired = fire(app, event)
    except TriggerError as exc:
        logger.warning("trigger dropped: %s", exc)
        return {"started": False, "reason": str(exc)}
    logger.info("trigger fired", extra={"run_id": fired.run_id, "thread_id": fired.thread_id, "duplicate": fired.duplicate})
    return {"started": not fired.duplicate, "run_id": fired.run_id, "thread_id": fired.thread_id, "duplicate": fired.duplicate}
