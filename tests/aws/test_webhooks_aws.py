"""Webhooks on the AWS path, on moto: the API stores the run's webhook (no watcher thread in a Lambda), the
channels Lambda turns the events table's stream records into jobs on an SQS queue, the webhooks Lambda
delivers them to a real receiver on loopback (signed, replay-safe ids), retries by message visibility and
dead-letters to a second SQS queue without the secret.

Stand-ins, because moto runs no Lambda event source mappings: the stream records are read from moto's
DynamoDB stream and handed to the channels handler, and ``drain`` receives from moto's queue and deletes
what the handler did not report as failed — what Lambda's SQS event source mapping does."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stepwise.api.app import create_app
from stepwise.api.keys import create_key
from stepwise.api.settings import ApiSettings
from stepwise.api.webhooks import verify
from stepwise.api.webhooks_aws import CancelledWebhooks, WebhookJob, run_webhook, send_jobs
from stepwise.client import Stepwise
from stepwise.state.dynamodb import DynamoEventStore
from stepwise.state.events import encode
from stepwise.store.dynamodb import DynamoApiStore

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
SECRET = "whsec-" + "s" * 26
CONTEXT = SimpleNamespace(
    function_name="fn", memory_limit_in_mb=512, invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:fn", aws_request_id="r"
)


class Receiver:
    """A webhook receiver on a loopback port: /ok answers 200, /busy 503, /gone 400; keeps every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.requests.append((self.path, dict(self.headers), body))
                self.send_response({"/ok": 200, "/busy": 503, "/gone": 400}.get(self.path, 404))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_handler_under_test", ROOT / "functions" / name / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        db.create_table(
            TableName="api",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        )
        events = db.create_table(
            TableName="events",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "thread_id", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "thread_id", "AttributeType": "S"}, {"AttributeName": "seq", "AttributeType": "N"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
        sqs = boto3.client("sqs", region_name=REGION)
        dead = sqs.create_queue(QueueName="webhooks-dead")["QueueUrl"]
        queue = sqs.create_queue(QueueName="webhooks")["QueueUrl"]
        env = {
            "STEPWISE_API_TABLE": "api",
            "STEPWISE_WEBHOOK_QUEUE_URL": queue,
            "STEPWISE_WEBHOOK_DEAD_LETTER_URL": dead,
            "STEPWISE_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on loopback
            "STEPWISE_WEBHOOK_BACKOFF_SECONDS": "0",  # visible again at once: no waiting in tests
            "STEPWISE_WEBHOOK_ATTEMPTS": "3",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield {"db": db, "sqs": sqs, "queue": queue, "dead": dead, "stream": events["TableDescription"]["LatestStreamArn"]}


def stream_records(arn: str) -> list[dict[str, Any]]:
    # the endpoint spelled out: this botocore's endpoint rules send the call where moto 5.2 does not route it
    streams = boto3.client("dynamodbstreams", region_name=REGION, endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com")
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return list(streams.get_records(ShardIterator=iterator)["Records"])


def drain(aws: dict[str, Any], webhooks: ModuleType) -> list[dict[str, Any]]:
    """One poll of the queue as Lambda's SQS event source mapping does it: receive, invoke, delete the successes."""
    sqs = aws["sqs"]
    messages = sqs.receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
    if not messages:
        return []
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m["Attributes"],
            "eventSource": "aws:sqs",
        }
        for m in messages
    ]
    failed = {f["itemIdentifier"] for f in webhooks.handler({"Records": records}, CONTEXT)["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=aws["queue"], ReceiptHandle=m["ReceiptHandle"])
    return records


def test_a_runs_webhook_goes_from_the_events_stream_through_sqs_to_the_receiver(aws: dict[str, Any], receiver: Receiver) -> None:
    store = DynamoApiStore("api", client=aws["db"])
    key = create_key(store, "acme")[1]
    engine = Stepwise.in_memory()
    api = create_app(lambda: engine, store=store, settings=ApiSettings(backend="aws", api_table="api", webhook_allow_private=True))
    rest = {"httpMethod": "POST", "headers": {"x-api-key": key, "content-type": "application/json"}, "requestContext": {}}
    yaml_text = (ROOT / "statemachines" / "examples" / "human_approval.yaml").read_text()
    assert api({**rest, "path": "/agents", "body": json.dumps({"yaml": yaml_text})})["statusCode"] == 201
    hook = {"url": f"{receiver.url}/ok", "secret": SECRET, "events": ["waiting", "succeeded"]}
    body = {"input": {"amount": 5}, "webhook": hook}
    run = json.loads(api({**rest, "path": "/agents/human-approval/execute", "body": json.dumps(body)})["body"])
    assert run["status"] == "waiting"
    stored = run_webhook(store, run["run_id"])  # stored for the stream, not watched by a thread
    assert stored is not None and stored[0].url == hook["url"] and stored[1]["agent"] == "human-approval"
    resumed = api({**rest, "path": f"/runs/{run['run_id']}/resume", "body": json.dumps({"input": {"decision": "yes"}})})
    assert json.loads(resumed["body"])["status"] == "succeeded"
    assert receiver.requests == []  # nothing was sent from the API process

    events = engine.history(run["thread_id"])
    rows = [(e.seq, e.type, e.run_id, e.node, e.scope, None, e.ts, encode(e.data)) for e in events]
    DynamoEventStore("events", client=aws["db"])._insert(run["thread_id"], 0, rows)
    records = stream_records(aws["stream"])
    channels, webhooks = load("channels"), load("webhooks")
    assert channels.handler({"Records": records}, CONTEXT)["webhooks"] == 2  # waiting, then succeeded
    drain(aws, webhooks)
    seen: set[str] = set()
    kinds = []
    for path, headers, payload in receiver.requests:
        assert path == "/ok" and verify(SECRET, headers, payload, seen=seen)
        message = json.loads(payload)
        kinds.append(message["type"])
        assert message["data"]["run_id"] == run["run_id"] and message["data"]["thread_id"] == run["thread_id"]
    assert kinds == ["run.waiting", "run.succeeded"]
    waited = json.loads(receiver.requests[0][2])["data"]["waiting"]
    assert waited["node"] == "approve" and waited["interrupt_id"] == run["waiting"]["interrupt_id"] and "token" not in waited
    assert SECRET not in json.dumps(receiver.requests[0][1]) and SECRET.encode() not in receiver.requests[0][2]

    # the stream delivers at least once: a replayed batch sends the same event ids, which the receiver's check drops
    assert channels.handler({"Records": records}, CONTEXT)["webhooks"] == 2
    drain(aws, webhooks)
    assert len(receiver.requests) == 4
    assert [verify(SECRET, h, b, seen=seen) for _, h, b in receiver.requests[2:]] == [False, False]


def test_failed_deliveries_are_retried_then_dead_lettered_without_the_secret(aws: dict[str, Any], receiver: Receiver) -> None:
    webhooks = load("webhooks")
    jobs = [
        WebhookJob(url=f"{receiver.url}/busy", secret=SECRET, kind="run.failed", event_id="evt_busy", data={"run_id": "r1"}, created=1.0),
        WebhookJob(url=f"{receiver.url}/gone", secret=SECRET, kind="run.failed", event_id="evt_gone", data={"run_id": "r2"}, created=1.0),
    ]
    send_jobs(jobs, aws["queue"], aws["sqs"])
    polls = 0
    while drain(aws, webhooks):
        polls += 1
        assert polls <= 5
    hits = [path for path, _, _ in receiver.requests]
    assert hits.count("/busy") == 3 and hits.count("/gone") == 1  # 503 is retried (3 attempts); 400 is final
    dead = [json.loads(m["Body"]) for m in aws["sqs"].receive_message(QueueUrl=aws["dead"], MaxNumberOfMessages=10)["Messages"]]
    by_id = {d["event_id"]: d for d in dead}
    assert by_id["evt_busy"]["error"] == "HTTP 503" and by_id["evt_busy"]["attempts"] == 3
    assert by_id["evt_gone"]["error"] == "HTTP 400" and by_id["evt_gone"]["attempts"] == 1
    assert SECRET not in json.dumps(dead)
    assert "Messages" not in aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10)


def test_private_targets_are_refused_on_aws_too(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    monkeypatch.setenv("STEPWISE_WEBHOOK_ALLOW_PRIVATE", "0")
    webhooks = load("webhooks")
    job = WebhookJob(url=f"{receiver.url}/ok", secret=SECRET, kind="run.succeeded", event_id="evt_ssrf", data={}, created=1.0)
    send_jobs([job], aws["queue"], aws["sqs"])
    drain(aws, webhooks)
    assert receiver.requests == []  # never connected
    [dead] = aws["sqs"].receive_message(QueueUrl=aws["dead"])["Messages"]
    assert "non-public address" in json.loads(dead["Body"])["error"]


def test_a_cancel_through_the_api_queues_the_runs_cancelled_webhook(aws: dict[str, Any], receiver: Receiver) -> None:
    """Cancelling writes no log event, so the api Lambda's event sink (``CancelledWebhooks``, wired in
    functions/api/handler.py when the stack sets STEPWISE_WEBHOOK_QUEUE_URL) queues the job itself."""
    store = DynamoApiStore("api", client=aws["db"])
    key = create_key(store, "acme")[1]
    engine = Stepwise.in_memory()
    sink = CancelledWebhooks(store, aws["queue"], aws["sqs"])
    settings = ApiSettings(backend="aws", api_table="api", webhook_allow_private=True)
    api = create_app(lambda: engine, store=store, settings=settings, events=sink)
    rest = {"httpMethod": "POST", "headers": {"x-api-key": key, "content-type": "application/json"}, "requestContext": {}}
    yaml_text = (ROOT / "statemachines" / "examples" / "human_approval.yaml").read_text()
    assert api({**rest, "path": "/agents", "body": json.dumps({"yaml": yaml_text})})["statusCode"] == 201
    hook = {"url": f"{receiver.url}/ok", "secret": SECRET, "events": ["cancelled"]}
    run = json.loads(
        api({**rest, "path": "/agents/human-approval/execute", "body": json.dumps({"input": {"amount": 5}, "webhook": hook})})["body"]
    )
    assert run["status"] == "waiting"
    cancelled = api({**rest, "path": f"/runs/{run['run_id']}/cancel", "body": "{}"})
    assert json.loads(cancelled["body"])["status"] == "cancelled"
    drain(aws, load("webhooks"))
    [(_, headers, payload)] = receiver.requests
    assert verify(SECRET, headers, payload) and json.loads(payload)["type"] == "run.cancelled"
    assert json.loads(payload)["data"]["run_id"] == run["run_id"] and json.loads(payload)["data"]["agent"] == "human-approval"
