"""The LocalStack environment blocks of docs/deploy.md, run as written against a stand-in edge port.

Each ```` ```bash env:NAME ```` block of the "Run against LocalStack" section is parsed (its ``export``
lines, nothing else), ``127.0.0.1:4566`` is replaced by a moto server on a free loopback port (moto
standing in for LocalStack's edge port: this machine has no Docker), and a fresh interpreter with exactly
that environment (no AWS variables inherited) then:

- uses every AWS service Stepwise calls through its own adapters: DynamoDB (event store), S3 (snapshot
  store), Step Functions (the executor deploys a state machine), Secrets Manager (an LLM API key);
- builds plain boto3 clients for the same services and checks botocore itself resolves the override
  (the block is valid for the AWS CLI and ``cdklocal`` too).

A call that did not go to the stand-in would go to real AWS, which this machine cannot reach: the test fails.
``make localstack-check`` runs this file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
EDGE = "127.0.0.1:4566"

CHECK = r"""
import json, os
import boto3
from stepwise import awsclients
from stepwise.executors.stepfunctions import StepFunctionsExecutor
from stepwise.config import Settings
from stepwise.llm.secrets import api_key
from stepwise.runtime.services import Services
from stepwise.state.dynamodb import DynamoEventStore
from stepwise.state.events import NODE_UPDATE, Event
from stepwise.state.memory import MemoryRegistry, MemoryRunStore, MemorySnapshotStore
from stepwise.state.s3 import S3SnapshotStore

edge = os.environ["EXPECTED_ENDPOINT"]
settings = Settings(backend="aws", events_table="ls-events", bucket="ls-state", name_prefix="ls")
ddb, s3 = awsclients.client("dynamodb"), awsclients.client("s3")
ddb.create_table(
    TableName="ls-events",
    KeySchema=[{"AttributeName": "thread_id", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}],
    AttributeDefinitions=[{"AttributeName": "thread_id", "AttributeType": "S"}, {"AttributeName": "seq", "AttributeType": "N"}],
    BillingMode="PAY_PER_REQUEST",
)
s3.create_bucket(Bucket="ls-state")
events = DynamoEventStore("ls-events", bucket="ls-state")
events.append("t", 0, [Event(type=NODE_UPDATE, run_id="r", node="n", key="k", data={"update": {"x": 1}})])
snapshots = S3SnapshotStore("ls-state")
snapshots.put("t", 1, {"x": 1})
services = Services(events=events, snapshots=MemorySnapshotStore(), runs=MemoryRunStore(), registry=MemoryRegistry())
executor = StepFunctionsExecutor(services, settings)  # its Step Functions client comes from awsclients
executor.sfn.create_state_machine(
    name=executor.machine_name("g@1"),
    definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}),
    roleArn=settings.state_machine_role_arn,
)
awsclients.client("secretsmanager").create_secret(Name="ls-openai", SecretString=json.dumps({"api_key": "sk-from-edge"}))
plain = {name: boto3.client(name).meta.endpoint_url for name in ("dynamodb", "s3", "stepfunctions", "secretsmanager")}
print(json.dumps({
    "event": events.by_key("t", "k").data["update"],
    "snapshot": snapshots.latest("t"),
    "machines": [m["name"] for m in awsclients.client("stepfunctions").list_state_machines()["stateMachines"]],
    "secret": api_key("OPENAI_API_KEY", {"STEPWISE_OPENAI_API_KEY_SECRET": "ls-openai"}),
    "adapters": sorted({awsclients.client(n).meta.endpoint_url for n in ("dynamodb", "s3", "stepfunctions", "secretsmanager")}),
    "plain_boto3": plain,
}))
"""


def documented_blocks() -> dict[str, dict[str, str]]:
    """``env:NAME`` -> the variables its ``export`` lines set, from the LocalStack section of docs/deploy.md."""
    section = DOC.read_text().split("## Run against LocalStack", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"```bash env:([\w-]+)\n(.*?)```", section, flags=re.S):
        env: dict[str, str] = {}
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "export":
                env.update(word.split("=", 1) for word in words[1:])  # type: ignore[misc]
        blocks[name] = env
    return blocks


BLOCKS = documented_blocks()


def test_the_doc_documents_the_three_ways_and_the_right_package() -> None:
    assert set(BLOCKS) == {"edge", "per-service", "localstack-client"}
    section = DOC.read_text().split("## Run against LocalStack", 1)[1]
    assert "npm install --no-save aws-cdk-local" in section  # the npm package that provides `cdklocal`
    assert "AWS_ENDPOINT_URL_STEPFUNCTIONS" not in section  # botocore's name is AWS_ENDPOINT_URL_SFN


@pytest.fixture
def edge() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"{host}:{port}"
    finally:
        urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=30).close()
        server.stop()


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_each_documented_environment_reaches_the_edge_port(block: str, edge: str) -> None:
    env = {k: v.replace(EDGE, edge) for k, v in BLOCKS[block].items()}
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STEPWISE_", "LOCALSTACK"))}
    env = keep | env | {"EXPECTED_ENDPOINT": f"http://{edge}", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    proc = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["event"] == {"x": 1} and result["snapshot"] == [1, {"x": 1}]
    assert result["machines"] == ["ls-g"] and result["secret"] == "sk-from-edge"
    assert result["adapters"] == [f"http://{edge}"]
    if block != "localstack-client":  # botocore reads AWS_ENDPOINT_URL[_<ID>] itself; localstack-client is ours alone
        assert set(result["plain_boto3"].values()) == {f"http://{edge}"}
