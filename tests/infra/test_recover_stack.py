"""Scheduled recovery in the stack: the ``recover`` Lambda on an EventBridge rate rule, with a least-privilege role
(the state as the step uses it, DescribeExecution and StartExecution on the agents' state machines, nothing else),
nag-clean. Uses the session synth (default context: every 5 minutes); ``stepwise:recoverEvery`` is checked on the
config alone (no second synth). The function itself runs on moto in tests/integration/test_recover_aws.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra.stacks.compute import START_ACTIONS
from infra.stacks.config import StackConfig
from tests.infra.conftest import Synth
from tests.infra.test_stack import _actions, _statements, ref_of
from tests.integration.test_cloud_in_a_box import ROOT, load_module


class Context:
    def __init__(self, **values: Any) -> None:
        self.values = values

    def try_get_context(self, key: str) -> Any:
        return self.values.get(key)


def test_a_rate_rule_invokes_the_recover_function_every_5_minutes_by_default(synth: Synth) -> None:
    assert synth.error is None, synth.error  # nag-clean, acknowledgements included
    fn_id = ref_of(synth, "AWS::Lambda::Function", "ComputeRecover")
    fn = synth.raw["Resources"][fn_id]["Properties"]
    assert fn["FunctionName"] == "stepwise-dev-recover" and fn["Handler"] == "handler.handler"
    assert fn["VpcConfig"]["SubnetIds"] and fn["Environment"]["Variables"]["STEPWISE_BACKEND"] == "aws"
    (rule,) = [r for r in _rules_invoking(synth, fn_id) if "ScheduleExpression" in r]
    assert rule["ScheduleExpression"] == "rate(5 minutes)" and rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [fn_id, "Arn"]} and target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    rule_id = next(k for k, r in synth.resources("AWS::Events::Rule").items() if r["Properties"] is rule)
    permissions = [p["Properties"] for p in synth.resources("AWS::Lambda::Permission").values() if fn_id in json.dumps(p)]
    assert {p["Principal"] for p in permissions} == {"events.amazonaws.com"}
    assert {"Fn::GetAtt": [rule_id, "Arn"]} in [p["SourceArn"] for p in permissions]


def test_an_agent_execution_that_ended_without_finishing_invokes_the_recover_function(synth: Synth) -> None:
    """Step Functions' status-change event of an execution of one of this stage's agent state machines that ended
    FAILED, TIMED_OUT or ABORTED: the run is recovered within seconds, not at the next pass."""
    fn_id = ref_of(synth, "AWS::Lambda::Function", "ComputeRecover")
    (rule,) = [r for r in _rules_invoking(synth, fn_id) if "EventPattern" in r]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.states"] and pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]  # not SUCCEEDED: every hand-over ends one
    recover = load_module(ROOT / "functions" / "recover" / "handler.py")
    assert set(pattern["detail"]["status"]) == recover.ENDED  # the function acts on exactly what the rule sends
    (machines,) = pattern["detail"]["stateMachineArn"]
    assert ":stateMachine:stepwise-dev-" in json.dumps(machines["prefix"])  # this stage's agents only
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [fn_id, "Arn"]}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600}
    rule_id = next(k for k, r in synth.resources("AWS::Events::Rule").items() if r["Properties"] is rule)
    permissions = [p["Properties"] for p in synth.resources("AWS::Lambda::Permission").values() if fn_id in json.dumps(p)]
    assert {"Fn::GetAtt": [rule_id, "Arn"]} in [p["SourceArn"] for p in permissions]


def _rules_invoking(synth: Synth, fn_id: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in synth.resources("AWS::Events::Rule").values() if fn_id in json.dumps(r["Properties"].get("Targets"))]


def test_the_recover_role_may_describe_and_start_executions_and_use_the_run_state_only(synth: Synth) -> None:
    statements = _statements(synth, "ComputeRecoverServiceRole")
    actions = {a for s in statements for a in _actions(s)}
    assert {a for a in actions if a.startswith("states:")} == {"states:DescribeExecution", *START_ACTIONS}
    assert "states:StopExecution" not in actions and not any(a.startswith("states:SendTask") for a in actions)
    describe = [s for s in statements if "states:DescribeExecution" in _actions(s)]
    assert ":execution:stepwise-dev-*:*" in json.dumps(describe)
    start = [s for s in statements if "states:StartExecution" in _actions(s)]
    assert ":stateMachine:stepwise-dev-*" in json.dumps(start)
    (passrole,) = [s for s in statements if "iam:PassRole" in _actions(s)]
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "states.amazonaws.com"}}
    # the same table/object grants as the step, and no other service
    step = _statements(synth, "ComputeStepServiceRole")
    state = [s for s in statements if any(a.startswith(("dynamodb:", "s3:")) for a in _actions(s))]
    assert state and all(s in step for s in state)
    runs = [s for s in statements if "dynamodb:BatchGetItem" in _actions(s)]  # in_flight: the sparse index, then the records
    assert runs and "/index/active-created_at" in json.dumps(runs) and "dynamodb:Query" in _actions(runs[0])
    assert {a.split(":")[0] for a in actions} <= {"dynamodb", "s3", "states", "iam", "xray"}
    api_table = ref_of(synth, "AWS::DynamoDB::Table", "StorageApi")
    assert api_table not in json.dumps(statements)
    assert not any(a.startswith(("secretsmanager:", "aoss:", "lambda:", "events:")) for a in actions)


@pytest.mark.parametrize(("value", "minutes"), [(None, 5), ("15", 15), (30, 30), ("false", None), (False, None), ("0", None)])
def test_recover_every_sets_the_rate_or_turns_the_schedule_off(value: Any, minutes: int | None) -> None:
    assert StackConfig.from_context(Context(**{"stepwise:recoverEvery": value})).recover_minutes == minutes


@pytest.mark.parametrize("value", ["soon", "1441", "-5"])
def test_a_bad_recover_every_names_the_setting(value: str) -> None:
    with pytest.raises(ValueError, match="stepwise:recoverEvery"):
        StackConfig.from_context(Context(**{"stepwise:recoverEvery": value}))
