"""Triggers: the `triggers:` model and its errors, schedules, pattern matching (against moto's EventBridge
matcher as the reference), the AWS rule/schedule specs, and runs started by the local bus and the
in-process scheduler — once per event id, across API instances and a restart (SQLite store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from stepwise.api.app import create_app
from stepwise.api.facade import StepwiseApi
from stepwise.api.keys import create_key
from stepwise.api.settings import ApiSettings
from stepwise.api.triggers import TriggerError, TriggerScheduler, fire
from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.graph.triggers import RuleSpec, Schedule, ScheduleSpec, Trigger, aws_trigger_specs, matches
from stepwise.store.sqlite import SqliteApiStore

GRAPH_YAML = """
name: ticketing
state: {log: append}
triggers:
  - name: urgent
    event: {source: [helpdesk], detail-type: [ticket.created], detail: {priority: [urgent, {prefix: "p0"}]}}
    into: ticket
    input: {mode: triage}
  - name: every5
    schedule: rate(5 minutes)
graph:
  nodes:
    record: {fn: "tests.unit.test_triggers:record"}
  entry: record
"""


def record(state: dict[str, Any]) -> dict[str, Any]:
    return {"log": [state.get("ticket", state.get("event"))]}


# -- the model --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ({"event": {"source": "helpdesk"}}, "pattern values are lists"),
        ({"event": {}}, "at least one field"),
        ({"event": {"detail": {"x": [{"regex": "a"}]}}}, "unknown matcher 'regex'"),
        ({"schedule": "every day"}, "is not a schedule"),
        ({"schedule": "rate(1 minutes)"}, "rate(1 minute)"),
        ({"schedule": "cron(0 12 * * * *)"}, "exactly one of day-of-month and day-of-week is '?'"),
        ({"schedule": "cron(0 12 * *)"}, "AWS cron has 6 fields"),
        ({"schedule": "cron(0 25 * * ? *)"}, "Bad hour"),
        ({"schedule": "rate(1 day)", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"event": {"source": ["a"]}, "schedule": "rate(1 day)"}, "exactly one of `event:`"),
        ({}, "exactly one of `event:`"),
    ],
)
def test_invalid_triggers_are_refused_with_a_clear_message(trigger: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Trigger.model_validate(trigger)
    assert message in str(info.value)


def test_trigger_names_are_unique_in_a_graph_and_a_graph_without_triggers_keeps_its_ref() -> None:
    with pytest.raises(Exception, match="two triggers are named 'x'"):
        load_text(GRAPH_YAML.replace("name: every5", "name: x").replace("name: urgent", "name: x"))
    plain = load_text(GRAPH_YAML.split("triggers:")[0] + "graph:" + GRAPH_YAML.split("graph:")[1])
    assert "triggers" not in plain.canonical()
    assert load_text(GRAPH_YAML).ref != plain.ref  # triggers are part of the version


def test_schedules_fire_when_aws_would() -> None:
    at = datetime(2026, 12, 5, 13, 0, tzinfo=UTC)  # a Saturday
    assert Schedule.parse("cron(0 12 ? * MON-FRI *)").next_after(at) == datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert Schedule.parse("cron(0 12 ? * 2-6 *)").next_after(at) == datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # 1 = Sunday
    assert Schedule.parse("cron(30 9 ? * 2#1 *)").next_after(at) == datetime(2026, 12, 7, 9, 30, tzinfo=UTC)  # first Monday
    assert Schedule.parse("cron(0 0 L * ? *)").next_after(at) == datetime(2026, 12, 31, 0, 0, tzinfo=UTC)
    assert Schedule.parse("cron(0/15 * * * ? 2030)").next_after(at) == datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    assert Schedule.parse("cron(0/15 * * * ? 2020)").next_after(at) is None
    paris = Schedule.parse("cron(0 8 * * ? *)").next_after(at, zone="Europe/Paris")
    assert paris is not None and paris.astimezone(UTC) == datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    rate = Schedule.parse("rate(5 minutes)")
    assert rate.next_after(at + timedelta(minutes=1), anchor=at) == at + timedelta(minutes=5)
    assert rate.next_after(at + timedelta(minutes=5), anchor=at) == at + timedelta(minutes=10)


EVENT = {
    "version": "0",
    "id": "e1",
    "detail-type": "ticket.created",
    "source": "helpdesk",
    "account": "123456789012",
    "time": "2026-12-01T00:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:x"],
    "detail": {"priority": "urgent", "tags": ["a", "vip"], "size": 7, "ip": "10.0.0.9", "owner": "Ann"},
}
PATTERNS = [
    {"source": ["helpdesk"]},
    {"source": ["billing"]},
    {"detail": {"priority": ["urgent", "high"]}},
    {"detail": {"priority": [{"prefix": "urg"}]}},
    {"detail": {"priority": [{"suffix": "ent"}]}},
    {"detail": {"priority": [{"anything-but": ["urgent"]}]}},
    {"detail": {"priority": [{"anything-but": "low"}]}},
    {"detail": {"tags": ["vip"]}},
    {"detail": {"tags": ["gold"]}},
    {"detail": {"size": [{"numeric": [">", 5, "<=", 7]}]}},
    {"detail": {"size": [{"numeric": ["<", 5]}]}},
    {"detail": {"size": ["7"]}},
    {"detail": {"missing": [{"exists": False}]}},
    {"detail": {"owner": [{"exists": True}]}},
    {"detail": {"owner": [{"equals-ignore-case": "ANN"}]}},
    {"detail": {"owner": [{"wildcard": "A*n"}]}},
    {"detail": {"ip": [{"cidr": "10.0.0.0/24"}]}},
    {"detail": {"ip": [{"cidr": "10.1.0.0/24"}]}},
    {"detail-type": ["ticket.created"], "detail": {"priority": ["urgent"], "size": [7]}},
    {"detail": {"nested": {"x": ["y"]}}},
]


def test_pattern_matching_agrees_with_moto_eventbridge() -> None:
    from moto.events.models import EventPattern

    verdicts = []
    for pattern in PATTERNS:
        Trigger(event=pattern)  # every pattern here is valid
        reference = EventPattern.load(json.dumps(pattern)).matches_event(EVENT)
        verdicts.append(matches(pattern, EVENT))
        assert verdicts[-1] == reference, pattern
    assert True in verdicts and False in verdicts


def test_aws_specs_name_rules_and_schedules_and_carry_the_target() -> None:
    spec = load_text(GRAPH_YAML)
    rule, schedule = aws_trigger_specs(spec.triggers, tenant="acme", agent="ticketing", prefix="sw-prod")
    assert isinstance(rule, RuleSpec) and isinstance(schedule, ScheduleSpec)
    assert rule.event_pattern == spec.triggers[0].event and rule.name.startswith("sw-prod-ticketing-urgent-") and len(rule.name) <= 64
    template = rule.input_template.replace("<aws.events.event.json>", json.dumps(EVENT))
    assert json.loads(template) == {
        "stepwise_trigger": {"tenant": "acme", "agent": "ticketing", "trigger": "urgent", "alias": "live"},
        "event": EVENT,
    }
    assert schedule.schedule_expression == "rate(5 minutes)" and schedule.timezone == "UTC"
    payload = json.loads(schedule.input)
    assert payload["stepwise_trigger"]["trigger"] == "every5" and payload["event"]["id"] == "<aws.scheduler.execution-id>"
    other = aws_trigger_specs(spec.triggers, tenant="globex", agent="ticketing", prefix="sw-prod")
    assert other[0].name != rule.name  # two tenants' rules never collide


# -- runs started by triggers -----------------------------------------------------------------------
def make_api(home: Path) -> tuple[StepwiseApi, Any]:
    store = SqliteApiStore(home / "api.db")
    settings = ApiSettings(backend="embedded", home=home, api_allowed_modules=("statemachines.", "tests.unit.test_triggers"))
    client = Stepwise.embedded(home)
    api = create_app(lambda: client, store=store, settings=settings)
    return api, store


def call(api: StepwiseApi, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    out = api(
        {
            "path": path,
            "httpMethod": method,
            "headers": {"x-api-key": key, "content-type": "application/json"},
            "requestContext": {},
            "body": json.dumps(body) if body is not None else None,
        }
    )
    return int(out["statusCode"]), json.loads(out["body"])


def finished(api: StepwiseApi, run_id: str) -> Any:
    from tests.support.moto_sfn import wait_for

    return wait_for(lambda: (r := api.client.get_run(run_id)) and r.status != "running" and r, f"run {run_id} to finish")


def test_a_matching_event_on_the_local_bus_starts_one_run_per_event_id(tmp_path: Path) -> None:
    api, store = make_api(tmp_path)
    _, key = create_key(store, "acme")
    _, other_key = create_key(store, "globex")
    assert call(api, key, "POST", "/agents", {"yaml": GRAPH_YAML})[0] == 201
    entry = {"source": "helpdesk", "detail_type": "ticket.created", "detail": {"priority": "p0-outage"}, "id": "evt-1"}

    status, body = call(api, key, "POST", "/events", {"entries": [entry, {**entry, "id": "evt-2", "detail": {"priority": "low"}}]})
    assert status == 200, body
    first, unmatched = body["results"]
    assert unmatched == {"event_id": "evt-2", "runs": []}
    (started,) = first["runs"]
    assert started["agent"] == "ticketing" and started["trigger"] == "urgent" and started["duplicate"] is False
    run = finished(api, started["run_id"])
    assert run.status == "succeeded" and run.tenant == "acme"
    assert run.input["mode"] == "triage" and run.input["ticket"]["id"] == "evt-1"
    assert run.input["ticket"]["detail"] == {"priority": "p0-outage"}
    assert api.client.state(run.thread_id)[1]["log"][0]["source"] == "helpdesk"

    again = call(api, key, "POST", "/events", {"entries": [entry]})[1]["results"][0]["runs"][0]
    assert again == {**started, "duplicate": True}  # a redelivery answers the run already started

    # another tenant's events never start acme's agents; bad bodies are 422
    assert call(api, other_key, "POST", "/events", {"entries": [entry]})[1]["results"][0]["runs"] == []
    assert call(api, key, "POST", "/events", {"entries": []})[0] == 422
    assert call(api, key, "POST", "/events", {"entries": [{"source": "x"}]})[0] == 422

    # the same claim holds for a fresh API over the same store (another process, or after a restart)
    fresh, _ = make_api(tmp_path)
    again = call(fresh, key, "POST", "/events", {"entries": [entry]})[1]["results"][0]["runs"][0]
    assert again["run_id"] == started["run_id"] and again["duplicate"] is True


def test_fire_refuses_a_stale_target_with_a_clear_error(tmp_path: Path) -> None:
    api, store = make_api(tmp_path)
    _, key = create_key(store, "acme")
    call(api, key, "POST", "/agents", {"yaml": GRAPH_YAML})
    target = {"tenant": "acme", "agent": "ticketing", "trigger": "gone"}
    with pytest.raises(TriggerError, match="has no trigger 'gone'"):
        fire(api, {"stepwise_trigger": target, "event": {"id": "x"}})
    with pytest.raises(TriggerError, match="has no agent 'nope'"):
        fire(api, {"stepwise_trigger": {**target, "agent": "nope"}, "event": {"id": "x"}})
    with pytest.raises(ValidationError, match="the event has no `id`"):
        fire(api, {"stepwise_trigger": {**target, "trigger": "urgent"}, "event": {}})


def test_the_in_process_scheduler_fires_each_tick_once_across_two_schedulers(tmp_path: Path) -> None:
    api, store = make_api(tmp_path)
    _, key = create_key(store, "acme")
    call(api, key, "POST", "/agents", {"yaml": GRAPH_YAML})
    clock = [datetime(2026, 12, 1, 10, 1, tzinfo=UTC)]
    first = TriggerScheduler(api, now=lambda: clock[0])
    second_api, _ = make_api(tmp_path)  # a second serve process over the same home
    second = TriggerScheduler(second_api, now=lambda: clock[0])

    assert first.tick() == [] and second.tick() == []  # nothing due yet
    clock[0] = datetime(2026, 12, 1, 10, 11, tzinfo=UTC)  # 10:05 and 10:10 fell due
    fired = first.tick()
    assert [f.duplicate for f in fired] == [False, False]
    assert [f.duplicate for f in second.tick()] == [True, True]
    runs = [finished(api, f.run_id) for f in fired]
    assert [r.input["event"]["id"] for r in runs] == ["every5@2026-12-01T10:05:00Z", "every5@2026-12-01T10:10:00Z"]
    assert all(r.status == "succeeded" for r in runs)


def test_locally_the_live_version_decides_which_triggers_fire(tmp_path: Path) -> None:
    """serve keeps no per-trigger entry to clean up: the scheduler and the local bus read the live version."""
    api, store = make_api(tmp_path)
    _, key = create_key(store, "acme")
    call(api, key, "POST", "/agents", {"yaml": GRAPH_YAML})
    scheduler = TriggerScheduler(api)
    window = (datetime(2026, 12, 1, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, 10, 11, tzinfo=UTC))
    assert [t.trigger for t, _ in scheduler.due(*window)] == ["every5", "every5"]
    without_schedule = GRAPH_YAML.replace("  - name: every5\n    schedule: rate(5 minutes)\n", "")
    assert call(api, key, "POST", "/agents/ticketing/versions", {"yaml": without_schedule})[0] == 201
    assert scheduler.due(*window) == []
    event = {"source": "helpdesk", "detail_type": "ticket.created", "detail": {"priority": "urgent"}}
    status, body = call(api, key, "POST", "/events", {"entries": [{**event, "id": "evt-v2"}]})
    assert status == 200 and [r["trigger"] for r in body["results"][0]["runs"]] == ["urgent"]  # the kept trigger fires
    assert finished(api, body["results"][0]["runs"][0]["run_id"]).status == "succeeded"
    assert call(api, key, "PUT", "/agents/ticketing/aliases/live", {"version": 1})[0] == 200
    assert len(scheduler.due(*window)) == 2  # moving live back brings the schedule back
