"""WebSocket streaming on moto: connections in DynamoDB, subscribe with backlog, fan-out from event-table
stream records through API Gateway's postToConnection (moto's apigatewaymanagementapi)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.core import DEFAULT_ACCOUNT_ID

from stepwise.api.app import create_app
from stepwise.api.keys import create_key
from stepwise.api.settings import ApiSettings
from stepwise.api.store.memory import MemoryApiStore
from stepwise.api.websocket import DynamoConnections, fan_out
from stepwise.client import Stepwise
from stepwise.state.events import encode

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
        lambda cid, data: mgmt.post_to_connection(ConnectionId=cid, Data=data),
    )
    assert counts == {"events": len(new), "posted": len(new), "gone": 0}
    pushed = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION].connections["c-acme"].data
    frames = [json.loads(chunk) for chunk in pushed.decode().replace('}{"id"', '}\n{"id"').splitlines()]
    assert [f["id"] for f in frames] == [e.seq for e in new] and frames[-1]["event"] == "run_finished"

    # a gone connection is dropped; $disconnect forgets the rest
    def gone(cid: str, data: bytes) -> None:
        raise type("GoneException", (Exception,), {})("410")

    assert fan_out([stream_record(run["thread_id"], new[-1])], connections, gone)["gone"] == 1
    assert connections.subscribers(run["run_id"]) == []
    assert api(ws("DISCONNECT", "c-acme"))["statusCode"] == 200
    assert connections.tenant_of("c-acme") is None
