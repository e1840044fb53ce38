"""Agents registered through the API on AWS get their triggers' rules and schedules: the api Lambda handler
(functions/api/handler.py) with the stack's trigger targets in its environment, on moto's EventBridge and
Scheduler. The rule → trigger Lambda → run path itself is tests/integration/test_triggers_aws.py."""

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

from stepwise.api.keys import create_key
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
