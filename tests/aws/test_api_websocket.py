"""WebSocket streaming on moto: connections in DynamoDB, subscribe with backlog, fan-out from event-table
stream records through API Gateway's postToConnection (moto's apigatewaymanagementapi)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.core import DEFAULT_ACCOUNT_ID

from stepwise.api.app import create_app
from stepwise.api.keys import create_key
from stepwise.api.settings import ApiSettings
from stepwise.api.websocket import DynamoConnections, fan_out
from stepwise.client import Stepwise
from stepwise.state.dynamodb import DynamoEventStore
from stepwise.state.events import encode
from stepwise.store.memory import MemoryApiStore

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


def ws(kind: str, connection: str, body: Any = None, key: str | None = None) -> dict[str, Any]:
    return {
        "requestContext": {"eventType": kind, "connectionId": connection, "routeKey": "$default", "requestId": "w"},
        "headers": {"x-api-key": key} if key else {},
        "body": json.dumps(body) if body is not None else None,
    }


def stream_record(thread_id: str, e: Any) -> dict[str, Any]:
    """An events-table INSERT as DynamoDB Streams delivers it (NEW_IMAGE), shaped like state/dynamodb.py's items."""
    image = {
        "thread_id": {"S": thread_id},
        "seq": {"N": str(e.seq)},
        "type": {"S": e.type},
        "run_id": {"S": e.run_id},
        "scope": {"S": e.scope},
        "ts": {"N": str(e.ts)},
        "data": {"S": encode(e.data)},
    }
    if e.node:
        image["node"] = {"S": e.node}
    return {"eventName": "INSERT", "dynamodb": {"NewImage": image}}


@mock_aws
def test_subscribe_gets_the_backlog_and_fan_out_pushes_new_events_to_the_runs_subscribers() -> None:
    db = boto3.client("dynamodb", region_name=REGION)
    db.create_table(
        TableName="api",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    )
    store = MemoryApiStore()
    keys = {t: create_key(store, t)[1] for t in ("acme", "globex")}
    engine = Stepwise.in_memory()
    api = create_app(lambda: engine, store=store, settings=ApiSettings(backend="memory"))
    connections = DynamoConnections("api", db=db)
    api.ws_connections = connections

    yaml_text = (ROOT / "statemachines" / "examples" / "human_approval.yaml").read_text()
    rest = {"httpMethod": "POST", "headers": {"x-api-key": keys["acme"], "content-type": "application/json"}, "requestContext": {}}
    assert api({**rest, "path": "/agents", "body": json.dumps({"yaml": yaml_text})})["statusCode"] == 201
    run = json.loads(api({**rest, "path": "/agents/human-approval/execute", "body": json.dumps({"input": {"amount": 5}})})["body"])
    assert run["status"] == "waiting"

    assert api(ws("CONNECT", "c-anon"))["statusCode"] == 401
    assert api(ws("CONNECT", "c-acme", key=keys["acme"]))["statusCode"] == 200
    assert api(ws("CONNECT", "c-globex", key=keys["globex"]))["statusCode"] == 200
    reply = json.loads(api(ws("MESSAGE", "c-acme", {"action": "subscribe", "run_id": run["run_id"]}))["body"])
    assert reply["subscribed"] == run["run_id"] and reply["status"] == "waiting"
    seen = [f["id"] for f in reply["events"]]
    assert reply["events"][0]["event"] == "run_started" and reply["events"][-1]["event"] == "interrupt"
    other = json.loads(api(ws("MESSAGE", "c-globex", {"action": "subscribe", "run_id": run["run_id"]}))["body"])
    assert other["error"]["code"] == "run_not_found"  # another tenant's run, like REST's 404
    assert connections.subscribers(run["run_id"]) == ["c-acme"]

    # the run goes on; its new log events arrive as the events table's stream records
    resumed = api({**rest, "path": f"/runs/{run['run_id']}/resume", "body": json.dumps({"input": {"decision": "yes"}})})
    assert json.loads(resumed["body"])["status"] == "succeeded"
    new = [e for e in engine.history(run["thread_id"]) if e.seq > max(seen)]
    mgmt = boto3.client(
        "apigatewaymanagementapi", region_name=REGION, endpoint_url="https://abc123.execute-api.us-east-1.amazonaws.com/dev"
    )
    counts = fan_out(
        [stream_record(run["thread_id"], e) for e in new],
        connections,
        lambda cid, data, endpoint: mgmt.post_to_connection(ConnectionId=cid, Data=data),
    )
    assert counts == {"events": len(new), "posted": len(new), "gone": 0}
    pushed = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION].connections["c-acme"].data
    frames = [json.loads(chunk) for chunk in pushed.decode().replace('}{"id"', '}\n{"id"').splitlines()]
    assert [f["id"] for f in frames] == [e.seq for e in new] and frames[-1]["event"] == "run_finished"

    # a gone connection is dropped; $disconnect forgets the rest
    def gone(cid: str, data: bytes, endpoint: str | None) -> None:
        raise type("GoneException", (Exception,), {})("410")

    assert fan_out([stream_record(run["thread_id"], new[-1])], connections, gone)["gone"] == 1
    assert connections.subscribers(run["run_id"]) == []
    assert api(ws("DISCONNECT", "c-acme"))["statusCode"] == 200
    assert connections.tenant_of("c-acme") is None


def load_channels() -> Any:
    spec = importlib.util.spec_from_file_location("channels_handler_under_test", ROOT / "functions" / "channels" / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONTEXT = SimpleNamespace(
    function_name="stepwise-dev-channels",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:stepwise-dev-channels",
    aws_request_id="r1",
)


@mock_aws
def test_channels_lambda_posts_events_written_to_the_events_table_to_the_endpoint_each_subscriber_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end on moto: the real DynamoDB event store writes a run's events into a table with a stream,
    the stream's records (read with dynamodbstreams, as Lambda's event source mapping would) go to the
    channels Lambda, and the frames land on the connection through postToConnection at the endpoint
    stored from the subscribe message's request context (two API stages: each connection gets its own)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("STEPWISE_API_TABLE", "api")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    db = boto3.client("dynamodb", region_name=REGION)
    db.create_table(
        TableName="api",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    )
    table = db.create_table(
        TableName="events",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "thread_id", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "thread_id", "AttributeType": "S"}, {"AttributeName": "seq", "AttributeType": "N"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    store = MemoryApiStore()
    key = create_key(store, "acme")[1]
    engine = Stepwise.in_memory()
    api = create_app(lambda: engine, store=store, settings=ApiSettings(backend="memory"))
    api.ws_connections = DynamoConnections("api", db=db)
    yaml_text = (ROOT / "statemachines" / "examples" / "sequential.yaml").read_text()
    rest = {"httpMethod": "POST", "headers": {"x-api-key": key, "content-type": "application/json"}, "requestContext": {}}
    assert api({**rest, "path": "/agents", "body": json.dumps({"yaml": yaml_text})})["statusCode"] == 201
    run = json.loads(api({**rest, "path": "/agents/sequential/execute", "body": json.dumps({"input": {}})})["body"])
    for connection, stage in (("c-dev", "dev"), ("c-prod", "prod")):
        assert api(ws("CONNECT", connection, key=key))["statusCode"] == 200
        message = ws("MESSAGE", connection, {"action": "subscribe", "run_id": run["run_id"], "after": 10**6})
        message["requestContext"] |= {"domainName": "abc123.execute-api.us-east-1.amazonaws.com", "stage": stage}
        assert json.loads(api(message)["body"])["events"] == []

    # the run's events go into the events table through the real adapter; the table's stream carries them
    events = engine.history(run["thread_id"])
    rows = [(e.seq, e.type, e.run_id, e.node, e.scope, None, e.ts, encode(e.data)) for e in events]
    DynamoEventStore("events", client=db)._insert(run["thread_id"], 0, rows)
    # the endpoint spelled out: this botocore's endpoint rules send the call where moto 5.2 does not route it
    streams = boto3.client("dynamodbstreams", region_name=REGION, endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com")
    arn = table["TableDescription"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    assert len(records) == len(events)

    channels = load_channels()
    result = channels.handler({"Records": records}, CONTEXT)
    assert result["websocket"] == {"events": len(events), "posted": 2 * len(events), "gone": 0}
    endpoints = {client.meta.endpoint_url for client in channels.parts()[1]._clients.values()}
    assert endpoints == {f"https://abc123.execute-api.us-east-1.amazonaws.com/{stage}" for stage in ("dev", "prod")}
    backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION]
    for connection in ("c-dev", "c-prod"):
        pushed = backend.connections[connection].data.decode().replace('}{"id"', '}\n{"id"').splitlines()
        frames = [json.loads(chunk) for chunk in pushed]
        assert [f["id"] for f in frames] == [e.seq for e in events]
        assert frames[0]["event"] == "run_started" and frames[-1]["event"] == "run_finished"
        assert frames[-1]["data"]["run_id"] == run["run_id"]
