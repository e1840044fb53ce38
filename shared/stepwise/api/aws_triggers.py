"""Triggers of agents registered through the API on AWS: their EventBridge rules and Scheduler schedules.

The stack creates the rules and schedules of the graphs it deploys (``stepwise:triggers``); an agent
registered later (``POST /agents``, ``POST /agents/{id}/versions``) gets them here. The api Lambda's event
sink (functions/api/handler.py) hands ``agent.registered`` / ``agent.version_added`` to ``TriggerDeployer``,
which reads the version's graph and creates or updates exactly what ``aws_trigger_specs`` describes:
``put_rule``/``put_targets`` (idempotent) and ``create_schedule``, or ``update_schedule`` when it exists.
Names carry a hash of tenant, agent and trigger, so tenants never overwrite each other's rules.

A version without some trigger leaves that trigger's rule in place; the trigger Lambda drops its events
because the live version no longer declares it. Deploy failures are logged, never fail the registration.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stepwise.graph.triggers import RuleSpec, ScheduleSpec, aws_trigger_specs

log = logging.getLogger("stepwise.api.aws_triggers")


@dataclass(frozen=True)
class TriggerTargets:
    """Where deployed triggers point: the stack's outputs, passed to the api function as its environment."""

    function_arn: str
    scheduler_role_arn: str
    bus_name: str
    prefix: str


def upsert(specs: list[RuleSpec | ScheduleSpec], targets: TriggerTargets, *, events: Any, scheduler: Any) -> None:
    """Create or update each rule (with its target) and schedule."""
    for spec in specs:
        state = "ENABLED" if spec.enabled else "DISABLED"
        if isinstance(spec, RuleSpec):
            events.put_rule(Name=spec.name, EventBusName=targets.bus_name, EventPattern=json.dumps(spec.event_pattern), State=state)
            events.put_targets(
                Rule=spec.name,
                EventBusName=targets.bus_name,
                Targets=[
                    {"Id": "stepwise-trigger", "Arn": targets.function_arn, "InputTransformer": {"InputTemplate": spec.input_template}}
                ],
            )
            continue
        schedule = {
            "Name": spec.name,
            "ScheduleExpression": spec.schedule_expression,
            "ScheduleExpressionTimezone": spec.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": state,
            "Target": {
                "Arn": targets.function_arn,
                "RoleArn": targets.scheduler_role_arn,
                "Input": spec.input,
                "RetryPolicy": {"MaximumRetryAttempts": 3},
            },
        }
        try:
            scheduler.create_schedule(**schedule)
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") != "ConflictException":
                raise
            scheduler.update_schedule(**schedule)


class TriggerDeployer:
    """An API event sink: deploys the triggers of each registered version (``agent.registered``/``version_added``)."""

    def __init__(self, targets: TriggerTargets, graph_of: Callable[[str], Any], *, events: Any = None, scheduler: Any = None) -> None:
        self.targets, self.graph_of = targets, graph_of
        self._events, self._scheduler = events, scheduler

    def _clients(self) -> tuple[Any, Any]:
        if self._events is None or self._scheduler is None:
            from stepwise.awsclients import client

            self._events, self._scheduler = client("events"), client("scheduler")
        return self._events, self._scheduler

    def publish(self, kind: str, tenant: str, detail: dict[str, Any]) -> None:
        if kind not in ("agent.registered", "agent.version_added"):
            return
        spec = self.graph_of(str(detail["ref"]))
        if not spec.triggers:
            return
        specs = aws_trigger_specs(spec.triggers, tenant=tenant, agent=str(detail["agent"]), prefix=self.targets.prefix)
        events, scheduler = self._clients()
        try:
            upsert(specs, self.targets, events=events, scheduler=scheduler)
        except Exception as exc:  # noqa: BLE001 - the version is registered; say why its triggers are not live
            log.error("triggers of %s (tenant %s) not deployed: %s", detail.get("agent"), tenant, type(exc).__name__)


class Both:
    """Two event sinks as one (the metrics and the trigger deployer)."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def publish(self, kind: str, tenant: str, detail: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.publish(kind, tenant, detail)
