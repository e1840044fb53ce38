"""The channels Lambda in the stack: the events table's stream feeds it (INSERT only), it may post to this
WebSocket API's connections and read/drop subscriptions in the API table, and nothing else."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import Synth


def _channels(synth: Synth) -> tuple[str, dict[str, Any]]:
    [(fid, fn)] = [
        (k, f) for k, f in synth.resources("AWS::Lambda::Function").items() if f["Properties"]["FunctionName"] == "stepwise-dev-channels"
    ]
    return fid, fn["Properties"]


def _logical(synth: Synth, kind: str, fragment: str) -> str:
    [found] = [k for k, v in synth.raw["Resources"].items() if v["Type"] == kind and fragment in k]
    return found


def _statements(synth: Synth, role_id: str) -> list[dict[str, Any]]:
    policies = [p for p in synth.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]]
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return set(actions if isinstance(actions, list) else [actions])


def test_the_events_stream_feeds_the_channels_function_with_inserts_only(synth: Synth) -> None:
    fid, props = _channels(synth)
    events_id = _logical(synth, "AWS::DynamoDB::Table", "StorageEvents")
    [mapping] = [
        m["Properties"]
        for m in synth.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": fid}
    ]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [events_id, "StreamArn"]}
    assert mapping["StartingPosition"] == "LATEST" and mapping["BisectBatchOnFunctionError"] is True
    assert [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]] == [{"eventName": ["INSERT"]}]
    assert synth.raw["Resources"][events_id]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert "VpcConfig" not in props and props["Layers"]  # outside the VPC, on the shared layer
    assert props["Environment"]["Variables"]["STEPWISE_API_TABLE"] == {"Ref": _logical(synth, "AWS::DynamoDB::Table", "StorageApi")}


def test_channels_may_post_only_to_this_websocket_stage_and_touch_only_subscriptions(synth: Synth) -> None:
    _, props = _channels(synth)
    role_id = props["Role"]["Fn::GetAtt"][0]
    statements = _statements(synth, role_id)
    ws_id = _logical(synth, "AWS::ApiGatewayV2::Api", "WebSocket")
    [manage] = [s for s in statements if "execute-api:ManageConnections" in _actions(s)]
    assert _actions(manage) == {"execute-api:ManageConnections"}
    arn = json.dumps(manage["Resource"])
    assert ws_id in arn and "/dev/POST/@connections/*" in arn
    [api_table] = [s for s in statements if s["Resource"] == {"Fn::GetAtt": [_logical(synth, "AWS::DynamoDB::Table", "StorageApi"), "Arn"]}]
    assert _actions(api_table) == {"dynamodb:Query", "dynamodb:DeleteItem"}
    everything = set().union(*(_actions(s) for s in statements))
    assert not any(a.startswith(("states:", "s3:", "lambda:", "secretsmanager:")) for a in everything)
    assert {a for a in everything if a.startswith("dynamodb:")} == {
        "dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    }  # fmt: skip
    role = synth.raw["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role  # logs through its own log group's grant
    # no cycle: the WebSocket API integrates the api function, never this one
    integrations = json.dumps(synth.resources("AWS::ApiGatewayV2::Integration"))
    assert _logical(synth, "AWS::Lambda::Function", "ChannelsFunction") not in integrations


def test_webhooks_go_through_an_encrypted_queue_to_a_sender_with_no_data_access_and_a_dead_letter_queue(synth: Synth) -> None:
    queues = {q["Properties"]["QueueName"]: (k, q["Properties"]) for k, q in synth.resources("AWS::SQS::Queue").items()}
    (queue_id, queue), (dead_id, dead) = queues["stepwise-dev-webhooks"], queues["stepwise-dev-webhooks-dead"]
    assert queue["SqsManagedSseEnabled"] is True and dead["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dead_id, "Arn"]}, "maxReceiveCount": 10}
    tls_only = [
        p["Properties"] for p in synth.resources("AWS::SQS::QueuePolicy").values()
        if any(s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} and s["Effect"] == "Deny"
               for s in p["Properties"]["PolicyDocument"]["Statement"])
    ]  # fmt: skip
    assert {json.dumps(q) for p in tls_only for q in p["Queues"]} == {json.dumps({"Ref": queue_id}), json.dumps({"Ref": dead_id})}
    sender_id, sender = next(
        (k, f["Properties"])
        for k, f in synth.resources("AWS::Lambda::Function").items()
        if f["Properties"]["FunctionName"] == "stepwise-dev-webhooks"
    )
    assert "VpcConfig" not in sender
    assert queue["VisibilityTimeout"] >= sender["Timeout"]
    env = sender["Environment"]["Variables"]
    assert env["STEPWISE_WEBHOOK_QUEUE_URL"] == {"Ref": queue_id} and env["STEPWISE_WEBHOOK_DEAD_LETTER_URL"] == {"Ref": dead_id}
    [mapping] = [
        m["Properties"]
        for m in synth.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": sender_id}
    ]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]} and mapping["FunctionResponseTypes"] == [
        "ReportBatchItemFailures"
    ]
    role_id = sender["Role"]["Fn::GetAtt"][0]
    actions = set().union(*(_actions(s) for s in _statements(synth, role_id)))
    assert not any(a.startswith(("dynamodb:", "s3:", "states:", "execute-api:", "secretsmanager:", "events:")) for a in actions)
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage"} <= actions
    _, channels = _channels(synth)
    assert channels["Environment"]["Variables"]["STEPWISE_WEBHOOK_QUEUE_URL"] == {"Ref": queue_id}
    channel_actions = set().union(*(_actions(s) for s in _statements(synth, channels["Role"]["Fn::GetAtt"][0])))
    assert "sqs:SendMessage" in channel_actions and "sqs:ReceiveMessage" not in channel_actions


def test_the_api_function_may_queue_webhook_jobs_for_runs_it_cancels(synth: Synth) -> None:
    queue_id = next(k for k, q in synth.resources("AWS::SQS::Queue").items() if q["Properties"]["QueueName"] == "stepwise-dev-webhooks")
    [api] = [
        f["Properties"] for f in synth.resources("AWS::Lambda::Function").values() if f["Properties"]["FunctionName"] == "stepwise-dev-api"
    ]
    assert api["Environment"]["Variables"]["STEPWISE_WEBHOOK_QUEUE_URL"] == {"Ref": queue_id}
    sends = [s for s in _statements(synth, api["Role"]["Fn::GetAtt"][0]) if "sqs:SendMessage" in _actions(s)]
    assert [s["Resource"] for s in sends] == [{"Fn::GetAtt": [queue_id, "Arn"]}]
