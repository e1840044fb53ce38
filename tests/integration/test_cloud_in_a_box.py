"""Cloud in a box: the AWS deployment end to end, with moto as the AWS stand-in.

Tables and bucket are created from the documented key schemas; the engine is assembled exactly as the
Lambdas assemble it (``Settings.from_env`` → ``build_client``, backend ``aws``); registering a graph
creates its state machine in moto's Step Functions; moto's interpreter runs the compiled ASL and its
Lambda invokes reach the real ``functions/step/handler.py`` in-process; events land in moto's DynamoDB.
The API tests drive the same flow through the real ``functions/api/handler.py``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from tests.support.aws import (
    TEST_REGION,
    aws_settings,
    create_api_table,
    create_state_resources,
    serialized_dynamodb_transactions,
    settings_env,
)
from tests.support.moto_sfn import LambdaRouter, moto_stepfunctions, wait_execution, wait_for

from stepwise import awsclients
from stepwise.api.keys import create_key
from stepwise.client import Stepwise
from stepwise.config import Settings, build_client
from stepwise.executors.stepfunctions import StepFunctionsExecutor
from stepwise.graph.loader import load_file, load_text
from stepwise.state.dynamodb import DynamoEventStore
from stepwise.state.events import NODE_UPDATE

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "statemachines" / "examples"
API_TABLE = "test-api"
WAIT = 30  # seconds the API may wait for a run to leave `running` (moto runs these in well under a second)


def load_module(path: Path) -> ModuleType:
    """Import a Lambda handler file as a fresh module: a new container, with nothing cached."""
    name = f"lambda_{path.parent.name}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Cloud:
    settings: Settings
    client: Stepwise  # the engine as the API Lambda builds it
    router: LambdaRouter
    sfn: Any
    dynamodb: Any
    api: ModuleType
    key: str

    def call(self, method: str, path: str, body: Any = None, *, key: str | None = None) -> tuple[int, dict[str, Any]]:
        """One API Gateway (REST proxy) request through the real ``api`` Lambda handler."""
        headers = {"content-type": "application/json", "x-api-key": key or self.key}
        event = {
            "resource": path,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": None,
            "requestContext": {"requestId": str(uuid.uuid4()), "stage": "prod"},
            "body": json.dumps(body) if body is not None else None,
            "isBase64Encoded": False,
        }
        context = SimpleNamespace(
            function_name="test-api",
            memory_limit_in_mb=512,
            aws_request_id=str(uuid.uuid4()),
            invoked_function_arn=f"arn:aws:lambda:{TEST_REGION}:123456789012:function:test-api",
        )
        out = self.api.handler(event, context)
        return out["statusCode"], json.loads(out["body"])

    def wait_run(self, run_id: str, *statuses: str) -> Any:
        def reached() -> Any:
            run = self.client.services.runs.get(run_id)
            return run if run is not None and run.status in statuses else None

        return wait_for(reached, f"run {run_id} to reach {statuses}")

    def stored_events(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's event items, straight from the DynamoDB table."""
        return self.dynamodb.query(
            TableName=self.settings.events_table,
            KeyConditionExpression="thread_id = :t AND seq > :z",
            ExpressionAttributeValues={":t": {"S": thread_id}, ":z": {"N": "0"}},
            ConsistentRead=True,
        )["Items"]


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    settings = aws_settings()
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SFN", "STEPWISE_LOCALSTACK"):
        monkeypatch.delenv(name, raising=False)
    env = settings_env(settings) | {
        "AWS_DEFAULT_REGION": TEST_REGION,
        "STEPWISE_API_TABLE": API_TABLE,
        "STEPWISE_API_MAX_WAIT_SECONDS": str(WAIT),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Stepwise",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with serialized_dynamodb_transactions(), moto_stepfunctions() as router:
        dynamodb = awsclients.client("dynamodb")
        create_state_resources(settings, dynamodb=dynamodb, s3=awsclients.client("s3"))
        create_api_table(API_TABLE, dynamodb=dynamodb)
        step_lambda = load_module(ROOT / "functions" / "step" / "handler.py")
        router.route(settings.step_function_arn.rsplit(":", 1)[1], step_lambda.handler)
        api = load_module(ROOT / "functions" / "api" / "handler.py")
        _, key = create_key(api.app.store, "acme")
        yield Cloud(settings, api.app.client, router, awsclients.client("stepfunctions"), dynamodb, api, key)


def local_run(example: str, input_: dict[str, Any]) -> tuple[dict[str, Any], Counter[str | None]]:
    local = Stepwise.in_memory()
    result = local.run(load_file(EXAMPLES / f"{example}.yaml"), input_)
    assert result.status == "succeeded"
    return result.state, Counter(e.node for e in local.history(result.thread_id) if e.type == NODE_UPDATE)


# -- the engine on AWS, as the Lambdas build it ----------------------------------------------------
def test_build_client_assembles_the_aws_backend(cloud: Cloud) -> None:
    client = build_client(Settings.from_env())
    assert isinstance(client.executor, StepFunctionsExecutor)
    assert isinstance(client.services.events, DynamoEventStore) and client.services.events.blobs is not None


def test_register_deploys_a_state_machine_and_a_run_executes_in_step_functions(cloud: Cloud) -> None:
    spec = load_file(EXAMPLES / "multi_agent.yaml")
    question = {"question": "How should our payment client retry failed calls?"}
    ref = cloud.client.register(spec)

    executor = cloud.client.executor
    assert isinstance(executor, StepFunctionsExecutor)
    alias = cloud.sfn.describe_state_machine_alias(stateMachineAliasArn=executor.alias_arn(ref))
    version = alias["routingConfiguration"][0]["stateMachineVersionArn"]
    deployed = cloud.sfn.describe_state_machine(stateMachineArn=version)
    assert deployed["name"] == "test-multi-agent" and deployed["description"] == ref
    definition = json.loads(deployed["definition"])
    stored = cloud.client.services.registry.get(ref)
    assert stored is not None and stored[1] == definition  # the registry holds exactly what deployed
    functions = {s["Parameters"]["FunctionName"] for s in definition["States"].values() if s["Type"] == "Task"}
    assert functions == {cloud.settings.step_function_arn}

    started = cloud.client.run(spec, question)
    assert started.status == "running"  # asynchronous: Step Functions runs it
    run = cloud.wait_run(started.run_id, "succeeded", "failed")
    assert run.status == "succeeded", run.error
    assert run.execution_arn == executor.execution_arn(ref, run.run_id)
    assert wait_execution(cloud.sfn, run.execution_arn)["status"] == "SUCCEEDED"

    expected_state, expected_visits = local_run("multi_agent", question)
    assert cloud.client.state(run.thread_id)[1] == expected_state
    items = cloud.stored_events(run.thread_id)
    assert Counter(i["node"]["S"] for i in items if i["type"]["S"] == NODE_UPDATE) == expected_visits
    assert [int(i["seq"]["N"]) for i in items] == list(range(1, len(items) + 1))
    # every Task invoked the step Lambda, through the Lambda invoke path
    assert {name for name, _ in cloud.router.invocations} == {"test-step"}
    assert len(cloud.router.invocations) >= sum(expected_visits.values())


def test_human_approval_waits_for_its_task_token_and_resumes(cloud: Cloud) -> None:
    spec = load_file(EXAMPLES / "human_approval.yaml")
    started = cloud.client.run(spec, {"amount": 99})
    run = cloud.wait_run(started.run_id, "waiting", "failed")
    assert run.status == "waiting" and run.waiting["node"] == "approve"
    execution = cloud.sfn.describe_execution(executionArn=run.execution_arn)
    assert execution["status"] == "RUNNING"  # parked on .waitForTaskToken, not finished

    resumed = cloud.client.resume(run.run_id, {"decision": "revise"})
    assert resumed.status in ("running", "waiting")

    def asked_again() -> Any:
        r = cloud.client.services.runs.get(run.run_id)
        return r if r is not None and r.status == "waiting" and r.waiting["token"] != run.waiting["token"] else None

    again = wait_for(asked_again, "the second approval request")
    cloud.client.resume(again.run_id, {"decision": "yes"})
    done = cloud.wait_run(run.run_id, "succeeded", "failed")
    assert done.status == "succeeded" and done.waiting is None
    assert wait_execution(cloud.sfn, run.execution_arn)["status"] == "SUCCEEDED"
    state = cloud.client.state(run.thread_id)[1]
    assert state["published"] is True and state["revision"] == 2 and state["outcome"].startswith("sent: Refund of 99 EUR")


def test_a_failing_node_fails_the_execution_with_the_node_error(cloud: Cloud) -> None:
    spec = load_text(
        """
name: failing
graph:
  nodes:
    explode: {kind: function, fn: "statemachines.examples.nodes:fail_on_purpose"}
  entry: explode
""",
        source="failing.yaml",
    )
    started = cloud.client.run(spec, {"ticket": "T-1"})
    run = cloud.wait_run(started.run_id, "failed", "succeeded")
    assert run.status == "failed"
    assert run.error["node"] == "explode" and run.error["error"] == "Stepwise.NodeError"  # the handler's errorType
    assert "cannot process ticket 'T-1'" in run.error["message"] and "fail_on_purpose" in run.error["traceback"]
    cause = json.loads(run.error["cause"])
    assert cause["errorType"] == "Stepwise.NodeError"
    execution = wait_execution(cloud.sfn, run.execution_arn)
    assert execution["status"] == "FAILED" and execution["error"] == "Stepwise.RunFailed"


def test_an_older_version_runs_its_own_definition(cloud: Cloud) -> None:
    v1 = load_file(EXAMPLES / "sequential.yaml")
    v2 = v1.model_copy(deep=True)
    v2.state["log"] = "replace"  # a different version of the same graph
    assert v1.ref != v2.ref
    cloud.client.register(v1)
    cloud.client.register(v2)  # `live` now runs v2
    run = cloud.wait_run(cloud.client.run(v1, {"text": "a b"}).run_id, "succeeded", "failed")
    assert run.status == "succeeded"
    assert cloud.client.state(run.thread_id)[1]["log"] == ["fetch", "clean", "summarize"]  # v1's append reducer
    described = cloud.sfn.describe_execution(executionArn=run.execution_arn)
    assert described["stateMachineArn"].endswith(":1")  # v1's published version, not the alias


# -- the same, through the HTTPS API's Lambda handler -------------------------------------------------
def test_api_registers_executes_and_reads_back_a_run(cloud: Cloud) -> None:
    text = (EXAMPLES / "parallel.yaml").read_text()
    status, agent = cloud.call("POST", "/agents", {"yaml": text})
    assert status == 201, agent
    names = [m["name"] for m in cloud.sfn.list_state_machines()["stateMachines"]]
    assert names == ["test-parallel-research"]

    status, run = cloud.call("POST", "/agents/parallel-research/execute", {"input": {"query": "sagas"}, "wait_seconds": WAIT})
    assert status == 200 and run["status"] == "succeeded", run
    expected_state, expected_visits = local_run("parallel", {"query": "sagas"})
    status, fetched = cloud.call("GET", f"/runs/{run['run_id']}")
    assert status == 200 and fetched["state"] == expected_state and fetched["status"] == "succeeded"

    status, page = cloud.call("GET", f"/runs/{run['run_id']}/events")
    assert status == 200
    assert Counter(e["node"] for e in page["events"] if e["type"] == NODE_UPDATE) == expected_visits
    assert len(cloud.stored_events(run["thread_id"])) == len(page["events"])  # read from moto's DynamoDB
    _, stranger = create_key(cloud.api.app.store, "other-tenant")
    assert cloud.call("GET", f"/runs/{run['run_id']}", key=stranger)[0] == 404


def test_api_resumes_a_human_node(cloud: Cloud) -> None:
    status, _ = cloud.call("POST", "/agents", {"yaml": (EXAMPLES / "human_approval.yaml").read_text()})
    assert status == 201
    status, run = cloud.call("POST", "/agents/human-approval/execute", {"input": {"amount": 15}, "wait_seconds": WAIT})
    assert status == 200 and run["status"] == "waiting" and run["waiting"]["node"] == "approve", run
    assert "token" not in json.dumps(run["waiting"])

    answer = {"input": {"decision": "no", "comment": "wrong order"}, "wait_seconds": WAIT}
    status, done = cloud.call("POST", f"/runs/{run['run_id']}/resume", answer)
    assert status == 200 and done["status"] == "succeeded", done
    assert done["state"]["outcome"] == "rejected: wrong order" and done["state"]["published"] is False
    record = cloud.client.services.runs.get(run["run_id"])
    assert record is not None and wait_execution(cloud.sfn, str(record.execution_arn))["status"] == "SUCCEEDED"
