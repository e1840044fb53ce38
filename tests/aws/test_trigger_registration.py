"""Agents registered through the API on AWS get their triggers' rules and schedules: the api Lambda handler
(functions/api/handler.py) with the stack's trigger targets in its environment, on moto's EventBridge and
Scheduler. The rule → trigger Lambda → run path itself is tests/integration/test_triggers_aws.py; here a
matched rule's transformed payload is handed to ``stepwise.api.triggers.fire`` on the api Lambda's own app
(moto cannot deliver to a Lambda target; ``route_event_targets`` is the stand-in, as there)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tests.support.moto_sfn import LambdaRouter, route_event_targets

from stepwise.api.aws_triggers import TriggerDeployer, TriggerTargets, live_ref
from stepwise.api.keys import create_key
from stepwise.api.triggers import fire
from stepwise.graph.loader import load_text
from stepwise.graph.triggers import RuleSpec, ScheduleSpec, aws_trigger_specs

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "api" / "handler.py"
REGION = "us-east-1"
TRIGGER_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:stepwise-dev-trigger"
ROLE_ARN = "arn:aws:iam::123456789012:role/stepwise-dev-scheduler"
GRAPH = """
name: digest
module: stepwise.examples.nodes
state: {log: append}
nodes: [fetch, clean, summarize]
triggers:
  - name: on-article
    event: {source: [cms], detail-type: [article.published]}
    into: article
  - name: nightly
    schedule: cron(0 2 * * ? *)
"""


@pytest.fixture
def api_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    env = {
        "AWS_DEFAULT_REGION": REGION,
        "STEPWISE_BACKEND": "memory",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "STEPWISE_TRIGGER_FUNCTION_ARN": TRIGGER_ARN,
        "STEPWISE_SCHEDULER_ROLE_ARN": ROLE_ARN,
        "STEPWISE_EVENT_BUS": "stepwise-dev-bus",
        "STEPWISE_NAME_PREFIX": "stepwise-dev",
        "STEPWISE_API_ALLOWED_MODULES": "stepwise.examples.",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("events", region_name=REGION).create_event_bus(Name="stepwise-dev-bus")
        spec = importlib.util.spec_from_file_location("api_handler_triggers_under_test", HANDLER)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setitem(sys.modules, "api_handler_triggers_under_test", module)
        yield module


def call(module: ModuleType, method: str, path: str, body: Any, key: str) -> dict[str, Any]:
    event = {
        "resource": path, "path": path, "httpMethod": method,
        "headers": {"content-type": "application/json", "x-api-key": key},
        "multiValueHeaders": {}, "queryStringParameters": None,
        "requestContext": {"requestId": "r", "stage": "dev"}, "body": json.dumps(body), "isBase64Encoded": False,
    }  # fmt: skip
    context = SimpleNamespace(function_name="api", memory_limit_in_mb=512, invoked_function_arn=TRIGGER_ARN, aws_request_id="r")
    out: dict[str, Any] = module.handler(event, context)
    return out


def test_registering_an_agent_creates_its_rules_and_schedules_and_a_new_version_updates_them(api_lambda: ModuleType) -> None:
    key = create_key(api_lambda.app.store, "acme")[1]
    assert call(api_lambda, "POST", "/agents", {"yaml": GRAPH}, key)["statusCode"] == 201
    specs = aws_trigger_specs(load_text(GRAPH).triggers, tenant="acme", agent="digest", prefix="stepwise-dev")
    [rule] = [s for s in specs if isinstance(s, RuleSpec)]
    [schedule] = [s for s in specs if isinstance(s, ScheduleSpec)]
    events, scheduler = boto3.client("events", region_name=REGION), boto3.client("scheduler", region_name=REGION)
    found = events.describe_rule(Name=rule.name, EventBusName="stepwise-dev-bus")
    assert json.loads(found["EventPattern"]) == rule.event_pattern and found["State"] == "ENABLED"
    [target] = events.list_targets_by_rule(Rule=rule.name, EventBusName="stepwise-dev-bus")["Targets"]
    assert target["Arn"] == TRIGGER_ARN and target["InputTransformer"]["InputTemplate"] == rule.input_template
    got = scheduler.get_schedule(Name=schedule.name)
    assert got["ScheduleExpression"] == "cron(0 2 * * ? *)" and got["Target"]["RoleArn"] == ROLE_ARN
    assert json.loads(got["Target"]["Input"]) == json.loads(schedule.input)

    # a new version moves the schedule (update, not a conflict) and keeps one rule per trigger
    version2 = GRAPH.replace("cron(0 2 * * ? *)", "cron(30 3 * * ? *)")
    assert call(api_lambda, "POST", "/agents/digest/versions", {"yaml": version2}, key)["statusCode"] == 201
    assert scheduler.get_schedule(Name=schedule.name)["ScheduleExpression"] == "cron(30 3 * * ? *)"
    assert [r["Name"] for r in events.list_rules(EventBusName="stepwise-dev-bus")["Rules"]] == [rule.name]

    # another tenant's agent of the same name gets its own rule: nothing of acme's is overwritten
    other = create_key(api_lambda.app.store, "globex")[1]
    assert call(api_lambda, "POST", "/agents", {"yaml": GRAPH}, other)["statusCode"] == 201
    assert len(events.list_rules(EventBusName="stepwise-dev-bus")["Rules"]) == 2
    assert events.list_targets_by_rule(Rule=rule.name, EventBusName="stepwise-dev-bus")["Targets"][0]["InputTransformer"] == {
        "InputTemplate": rule.input_template
    }


def put_rule_exists(events: Any, name: str) -> bool:
    return any(r["Name"] == name for r in events.list_rules(EventBusName="stepwise-dev-bus")["Rules"])


def schedule_names(scheduler: Any) -> set[str]:
    return {s["Name"] for s in scheduler.list_schedules()["Schedules"]}


def test_a_trigger_dropped_by_the_live_version_loses_its_schedule_and_alias_moves_bring_it_back(api_lambda: ModuleType) -> None:
    acme, globex = create_key(api_lambda.app.store, "acme")[1], create_key(api_lambda.app.store, "globex")[1]
    lookalike = GRAPH.replace("name: digest", "name: digest-x").replace("on-article", "on-post").replace("[cms]", "[blog]")
    for key, graph in ((acme, GRAPH), (globex, GRAPH), (acme, lookalike)):
        assert call(api_lambda, "POST", "/agents", {"yaml": graph}, key)["statusCode"] == 201
    events, scheduler = boto3.client("events", region_name=REGION), boto3.client("scheduler", region_name=REGION)
    mine = {s.trigger: s.name for s in aws_trigger_specs(load_text(GRAPH).triggers, tenant="acme", agent="digest", prefix="stepwise-dev")}
    theirs = {
        s.trigger: s.name for s in aws_trigger_specs(load_text(GRAPH).triggers, tenant="globex", agent="digest", prefix="stepwise-dev")
    }
    other = {
        s.trigger: s.name for s in aws_trigger_specs(load_text(lookalike).triggers, tenant="acme", agent="digest-x", prefix="stepwise-dev")
    }
    assert other["nightly"].startswith("stepwise-dev-digest-")  # shares acme digest's name prefix: only its target tells them apart
    before = schedule_names(scheduler)
    assert {mine["nightly"], theirs["nightly"], other["nightly"]} <= before

    # version 2 drops the schedule and routes the event into `post`; it becomes live
    version2 = GRAPH.replace("    into: article\n", "    into: post\n").split("  - name: nightly")[0]
    assert "nightly" not in version2 and "into: post" in version2
    assert call(api_lambda, "POST", "/agents/digest/versions", {"yaml": version2}, acme)["statusCode"] == 201
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=mine["nightly"])
    assert schedule_names(scheduler) == before - {mine["nightly"]}  # globex's and digest-x's stay
    assert put_rule_exists(events, mine["on-article"]) and put_rule_exists(events, theirs["on-article"])
    assert put_rule_exists(events, other["on-post"])

    # the remaining rule fires version 2 (its `into`), for acme only through acme's rule
    router = LambdaRouter()
    fired: list[tuple[str, Any]] = []
    router.route(
        "stepwise-dev-trigger", lambda payload, _: fired.append((payload["stepwise_trigger"]["tenant"], fire(api_lambda.app, payload)))
    )
    with route_event_targets(router):
        entry = {
            "Source": "cms",
            "DetailType": "article.published",
            "Detail": json.dumps({"text": "hi"}),
            "EventBusName": "stepwise-dev-bus",
        }
        assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
    assert sorted(t for t, _ in fired) == ["acme", "globex"]
    (acme_fired,) = [f for t, f in fired if t == "acme"]
    (run,) = api_lambda.app.client.runs(thread_id=acme_fired.thread_id)
    assert run.tenant == "acme" and "post" in run.input and "article" not in run.input
    (globex_fired,) = [f for t, f in fired if t == "globex"]
    (globex_run,) = api_lambda.app.client.runs(thread_id=globex_fired.thread_id)
    assert "article" in globex_run.input  # globex still runs its version 1

    # a second sync is a no-op: nothing removed, nothing changed
    targets = TriggerTargets(function_arn=TRIGGER_ARN, scheduler_role_arn=ROLE_ARN, bus_name="stepwise-dev-bus", prefix="stepwise-dev")
    deployer = TriggerDeployer(targets, api_lambda.app.client.graph, live_ref(api_lambda.app.store), events=events, scheduler=scheduler)
    rules = events.list_rules(EventBusName="stepwise-dev-bus")["Rules"]
    assert deployer.sync("acme", "digest") == []
    assert events.list_rules(EventBusName="stepwise-dev-bus")["Rules"] == rules
    assert schedule_names(scheduler) == before - {mine["nightly"]}

    # a version added without promotion changes nothing; moving `live` back to 1 restores the schedule
    version3 = GRAPH.split("triggers:")[0]
    assert call(api_lambda, "POST", "/agents/digest/versions", {"yaml": version3, "promote": False}, acme)["statusCode"] == 201
    assert put_rule_exists(events, mine["on-article"])
    assert call(api_lambda, "PUT", "/agents/digest/aliases/live", {"version": 1}, acme)["statusCode"] == 200
    assert scheduler.get_schedule(Name=mine["nightly"])["ScheduleExpression"] == "cron(0 2 * * ? *)"
    # and moving it to the version without triggers removes both of acme digest's resources, nobody else's
    assert call(api_lambda, "PUT", "/agents/digest/aliases/live", {"version": 3}, acme)["statusCode"] == 200
    assert not put_rule_exists(events, mine["on-article"]) and put_rule_exists(events, theirs["on-article"])
    assert schedule_names(scheduler) == before - {mine["nightly"]}
    assert deployer.sync("acme", "digest") == []
