"""Triggers in the stack: a deployed graph's ``triggers:`` become an EventBridge rule on the Stepwise bus and a
Scheduler schedule, both targeting the trigger Lambda with exactly the payload ``aws_trigger_specs`` builds (the
one tests/integration/test_triggers_aws.py runs on moto); least-privilege invoke paths; nag- and cfn-lint-clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from tests.infra.conftest import Synth, synthesize

from stepwise.graph.loader import load_file
from stepwise.graph.triggers import RuleSpec, ScheduleSpec, aws_trigger_specs

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
    timezone: Europe/Paris
    input: {text: "Nightly digest"}
  - name: paused
    schedule: rate(15 minutes)
    enabled: false
"""


@pytest.fixture(scope="module")
def triggered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synth, Path]:
    root = tmp_path_factory.mktemp("triggers")
    graph = root / "digest.yaml"
    graph.write_text(GRAPH)
    out = root / "cdk"
    out.mkdir()
    context = {"stepwise:region": "eu-west-1", "stepwise:account": "123456789012", "stepwise:triggers": f"acme={graph}"}
    return synthesize(out, **context), graph


def _trigger_fn(synth: Synth) -> str:
    [fid] = [k for k, f in synth.resources("AWS::Lambda::Function").items() if f["Properties"]["FunctionName"] == "stepwise-dev-trigger"]
    return fid


def test_event_triggers_become_rules_on_the_bus_targeting_the_trigger_function(triggered: tuple[Synth, Path]) -> None:
    synth, graph = triggered
    assert synth.error is None, synth.error  # nag-clean
    specs = aws_trigger_specs(load_file(graph).triggers, tenant="acme", agent="digest", prefix="stepwise-dev")
    [rule_spec] = [s for s in specs if isinstance(s, RuleSpec)]
    [rule] = [r["Properties"] for r in synth.resources("AWS::Events::Rule").values() if r["Properties"].get("Name") == rule_spec.name]
    bus_id = next(iter(synth.resources("AWS::Events::EventBus")))
    assert rule["EventBusName"] == {"Ref": bus_id} and rule["State"] == "ENABLED"
    assert rule["EventPattern"] == rule_spec.event_pattern
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [_trigger_fn(synth), "Arn"]}
    assert target["InputTransformer"] == {"InputTemplate": rule_spec.input_template}
    assert '"tenant": "acme"' in rule_spec.input_template and "<aws.events.event.json>" in rule_spec.input_template
    rule_id = next(k for k, r in synth.resources("AWS::Events::Rule").items() if r["Properties"].get("Name") == rule_spec.name)
    [permission] = [p["Properties"] for p in synth.resources("AWS::Lambda::Permission").values() if "SourceArn" in p["Properties"]
                    and p["Properties"]["SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}]  # fmt: skip
    assert permission["Principal"] == "events.amazonaws.com" and permission["Action"] == "lambda:InvokeFunction"
    assert permission["FunctionName"] == {"Fn::GetAtt": [_trigger_fn(synth), "Arn"]}


def test_schedule_triggers_become_scheduler_schedules_invoking_only_the_trigger_function(triggered: tuple[Synth, Path]) -> None:
    synth, graph = triggered
    specs = [s for s in aws_trigger_specs(load_file(graph).triggers, tenant="acme", agent="digest", prefix="stepwise-dev")]
    by_name = {s["Properties"]["Name"]: s["Properties"] for s in synth.resources("AWS::Scheduler::Schedule").values()}
    schedule_specs = [s for s in specs if isinstance(s, ScheduleSpec)]
    assert set(by_name) == {s.name for s in schedule_specs}
    role_id = next(k for k in synth.resources("AWS::IAM::Role") if "TriggersSchedulerRole" in k)
    for spec in schedule_specs:
        schedule = by_name[spec.name]
        assert schedule["ScheduleExpression"] == spec.schedule_expression
        assert schedule["ScheduleExpressionTimezone"] == spec.timezone
        assert schedule["State"] == ("ENABLED" if spec.enabled else "DISABLED")
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        target = schedule["Target"]
        assert target["Arn"] == {"Fn::GetAtt": [_trigger_fn(synth), "Arn"]}
        assert target["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
        assert json.loads(target["Input"]) == json.loads(spec.input)
    assert by_name[next(s.name for s in schedule_specs if s.trigger == "nightly")]["ScheduleExpressionTimezone"] == "Europe/Paris"
    role = synth.raw["Resources"][role_id]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    statements = [
        s for p in synth.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]  # fmt: skip
    assert statements == [{"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": {"Fn::GetAtt": [_trigger_fn(synth), "Arn"]}}]


def test_trigger_function_may_start_runs_but_not_deploy_or_stop_them(triggered: tuple[Synth, Path]) -> None:
    synth, _ = triggered
    role_id = synth.raw["Resources"][_trigger_fn(synth)]["Properties"]["Role"]["Fn::GetAtt"][0]
    actions: set[str] = set()
    for p in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in p["Properties"]["Roles"]:
            for s in p["Properties"]["PolicyDocument"]["Statement"]:
                actions |= set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    assert "states:StartExecution" in actions
    assert not {"states:CreateStateMachine", "states:StopExecution", "states:SendTaskSuccess", "states:UpdateStateMachineAlias"} & actions
    assert "events:PutEvents" not in actions and not any(a.startswith("secretsmanager:") for a in actions)
    outputs: dict[str, Any] = synth.raw["Outputs"]
    assert {"TriggerFunctionArn", "SchedulerRoleArn"} <= set(outputs)


def test_template_with_triggers_is_cfn_lint_clean(triggered: tuple[Synth, Path]) -> None:
    synth, _ = triggered
    matches = lint(json.dumps(synth.raw), regions=["eu-west-1"])
    errors = [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_a_bad_triggers_context_value_says_how_to_write_it() -> None:
    from infra.stacks.config import _trigger_graphs

    assert _trigger_graphs("acme=a.yaml, globex=b.yaml") == (("acme", "a.yaml"), ("globex", "b.yaml"))
    assert _trigger_graphs('[{"tenant": "acme", "graph": "a.yaml"}]') == (("acme", "a.yaml"),)
    with pytest.raises(ValueError, match=r"tenant=path\.yaml"):
        _trigger_graphs("a.yaml")


def test_the_api_may_deploy_triggers_of_agents_registered_later_and_nothing_wider(synth: Synth) -> None:
    [(api_id, api)] = [
        (k, f) for k, f in synth.resources("AWS::Lambda::Function").items() if f["Properties"]["FunctionName"] == "stepwise-dev-api"
    ]
    env = api["Properties"]["Environment"]["Variables"]
    assert env["STEPWISE_TRIGGER_FUNCTION_ARN"] == {"Fn::GetAtt": [_trigger_fn(synth), "Arn"]}
    role_id = next(k for k in synth.resources("AWS::IAM::Role") if "TriggersSchedulerRole" in k)
    assert env["STEPWISE_SCHEDULER_ROLE_ARN"] == {"Fn::GetAtt": [role_id, "Arn"]}
    api_role = api["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        s for p in synth.resources("AWS::IAM::Policy").values() if {"Ref": api_role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]  # fmt: skip

    def resource_of(action: str) -> str:
        [found] = [s for s in statements if action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
        return json.dumps(found["Resource"])

    assert ":rule/" in resource_of("events:PutRule") and "/stepwise-dev-*" in resource_of("events:PutRule")
    assert ":schedule/default/stepwise-dev-*" in resource_of("scheduler:CreateSchedule")
    # a trigger a later version drops is deleted, and only within the same names; listing takes no ARN
    for action in ("events:RemoveTargets", "events:DeleteRule", "events:ListTargetsByRule"):
        assert resource_of(action) == resource_of("events:PutRule")
    for action in ("scheduler:DeleteSchedule", "scheduler:GetSchedule"):
        assert resource_of(action) == resource_of("scheduler:CreateSchedule")
    assert resource_of("events:ListRules") == resource_of("scheduler:ListSchedules") == '"*"'
    [passrole] = [s for s in statements if s["Action"] == "iam:PassRole" and role_id in json.dumps(s["Resource"])]
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    trigger_arn = {"Fn::GetAtt": [_trigger_fn(synth), "Arn"]}
    permissions = [p["Properties"] for p in synth.resources("AWS::Lambda::Permission").values()]
    [permission] = [p for p in permissions if p["FunctionName"] == trigger_arn and "Fn::Join" in json.dumps(p.get("SourceArn"))]
    assert permission["Principal"] == "events.amazonaws.com" and "/stepwise-dev-*" in json.dumps(permission["SourceArn"])
    assert api_id
