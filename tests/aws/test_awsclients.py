"""Endpoint overrides: the AWS adapters talk to whatever endpoint the environment names.

No in-process mock here: a real moto server listens on a free loopback port, so a call only succeeds
if the client really went to the overridden endpoint (``AWS_ENDPOINT_URL``, or LocalStack's edge via
``localstack-client`` when ``STEPWISE_LOCALSTACK=1``).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from tests.support.aws import aws_settings, create_state_resources

from stepwise import awsclients
from stepwise.state.dynamodb import DynamoEventStore, DynamoRunStore
from stepwise.state.events import NODE_UPDATE, Event
from stepwise.state.ports import RunRecord
from stepwise.state.s3 import S3SnapshotStore


def test_endpoint_for_prefers_the_service_specific_variable() -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:2"}
    assert awsclients.endpoint_for("dynamodb", env) == "http://127.0.0.1:2"
    assert awsclients.endpoint_for("s3", env) == "http://127.0.0.1:1"
    assert awsclients.endpoint_for("s3", {}) is None
    client = awsclients.client("stepfunctions", environ=env | {"AWS_REGION": "eu-west-1"})
    assert client.meta.endpoint_url == "http://127.0.0.1:1" and client.meta.region_name == "eu-west-1"
    assert client.meta.config.retries["mode"] == "standard"


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield f"{host}:{port}"
    finally:
        # moto's backends are process-global: reset them so the next server (or mock) starts empty
        urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=10).close()
        server.stop()


@pytest.mark.parametrize("mode", ["AWS_ENDPOINT_URL", "STEPWISE_LOCALSTACK"])
def test_adapters_reach_the_overridden_endpoint(mode: str, moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if mode == "AWS_ENDPOINT_URL":
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{moto_server}")
        monkeypatch.delenv("STEPWISE_LOCALSTACK", raising=False)
    else:
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        monkeypatch.setenv("STEPWISE_LOCALSTACK", "1")
        monkeypatch.setenv("LOCALSTACK_HOST", moto_server)
    settings = aws_settings()
    dynamodb = awsclients.client("dynamodb")
    assert dynamodb.meta.endpoint_url == f"http://{moto_server}"
    create_state_resources(settings, dynamodb=dynamodb, s3=awsclients.client("s3"))

    events = DynamoEventStore(settings.events_table, bucket=settings.bucket, offload_bytes=100)
    events.append("t", 0, [Event(type=NODE_UPDATE, run_id="r", node="n", key="k", data={"update": {"big": "x" * 500}})])
    assert events.by_key("t", "k").data["update"] == {"big": "x" * 500}  # type: ignore[union-attr]
    snapshots = S3SnapshotStore(settings.bucket)
    snapshots.put("t", 1, {"big": "x" * 500})
    assert snapshots.latest("t") == (1, {"big": "x" * 500})
    runs = DynamoRunStore(settings.runs_table)
    runs.put(RunRecord(run_id="r", thread_id="t", graph_ref="g@1"))
    assert runs.update("r", status="succeeded").status == "succeeded"
    assert sorted(dynamodb.list_tables()["TableNames"]) == sorted([settings.events_table, settings.runs_table, settings.registry_table])
