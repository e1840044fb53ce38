"""Triggers of agents registered through the API on AWS: their EventBridge rules and Scheduler schedules.

The stack creates the rules and schedules of the graphs it deploys (``stepwise:triggers``); an agent
registered later (``POST /agents``, ``POST /agents/{id}/versions``) gets them here. The api Lambda's event
sink (functions/api/handler.py) hands ``agent.registered`` / ``agent.version_added`` to ``TriggerDeployer``,
which reads the version's graph and creates or updates exactly what ``aws_trigger_specs`` describes:
``put_rule``/``put_targets`` (idempotent) and ``create_schedule``, or ``update_schedule`` when it exists.
Names carry a hash of tenant, agent and trigger, so tenants never overwrite each other's rules.

What is deployed follows the ``live`` alias (the alias every trigger target names): on
``agent.registered``, ``agent.version_added`` and ``agent.alias_moved`` (``live``) the deployer reads the
version ``live`` points at, upserts its triggers, and deletes the rules (RemoveTargets + DeleteRule) and
schedules (DeleteSchedule) of this agent that the version no longer declares. A resource is this
agent's only if its name has the agent's prefix AND its target is the trigger function with a payload
naming this tenant and agent, so another agent or tenant (same prefix, or a look-alike name) is never
touched. Syncing twice changes nothing. Deploy failures are logged, never fail the registration (the
trigger Lambda also drops events of triggers the live version does not declare).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepwise.store import ApiStore

from stepwise.graph.triggers import RuleSpec, ScheduleSpec, aws_trigger_specs, resource_prefix

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


def _not_found(exc: Exception) -> bool:
    return bool(getattr(exc, "response", {}).get("Error", {}).get("Code") == "ResourceNotFoundException")


def _owner(payload: str, template: bool) -> tuple[str, str] | None:
    """(tenant, agent) named by a target's input (a rule's InputTransformer template or a schedule's Input)."""
    text = payload.replace("<aws.events.event.json>", "null") if template else payload
    try:
        target = json.loads(text)["stepwise_trigger"]
        return str(target["tenant"]), str(target["agent"])
    except (ValueError, KeyError, TypeError):
        return None


def prune(keep: set[str], targets: TriggerTargets, *, tenant: str, agent: str, events: Any, scheduler: Any) -> list[str]:
    """Delete ``agent``'s rules and schedules (for ``tenant``) whose names are not in ``keep``; answer their names."""
    head, removed = resource_prefix(targets.prefix, agent), []
    rules: list[dict[str, Any]] = []
    page: dict[str, Any] = {"NamePrefix": head, "EventBusName": targets.bus_name}
    while True:
        out = events.list_rules(**page)
        rules += out.get("Rules", [])
        if not out.get("NextToken"):
            break
        page["NextToken"] = out["NextToken"]
    for rule in rules:
        name = str(rule["Name"])
        if name in keep:
            continue
        try:
            found = events.list_targets_by_rule(Rule=name, EventBusName=targets.bus_name).get("Targets", [])
            mine = [
                t
                for t in found
                if t.get("Arn") == targets.function_arn
                and _owner(str(t.get("InputTransformer", {}).get("InputTemplate", "")), template=True) == (tenant, agent)
            ]
            if not mine or len(mine) != len(found):
                continue  # not this agent's rule (or someone else also targets it): leave it
            events.remove_targets(Rule=name, EventBusName=targets.bus_name, Ids=[str(t["Id"]) for t in found])
            events.delete_rule(Name=name, EventBusName=targets.bus_name)
        except Exception as exc:
            if not _not_found(exc):
                raise
            continue  # deleted meanwhile: the goal is reached
        removed.append(name)
    schedules: list[dict[str, Any]] = []
    spage: dict[str, Any] = {"NamePrefix": head}
    while True:
        out = scheduler.list_schedules(**spage)
        schedules += out.get("Schedules", [])
        if not out.get("NextToken"):
            break
        spage["NextToken"] = out["NextToken"]
    for schedule in schedules:
        name = str(schedule["Name"])
        if name in keep or schedule.get("GroupName", "default") != "default":
            continue
        try:
            target = scheduler.get_schedule(Name=name).get("Target", {})
            if target.get("Arn") != targets.function_arn or _owner(str(target.get("Input", "")), template=False) != (tenant, agent):
                continue
            scheduler.delete_schedule(Name=name)
        except Exception as exc:
            if not _not_found(exc):
                raise
            continue
        removed.append(name)
    return removed


def live_ref(store: ApiStore) -> Callable[[str, str], str | None]:
    """``(tenant, agent) -> ref`` of the version the ``live`` alias points at (None: no agent or no alias)."""

    def ref(tenant: str, agent: str) -> str | None:
        record = store.get_agent(tenant, agent)
        number = record.aliases.get("live") if record is not None else None
        version = record.version(number) if record is not None and number is not None else None
        return version.ref if version is not None else None

    return ref


class TriggerDeployer:
    """An API event sink: keeps each agent's rules and schedules equal to the triggers of its ``live`` version."""

    KINDS = ("agent.registered", "agent.version_added", "agent.alias_moved")

    def __init__(
        self,
        targets: TriggerTargets,
        graph_of: Callable[[str], Any],
        live: Callable[[str, str], str | None],
        *,
        events: Any = None,
        scheduler: Any = None,
    ) -> None:
        self.targets, self.graph_of, self.live = targets, graph_of, live
        self._events, self._scheduler = events, scheduler

    def _clients(self) -> tuple[Any, Any]:
        if self._events is None or self._scheduler is None:
            from stepwise.awsclients import client

            self._events, self._scheduler = client("events"), client("scheduler")
        return self._events, self._scheduler

    def sync(self, tenant: str, agent: str) -> list[str]:
        """Upsert the live version's triggers and delete the ones it dropped; answer the deleted names."""
        ref = self.live(tenant, agent)
        triggers = self.graph_of(ref).triggers if ref is not None else []
        specs = aws_trigger_specs(triggers, tenant=tenant, agent=agent, prefix=self.targets.prefix)
        events, scheduler = self._clients()
        upsert(specs, self.targets, events=events, scheduler=scheduler)
        return prune({s.name for s in specs}, self.targets, tenant=tenant, agent=agent, events=events, scheduler=scheduler)

    def publish(self, kind: str, tenant: str, detail: dict[str, Any]) -> None:
        if kind not in self.KINDS or (kind == "agent.alias_moved" and detail.get("alias") != "live"):
            return
        agent = str(detail["agent"])
        try:
            removed = self.sync(tenant, agent)
        except Exception as exc:  # noqa: BLE001 - the version is registered; say why its triggers are not live
            log.error("triggers of %s (tenant %s) not deployed: %s", agent, tenant, type(exc).__name__)
            return
        if removed:
            log.info("removed %d trigger resource(s) of %s (tenant %s) its live version no longer declares", len(removed), agent, tenant)


class Both:
    """Two event sinks as one (the metrics and the trigger deployer)."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def publish(self, kind: str, tenant: str, detail: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.publish(kind, tenant, detail)
