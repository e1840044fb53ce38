"""Webhooks: signed, timestamped, replay-protected, retried, dead-lettered, SSRF-safe — to a real HTTP receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from stepwise.api.app import create_app
from stepwise.api.keys import create_key
from stepwise.api.settings import ApiSettings
from stepwise.api.webhooks import WebhookRejected, WebhookSender, resolve_public, sign, verify
from stepwise.client import Stepwise
from stepwise.store.memory import MemoryApiStore

SECRET = "whsec_0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers a scripted series of statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.received = list(statuses), []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.received.append((dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?x=1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500, 503])
    yield r
    r.close()


def test_a_delivery_is_signed_retried_with_backoff_and_logged(receiver: Receiver, tmp_path: Path) -> None:
    waits: list[float] = []
    sender = WebhookSender(home=tmp_path, allow_private=True, base=0.5, sleep=waits.append)
    assert sender.deliver(receiver.url, SECRET, "run.succeeded", {"run_id": "r1"}) is True
    assert [e["status"] for e in sender.log] == [500, 503, 200] and waits == [0.5, 1.0]
    headers, body = receiver.received[-1]
    assert verify(SECRET, headers, body)
    assert json.loads(body)["type"] == "run.succeeded" and json.loads(body)["data"] == {"run_id": "r1"}
    assert len((tmp_path / "webhooks.log.jsonl").read_text().splitlines()) == 3


def test_replayed_stale_or_forged_deliveries_fail_verification() -> None:
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    headers = {"Stepwise-Signature": sign(SECRET, now, body), "Stepwise-Event-Id": "evt_1"}
    seen: set[str] = set()
    assert verify(SECRET, headers, body, seen=seen)
    assert not verify(SECRET, headers, body, seen=seen)  # replay
    assert not verify(SECRET, {**headers, "Stepwise-Signature": sign(SECRET, now - 3600, body)}, body)  # stale
    assert not verify("another-secret-0000", headers, body)  # wrong key
    assert not verify(SECRET, headers, body + b" ")  # tampered
    assert not verify(SECRET, {"Stepwise-Signature": "garbage"}, body)


def test_permanent_failures_are_dead_lettered(tmp_path: Path) -> None:
    r = Receiver([400])
    try:
        sender = WebhookSender(home=tmp_path, allow_private=True, sleep=lambda s: None)
        assert sender.deliver(r.url, SECRET, "run.failed", {}) is False
        assert len(r.received) == 1  # a 400 is final: no retry
        dead = [json.loads(line) for line in (tmp_path / "webhooks.dead.jsonl").read_text().splitlines()]
        assert dead[0]["type"] == "run.failed" and dead[0]["error"] == "HTTP 400"
    finally:
        r.close()
    sender = WebhookSender(allow_private=True, attempts=3, sleep=lambda s: None)
    assert sender.deliver("http://127.0.0.1:9/closed", SECRET, "run.failed", {}) is False  # connection refused, 3 tries
    assert [e["outcome"] for e in sender.log] == ["failed"] * 3 and len(sender.dead) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8080/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/x",
        "http://192.168.1.1/x",
        "http://[::1]/x",
        "http://0.0.0.0/x",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:pw@example.com/",
    ],
)
def test_private_and_odd_targets_are_refused(url: str) -> None:
    with pytest.raises(WebhookRejected):
        resolve_public(url)


def test_execute_with_a_webhook_reports_waiting_then_the_end(receiver: Receiver) -> None:
    receiver.statuses = []
    store = MemoryApiStore()
    _, key = create_key(store, "acme")
    settings = ApiSettings(backend="memory", webhook_allow_private=True)
    engine = Stepwise.in_memory()
    api = create_app(lambda: engine, store=store, settings=settings, sleep=lambda s: time.sleep(min(s, 0.05)))

    def call(method: str, path: str, body: Any) -> tuple[int, Any]:
        out = api(
            {
                "path": path,
                "httpMethod": method,
                "headers": {"x-api-key": key, "content-type": "application/json"},
                "requestContext": {},
                "body": json.dumps(body),
            }
        )
        return int(out["statusCode"]), json.loads(out["body"])

    yaml_text = (ROOT / "statemachines" / "examples" / "human_approval.yaml").read_text()
    assert call("POST", "/agents", {"yaml": yaml_text})[0] == 201
    hook = {"url": receiver.url, "secret": SECRET}
    status, run = call("POST", "/agents/human-approval/execute", {"input": {"amount": 12}, "webhook": hook})
    assert status == 200 and run["status"] == "waiting"
    assert receiver.arrived.wait(10)
    receiver.arrived.clear()
    answer = {"decision": "yes"}
    status, done = call("POST", f"/runs/{run['run_id']}/resume", {"input": answer})
    assert status == 200 and done["status"] == "succeeded", done
    for _ in range(200):
        if len(receiver.received) >= 2:
            break
        time.sleep(0.05)
    kinds = [json.loads(body)["type"] for _, body in receiver.received]
    assert kinds == ["run.waiting", "run.succeeded"]
    waited = json.loads(receiver.received[0][1])["data"]["waiting"]
    assert waited["node"] == "approve" and waited["interrupt_id"] == run["waiting"]["interrupt_id"] and "Approve" in waited["prompt"]
    assert "token" not in waited
    assert all(verify(SECRET, h, b) for h, b in receiver.received)
    # and a private target is refused up front when the server does not allow it
    strict = create_app(lambda: engine, store=store, settings=ApiSettings(backend="memory"))
    out = strict(
        {
            "path": "/agents/human-approval/execute",
            "httpMethod": "POST",
            "requestContext": {},
            "headers": {"x-api-key": key, "content-type": "application/json"},
            "body": json.dumps({"webhook": hook}),
        }
    )
    assert out["statusCode"] == 422 and json.loads(out["body"])["error"]["code"] == "webhook_rejected"


def test_an_agent_webhook_reports_every_run_of_the_agent_and_never_shows_its_secret(receiver: Receiver) -> None:
    receiver.statuses = []
    store = MemoryApiStore()
    _, key = create_key(store, "acme")
    _, rival = create_key(store, "globex")
    engine = Stepwise.in_memory()
    api = create_app(
        lambda: engine, store=store, settings=ApiSettings(backend="memory", webhook_allow_private=True), sleep=lambda s: time.sleep(0.02)
    )

    def call(method: str, path: str, body: Any = None, who: str = key) -> tuple[int, Any]:
        event = {
            "path": path,
            "httpMethod": method,
            "headers": {"x-api-key": who, "content-type": "application/json"},
            "requestContext": {},
        }
        out = api({**event, "body": json.dumps(body) if body is not None else None})
        return int(out["statusCode"]), json.loads(out["body"])

    assert call("POST", "/agents", {"yaml": (ROOT / "statemachines" / "examples" / "sequential.yaml").read_text()})[0] == 201
    assert call("GET", "/agents/sequential/webhook")[1] == {"agent": "sequential", "url": None, "events": [], "configured": False}
    hook = {"url": receiver.url, "secret": SECRET, "events": ["succeeded"]}
    status, shown = call("PUT", "/agents/sequential/webhook", hook)
    assert status == 200 and shown["configured"] is True and "secret" not in shown
    assert SECRET not in json.dumps(call("GET", "/agents/sequential/webhook")[1])
    assert call("PUT", "/agents/sequential/webhook", hook, who=rival)[0] == 404  # another tenant's agent
    runs = [call("POST", "/agents/sequential/execute", {"input": {}})[1]["run_id"] for _ in range(2)]
    for _ in range(200):
        if len(receiver.received) >= 2:
            break
        time.sleep(0.05)
    delivered = [json.loads(b) for _, b in receiver.received]
    assert sorted(d["data"]["run_id"] for d in delivered) == sorted(runs)
    assert {d["type"] for d in delivered} == {"run.succeeded"} and all(verify(SECRET, h, b) for h, b in receiver.received)

    assert call("DELETE", "/agents/sequential/webhook")[1]["configured"] is False
    call("POST", "/agents/sequential/execute", {"input": {}})
    assert len(receiver.received) == 2
    strict = create_app(lambda: engine, store=store, settings=ApiSettings(backend="memory"))
    out = strict(
        {
            "path": "/agents/sequential/webhook",
            "httpMethod": "PUT",
            "headers": {"x-api-key": key, "content-type": "application/json"},
            "requestContext": {},
            "body": json.dumps({**hook, "url": "http://169.254.169.254/latest"}),
        }
    )
    assert out["statusCode"] == 422 and json.loads(out["body"])["error"]["code"] == "webhook_rejected"


def test_a_run_failed_webhook_from_the_events_stream_carries_the_error_without_its_traceback() -> None:
    """AWS: the stream dispatcher reads the run_failed event, whose data is the run's error; the webhook gets
    that error as the API shows it (message, node, fix) — not the traceback or the Lambda cause's stack."""
    from stepwise.api.models import Webhook
    from stepwise.api.webhooks_aws import dispatch
    from stepwise.state.events import encode

    cause = {"errorType": "Runtime.ExitError", "errorMessage": "out of memory", "stackTrace": ['  File "/var/task/x.py", line 1']}
    error = {"error": "Runtime.ExitError", "cause": json.dumps(cause), "node": "write", "message": "out of memory", "traceback": "Tb"}
    image = {"type": {"S": "run_failed"}, "run_id": {"S": "run-1"}, "seq": {"N": "7"}, "data": {"S": encode(error)}}
    hook = Webhook(url="https://example.com/hook", secret="s" * 32, events=["failed"])
    [job] = dispatch([{"eventName": "INSERT", "dynamodb": {"NewImage": image}}], lambda run_id: (hook, {"run_id": run_id}))
    sent = job.data["error"]
    assert sent["node"] == "write" and sent["message"] == "out of memory" and sent["error"] == "Runtime.ExitError"
    assert "traceback" not in sent and json.loads(sent["cause"]) == {"errorType": "Runtime.ExitError", "errorMessage": "out of memory"}
