"""Triggers on the AWS path, on moto: an event put on the EventBridge bus runs the agent in Step Functions.

The rule and its target are created from ``aws_trigger_specs`` with ``put_aws_triggers`` (what the stack
does for the graphs it deploys); moto matches the pattern and applies the target's InputTransformer. moto
5.2.1 cannot deliver to a Lambda target, so ``route_event_targets`` hands the transformed payload to the
real ``functions/trigger/handler.py`` in-process — the same stand-in as the Step Functions harness's Lambda
invokes. moto's Scheduler stores schedules but never fires them: the schedule test substitutes Scheduler's
context attributes into the stored target Input and invokes the handler with it, as Scheduler would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.test_cloud_in_a_box import ROOT, Cloud, load_module
from tests.integration.test_cloud_in_a_box import cloud as cloud
from tests.support.aws import TEST_ACCOUNT, TEST_REGION
from tests.support.moto_sfn import LambdaContext, route_event_targets

from stepwise import awsclients
from stepwise.graph.loader import load_text
from stepwise.graph.triggers import aws_trigger_specs, put_aws_triggers

BUS = "test-bus"
TRIGGER_ARN = f"arn:aws:lambda:{TEST_REGION}:{TEST_ACCOUNT}:function:test-trigger"
CONTEXT = LambdaContext(function_name="test-trigger", invoked_function_arn=TRIGGER_ARN)
GRAPH = """
name: digest
module: stepwise.examples.nodes
state: {log: append}
nodes: [fetch, clean, summarize]
triggers:
  - name: on-article
    event: {source: [cms], detail-type: [article.published], detail: {words: [{numeric: [">", 100]}]}}
    into: article
  - name: nightly
    schedule: cron(0 2 * * ? *)
    input: {text: "Nightly digest of everything"}
"""


@pytest.fixture
def triggered(cloud: Cloud) -> Iterator[tuple[Cloud, list[dict[str, Any]], Any]]:
    status, _ = cloud.call("POST", "/agents", {"yaml": GRAPH})
    assert status == 201
    trigger_lambda = load_module(ROOT / "functions" / "trigger" / "handler.py")
    answers: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        answers.append(trigger_lambda.handler(event, context))
        return answers[-1]

    cloud.router.route("test-trigger", handler)
    events = awsclients.client("events")
    events.create_event_bus(Name=BUS)
    specs = aws_trigger_specs(load_text(GRAPH).triggers, tenant="acme", agent="digest", prefix="test")
    put_aws_triggers(
        specs,
        events=events,
        scheduler=awsclients.client("scheduler"),
        target_arn=TRIGGER_ARN,
        bus_name=BUS,
        scheduler_role_arn=f"arn:aws:iam::{TEST_ACCOUNT}:role/test-scheduler",
    )
    yield cloud, answers, handler


def put(detail: dict[str, Any]) -> None:
    out = awsclients.client("events").put_events(
        Entries=[{"Source": "cms", "DetailType": "article.published", "Detail": json.dumps(detail), "EventBusName": BUS}]
    )
    assert out["FailedEntryCount"] == 0


def test_an_event_on_the_bus_starts_a_run_in_step_functions_once_per_event_id(triggered: Any) -> None:
    cloud, answers, handler = triggered
    with route_event_targets(cloud.router) as delivered:
        put({"words": 12})  # the pattern wants words > 100: no delivery
        assert delivered == [] and answers == []
        put({"words": 500, "text": "A LONG article about durable agents"})
    (payload,) = delivered
    (answer,) = answers
    assert answer["started"] is True and answer["duplicate"] is False
    run = cloud.wait_run(answer["run_id"], "succeeded", "failed")
    assert run.status == "succeeded", run.error
    assert run.execution_arn  # it ran in (moto's) Step Functions
    article = run.input["article"]
    assert article["id"] == payload["event"]["id"] and article["detail"]["words"] == 500 and article["source"] == "cms"
    assert cloud.client.state(run.thread_id)[1]["log"] == ["fetch", "clean", "summarize"]

    # EventBridge delivers at least once: the same event again starts nothing new
    again = handler(payload, CONTEXT)
    assert again == {**answer, "started": False, "duplicate": True}
    assert [r.run_id for r in cloud.client.runs(thread_id=run.thread_id)] == [run.run_id]


def test_a_scheduler_delivery_starts_the_scheduled_run(triggered: Any) -> None:
    cloud, _, handler = triggered
    scheduler = awsclients.client("scheduler")
    (schedule,) = [s for s in scheduler.list_schedules()["Schedules"] if "nightly" in s["Name"]]
    stored = scheduler.get_schedule(Name=schedule["Name"])
    assert stored["ScheduleExpression"] == "cron(0 2 * * ? *)" and stored["Target"]["Arn"] == TRIGGER_ARN
    payload = (
        stored["Target"]["Input"]
        .replace("<aws.scheduler.execution-id>", "exec-0001")
        .replace("<aws.scheduler.scheduled-time>", "2026-12-02T02:00:00Z")
        .replace("<aws.scheduler.schedule-arn>", stored["Arn"])
    )
    answer = handler(json.loads(payload), CONTEXT)
    run = cloud.wait_run(answer["run_id"], "succeeded", "failed")
    assert run.status == "succeeded", run.error
    assert run.input["event"]["id"] == "exec-0001" and run.input["text"] == "Nightly digest of everything"
    assert cloud.client.state(run.thread_id)[1]["summary"] == "nightly digest of everything"
    assert handler(json.loads(payload), CONTEXT)["duplicate"] is True
