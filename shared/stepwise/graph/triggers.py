"""``triggers:`` in a graph's YAML: an EventBridge event pattern or a schedule that starts a run.

One model for both places a trigger runs:

- **AWS**: ``aws_trigger_specs`` turns an agent's triggers into EventBridge rule and EventBridge Scheduler
  specs (pattern or expression, names, and the target payload); the CDK stack or ``put_aws_triggers``
  creates them with the trigger Lambda (``functions/trigger``) as target.
- **locally**: ``stepwise serve`` keeps an in-process scheduler (``Schedule.next_after``) and a local
  event bus (``POST /events``) that matches patterns with ``matches`` — the same semantics as EventBridge
  for the operators documented here.

Either way the run starts through ``stepwise.api.triggers.fire`` with the event as input, idempotent per
event id (EventBridge delivers at least once; Scheduler's execution id and a local tick are ids too).

```yaml
triggers:
  - name: new-ticket
    event: {source: [helpdesk], detail-type: [ticket.created], detail: {priority: [high, urgent]}}
    into: ticket            # the run's input is {"ticket": <the event>} (default channel: event)
  - name: nightly
    schedule: cron(0 2 * * ? *)   # AWS cron: minutes hours day-of-month month day-of-week year
    input: {mode: digest}
  - schedule: rate(15 minutes)
```
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TRIGGER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"
#: EventBridge's limit on a rule's pattern, in characters of its JSON.
MAX_PATTERN_CHARS = 4096
#: The matcher objects EventBridge accepts inside a pattern's value list (and ``matches`` implements).
MATCHERS = frozenset({"prefix", "suffix", "anything-but", "numeric", "exists", "equals-ignore-case", "wildcard", "cidr"})
_RATE = re.compile(r"^rate\((\d{1,6}) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class Trigger(BaseModel):
    """One trigger: exactly one of ``event`` (an EventBridge pattern) or ``schedule`` (rate/cron)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, pattern=TRIGGER_NAME)
    event: dict[str, Any] | None = None
    schedule: str | None = None
    timezone: str = "UTC"  # for cron schedules
    input: dict[str, Any] = Field(default_factory=dict)  # fixed input merged into every run's input
    into: str = Field(default="event", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # the channel the event lands in
    enabled: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        if (self.event is None) == (self.schedule is None):
            raise ValueError(
                "a trigger has exactly one of `event:` (an EventBridge pattern, e.g. {source: [my.app]}) "
                "or `schedule:` (rate(5 minutes) or cron(0 12 * * ? *))"
            )
        return self

    @field_validator("event")
    @classmethod
    def _pattern(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("an event pattern needs at least one field, e.g. {source: [my.app]}")
        if len(json.dumps(value)) > MAX_PATTERN_CHARS:
            raise ValueError(f"an event pattern is at most {MAX_PATTERN_CHARS} characters of JSON")
        _check_pattern(value, "event")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            Schedule.parse(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}; use an IANA name such as UTC or Europe/Paris") from None
        return value

    @property
    def kind(self) -> Literal["event", "schedule"]:
        return "event" if self.event is not None else "schedule"

    def run_input(self, event: dict[str, Any]) -> dict[str, Any]:
        """The run's input: the fixed ``input`` plus the event under ``into``."""
        return {**self.input, self.into: event}


def named(triggers: list[Trigger]) -> list[tuple[str, Trigger]]:
    """Each trigger with its name (``trigger-<n>`` when unnamed); names must be unique in a graph."""
    out: list[tuple[str, Trigger]] = []
    seen: set[str] = set()
    for index, trigger in enumerate(triggers, start=1):
        name = trigger.name or f"trigger-{index}"
        if name in seen:
            raise ValueError(f"two triggers are named {name!r}; give each a unique `name:`")
        seen.add(name)
        out.append((name, trigger))
    return out


def _check_pattern(node: dict[str, Any], where: str) -> None:
    for key, value in node.items():
        here = f"{where}.{key}"
        if isinstance(value, dict):
            if not value:
                raise ValueError(f"{here}: an empty object matches nothing; remove it or add fields")
            _check_pattern(value, here)
        elif isinstance(value, list):
            if not value:
                raise ValueError(f"{here}: an empty list matches nothing; list the values to match")
            for item in value:
                _check_matcher(item, here)
        else:
            raise ValueError(f"{here}: pattern values are lists, e.g. {key}: [{json.dumps(value)}]")


def _check_matcher(item: Any, where: str) -> None:
    if item is None or isinstance(item, str | int | float | bool):
        return
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError(f"{where}: a list item is a value or one matcher object such as {{prefix: 'abc'}}")
    ((op, arg),) = item.items()
    if op not in MATCHERS:
        raise ValueError(f"{where}: unknown matcher {op!r}; EventBridge matchers are {', '.join(sorted(MATCHERS))}")
    if op == "exists" and not isinstance(arg, bool):
        raise ValueError(f"{where}: exists takes true or false")
    if op == "numeric" and (not isinstance(arg, list) or len(arg) not in (2, 4)):
        raise ValueError(f"{where}: numeric takes [op, number] or [op, number, op, number], e.g. ['>', 0, '<=', 5]")


# -- schedules --------------------------------------------------------------------------------------
class Schedule:
    """A parsed ``rate(...)`` or ``cron(...)`` expression (AWS syntax) that says when it next fires."""

    def __init__(self, expression: str, every: timedelta | None, cron: str | None, years: str) -> None:
        self.expression = expression
        self.every = every
        self.cron = cron
        self.years = years

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        text = expression.strip()
        rate = _RATE.match(text)
        if rate:
            count, unit = int(rate.group(1)), rate.group(2)
            if count < 1:
                raise ValueError(f"{expression!r}: a rate is at least 1")
            if (count == 1) != (not unit.endswith("s")):
                raise ValueError(f"{expression!r}: write rate(1 minute) but rate(5 minutes) (AWS's singular/plural rule)")
            return cls(text, timedelta(seconds=count * _UNIT_SECONDS[unit.rstrip("s")]), None, "*")
        cron = _CRON.match(text)
        if cron:
            return cls(text, None, *_to_cronsim(cron.group(1), expression))
        raise ValueError(
            f"{expression!r} is not a schedule; use rate(N minutes|hours|days) or cron(minutes hours day-of-month month day-of-week year)"
        )

    def next_after(self, after: datetime, *, zone: str = "UTC", anchor: datetime | None = None) -> datetime | None:
        """The first fire time strictly after ``after`` (timezone-aware); a rate counts from ``anchor``."""
        if self.every is not None:
            start = anchor or after
            if start > after:
                return start
            periods = int((after - start) / self.every) + 1
            return start + periods * self.every
        from cronsim import CronSim

        assert self.cron is not None
        tz = ZoneInfo(zone)
        start = after.astimezone(tz).replace(second=0, microsecond=0)
        while start.year <= after.year + 200:
            for when in CronSim(self.cron, start):
                if not _year_ok(self.years, when.year):  # jump to the next year rather than walk through this one
                    start = datetime(when.year + 1, 1, 1, tzinfo=tz) - timedelta(minutes=1)
                    break
                if when > after:
                    return when
        return None


def _to_cronsim(body: str, expression: str) -> tuple[str, str]:
    """AWS cron (6 fields, ``?``, day-of-week 1-7 with 1 = Sunday) → a 5-field expression and the year field."""
    from cronsim import CronSim, CronSimError

    fields = body.split()
    if len(fields) != 6:
        raise ValueError(f"{expression!r}: AWS cron has 6 fields (minutes hours day-of-month month day-of-week year), got {len(fields)}")
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ValueError(f"{expression!r}: exactly one of day-of-month and day-of-week is '?', e.g. cron(0 12 * * ? *)")
    if "W" in dom:
        raise ValueError(f"{expression!r}: the W (nearest weekday) form is not supported here; list the days instead")
    if not re.fullmatch(r"\*|\d{4}(-\d{4})?(,\d{4}(-\d{4})?)*", year):
        raise ValueError(f"{expression!r}: the year field is *, a year, a range or a list (1970-2199)")
    dow = "*" if dow == "?" else re.sub(r"(?<![#\d])\d", lambda m: str(int(m.group()) - 1), dow)
    text = " ".join((minute, hour, "*" if dom == "?" else dom, month, dow))
    try:
        CronSim(text, datetime(2026, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"{expression!r}: {exc}") from None
    return text, year


def _year_ok(years: str, year: int) -> bool:
    if years == "*":
        return True
    for part in years.split(","):
        low, _, high = part.partition("-")
        if int(low) <= year <= int(high or low):
            return True
    return False


# -- EventBridge pattern matching -------------------------------------------------------------------
def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Does ``event`` match the EventBridge ``pattern``? (the operators in ``MATCHERS``, arrays as any-of)."""
    for key, rule in pattern.items():
        present = isinstance(event, dict) and key in event
        value = event.get(key) if isinstance(event, dict) else None
        if isinstance(rule, dict):
            if not present or not isinstance(value, dict) or not matches(rule, value):
                return False
            continue
        values = value if isinstance(value, list) else [value]
        if not any(_item_matches(item, v, present) for item in rule for v in (values or [None])):
            return False
    return True


def _item_matches(item: Any, value: Any, present: bool) -> bool:
    if not isinstance(item, dict):
        return present and value == item and type(value) is type(item)
    ((op, arg),) = item.items()
    if op == "exists":
        return present is bool(arg)
    if not present:
        return bool(op == "anything-but")
    if op == "prefix":
        return isinstance(value, str) and isinstance(arg, str) and value.startswith(arg)
    if op == "suffix":
        return isinstance(value, str) and isinstance(arg, str) and value.endswith(arg)
    if op == "equals-ignore-case":
        return isinstance(value, str) and isinstance(arg, str) and value.lower() == arg.lower()
    if op == "wildcard":
        return isinstance(value, str) and re.fullmatch(".*".join(map(re.escape, str(arg).split("*"))), value) is not None
    if op == "anything-but":
        if isinstance(arg, dict):
            return not _item_matches(arg, value, present)
        return value not in (arg if isinstance(arg, list) else [arg])
    if op == "numeric":
        return isinstance(value, int | float) and not isinstance(value, bool) and _numeric(arg, float(value))
    if op == "cidr":
        import ipaddress

        try:
            return ipaddress.ip_address(str(value)) in ipaddress.ip_network(str(arg), strict=False)
        except ValueError:
            return False
    return False


def _numeric(terms: list[Any], value: float) -> bool:
    checks = {"<": value.__lt__, "<=": value.__le__, "=": value.__eq__, ">": value.__gt__, ">=": value.__ge__}
    for op, bound in zip(terms[::2], terms[1::2], strict=True):
        check = checks.get(str(op))
        if check is None or not check(float(bound)):
            return False
    return True


# -- the AWS side: rule and schedule specs --------------------------------------------------------
class TriggerTarget(BaseModel):
    """Who a trigger starts: carried in every target payload so one Lambda serves every trigger."""

    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    agent: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
    trigger: str = Field(pattern=TRIGGER_NAME)
    alias: str = "live"


class TriggerInvocation(BaseModel):
    """What the trigger Lambda receives: the target and the EventBridge (or Scheduler) event."""

    model_config = ConfigDict(extra="forbid")
    stepwise_trigger: TriggerTarget
    event: dict[str, Any]

    @field_validator("event")
    @classmethod
    def _has_id(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("id"), str) or not value["id"]:
            raise ValueError("the event has no `id`; EventBridge and Scheduler always send one (it makes a run idempotent)")
        return value


class RuleSpec(BaseModel):
    """An EventBridge rule on the Stepwise bus whose target is the trigger Lambda."""

    kind: Literal["rule"] = "rule"
    trigger: str
    name: str
    event_pattern: dict[str, Any]
    input_template: str  # InputTransformer.InputTemplate: the TriggerInvocation with the whole event
    enabled: bool


class ScheduleSpec(BaseModel):
    """An EventBridge Scheduler schedule whose target is the trigger Lambda."""

    kind: Literal["schedule"] = "schedule"
    trigger: str
    name: str
    schedule_expression: str
    timezone: str
    input: str  # the target's Input: the TriggerInvocation, the event made of Scheduler's context attributes
    enabled: bool


def resource_name(prefix: str, tenant: str, agent: str, trigger: str) -> str:
    """A rule/schedule name (≤ 64 chars, EventBridge's limit) unique per tenant, agent and trigger."""
    digest = hashlib.sha256(f"{tenant}\0{agent}\0{trigger}".encode()).hexdigest()[:10]
    head = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{prefix}-{agent}-{trigger}")[: 64 - 11]
    return f"{head}-{digest}"


def resource_prefix(prefix: str, agent: str) -> str:
    """The name prefix every rule/schedule of ``agent`` starts with (other agents may share it: check the target)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{prefix}-{agent}-")[: 64 - 11]


def aws_trigger_specs(
    triggers: list[Trigger], *, tenant: str, agent: str, prefix: str = "stepwise", alias: str = "live"
) -> list[RuleSpec | ScheduleSpec]:
    """The rules and schedules that make ``triggers`` start runs of ``agent`` for ``tenant`` on AWS."""
    out: list[RuleSpec | ScheduleSpec] = []
    for name, trigger in named(triggers):
        target = TriggerTarget(tenant=tenant, agent=agent, trigger=name, alias=alias).model_dump()
        resource = resource_name(prefix, tenant, agent, name)
        if trigger.event is not None:
            template = '{"stepwise_trigger": ' + json.dumps(target) + ', "event": <aws.events.event.json>}'
            out.append(RuleSpec(trigger=name, name=resource, event_pattern=trigger.event, input_template=template, enabled=trigger.enabled))
        else:
            assert trigger.schedule is not None
            event = {
                "id": "<aws.scheduler.execution-id>",
                "time": "<aws.scheduler.scheduled-time>",
                "source": "aws.scheduler",
                "detail-type": "Scheduled Event",
                "resources": ["<aws.scheduler.schedule-arn>"],
                "detail": {"schedule": trigger.schedule},
            }
            payload = json.dumps({"stepwise_trigger": target, "event": event})
            out.append(
                ScheduleSpec(
                    trigger=name,
                    name=resource,
                    schedule_expression=trigger.schedule,
                    timezone=trigger.timezone,
                    input=payload,
                    enabled=trigger.enabled,
                )
            )
    return out


def put_aws_triggers(
    specs: list[RuleSpec | ScheduleSpec],
    *,
    events: Any,
    scheduler: Any | None,
    target_arn: str,
    bus_name: str,
    scheduler_role_arn: str | None = None,
) -> None:
    """Create or update the rules and schedules with boto3 (agents registered after deploy; tests on moto)."""
    for spec in specs:
        state = "ENABLED" if spec.enabled else "DISABLED"
        if isinstance(spec, RuleSpec):
            events.put_rule(Name=spec.name, EventBusName=bus_name, EventPattern=json.dumps(spec.event_pattern), State=state)
            events.put_targets(
                Rule=spec.name,
                EventBusName=bus_name,
                Targets=[{"Id": "stepwise-trigger", "Arn": target_arn, "InputTransformer": {"InputTemplate": spec.input_template}}],
            )
        else:
            if scheduler is None or scheduler_role_arn is None:
                raise ValueError("a schedule trigger needs the scheduler client and the role Scheduler assumes to invoke the target")
            scheduler.create_schedule(
                Name=spec.name,
                ScheduleExpression=spec.schedule_expression,
                ScheduleExpressionTimezone=spec.timezone,
                FlexibleTimeWindow={"Mode": "OFF"},
                State=state,
                Target={"Arn": target_arn, "RoleArn": scheduler_role_arn, "Input": spec.input},
            )
