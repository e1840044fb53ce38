"""The synthesized StepwiseStack: the resources and properties the design asks for, least privilege,
cdk-nag (AwsSolutions) clean with reasons, cfn-lint clean."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match
from cfnlint.api import lint
from infra.stacks.compute import builtin_workflows
from tests.infra.conftest import Synth, synthesize

from stepwise.asl.compiler import compile_graph
from stepwise.config import Settings
from stepwise.graph.loader import load_file

ROOT = Path(__file__).resolve().parents[2]


#: functions outside the VPC with their own small environment (their own test files)
OUTSIDE_VPC = {f"stepwise-dev-{name}" for name in ("sandbox", "channels", "authorizer", "webhooks")}


def only(resources: dict[str, dict[str, Any]], **where: Any) -> tuple[str, dict[str, Any]]:
    found = [(k, v) for k, v in resources.items() if all(v["Properties"].get(p) == val for p, val in where.items())]
    assert len(found) == 1, (where, list(resources))
    return found[0]


def ref_of(synth: Synth, kind: str, fragment: str) -> str:
    matches = [k for k in synth.resources(kind) if fragment in k]
    assert len(matches) == 1, (kind, fragment, matches)
    return matches[0]


# -- verdicts ---------------------------------------------------------------------------------------
def test_cdk_nag_reports_no_unacknowledged_finding(synth: Synth) -> None:
    assert synth.error is None, synth.error
    for plugin in (synth.report or {}).get("pluginReports", []):
        assert plugin["violations"] == [], json.dumps(plugin["violations"], indent=1)[:3000]


def test_every_acknowledgement_has_a_reason(synth: Synth) -> None:
    import aws_cdk as cdk

    acknowledged = []
    for construct in synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                acknowledged.extend((rule, reason) for rule, reason in entry.data.items() if "AwsSolutions-" in rule)
    assert len(acknowledged) >= 10
    for rule, reason in acknowledged:
        assert len(reason) >= 30, (rule, reason)


def test_cfn_lint_finds_no_errors(synth: Synth) -> None:
    matches = lint(json.dumps(synth.raw), regions=["eu-west-1"])
    errors = [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


# -- state ------------------------------------------------------------------------------------------
def test_dynamodb_tables_match_the_adapters(synth: Synth) -> None:
    tables = synth.resources("AWS::DynamoDB::Table")
    assert len(tables) == 4
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"]["SSEEnabled"] is True
    _, events = only(tables, KeySchema=[{"AttributeName": "thread_id", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}])
    assert {"AttributeName": "seq", "AttributeType": "N"} in events["Properties"]["AttributeDefinitions"]
    assert events["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert events["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    _, runs = only(tables, KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}])
    index, by_tenant, active = runs["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "thread_id-created_at"
    assert index["KeySchema"] == [{"AttributeName": "thread_id", "KeyType": "HASH"}, {"AttributeName": "created_at", "KeyType": "RANGE"}]
    assert by_tenant["IndexName"] == "tenant-created_at"  # GET /runs queries it (DynamoRunStore.query)
    assert by_tenant["KeySchema"] == [{"AttributeName": "tenant", "KeyType": "HASH"}, {"AttributeName": "created_at", "KeyType": "RANGE"}]
    assert {"AttributeName": "created_at", "AttributeType": "N"} in runs["Properties"]["AttributeDefinitions"]
    assert active["IndexName"] == "active-created_at"  # sparse: recovery and the queued sweep (DynamoRunStore.in_flight)
    assert active["KeySchema"] == [{"AttributeName": "active", "KeyType": "HASH"}, {"AttributeName": "created_at", "KeyType": "RANGE"}]
    assert active["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert {"AttributeName": "active", "AttributeType": "S"} in runs["Properties"]["AttributeDefinitions"]
    only(tables, KeySchema=[{"AttributeName": "ref", "KeyType": "HASH"}])
    only(tables, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])


def test_state_bucket_is_encrypted_versioned_private_and_tls_only(synth: Synth) -> None:
    bucket_id = synth.stack.get_logical_id(synth.stack.storage.bucket.node.default_child)  # type: ignore[arg-type]
    props = synth.raw["Resources"][bucket_id]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }  # fmt: skip
    assert "LoggingConfiguration" in props
    assert synth.raw["Resources"][bucket_id]["DeletionPolicy"] == "Retain"
    synth.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            },
        },
    )


# -- functions --------------------------------------------------------------------------------------
def test_functions_share_one_layer_run_python_312_with_tracing_in_the_vpc(synth: Synth) -> None:
    functions = synth.resources("AWS::Lambda::Function")
    names = {f["Properties"]["FunctionName"] for f in functions.values()}
    assert names == {
        f"stepwise-dev-{name}" for name in ("api", "step", "memory", "sandbox", "channels", "trigger", "authorizer", "webhooks", "recover")
    }
    functions = {k: f for k, f in functions.items() if f["Properties"]["FunctionName"] not in OUTSIDE_VPC}
    (layer_id,) = synth.resources("AWS::Lambda::LayerVersion")
    for fn in functions.values():
        props = fn["Properties"]
        assert props["Runtime"] == "python3.12" and props["Handler"] == "handler.handler"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Layers"] == [{"Ref": layer_id}]
        assert props["VpcConfig"]["SubnetIds"] and props["VpcConfig"]["SecurityGroupIds"]


#: The core settings (stepwise.settings.Settings) the stack must set on every function in the VPC, and why: their
#: defaults are local placeholders that are wrong on AWS. The other fields keep their defaults there on purpose
#: (home, snapshot_every, local_concurrency, run_lease_seconds, park_after_seconds: the local engine's;
#: continue_after_events: the step's continuation threshold, the same on AWS), so a new local setting does not
#: break this test. A new setting AWS needs set goes here.
AWS_SETTINGS = {
    "backend": "must be `aws`; the default is the embedded engine",
    "events_table": "the stack's table names; the defaults are unprefixed local names",
    "runs_table": "the stack's table names; the defaults are unprefixed local names",
    "registry_table": "the stack's table names; the defaults are unprefixed local names",
    "bucket": "the stack's state bucket; the default is a local name",
    "step_function_arn": "the step Lambda compiled state machines invoke; the default names account 000000000000",
    "state_machine_role_arn": "the role registered state machines run as; the default names account 000000000000",
    "name_prefix": "names the state machines and aliases the registry creates per stage",
}


def test_function_environment_matches_settings(synth: Synth) -> None:
    missing = set(AWS_SETTINGS) - set(Settings.model_fields)
    assert not missing, f"AWS_SETTINGS names settings that no longer exist: {missing}; update the list"
    expected = {f"STEPWISE_{name.upper()}": name for name in AWS_SETTINGS}
    for fn in synth.resources("AWS::Lambda::Function").values():
        if fn["Properties"]["FunctionName"] in OUTSIDE_VPC:
            continue  # their own small environments: tests/infra/test_sandbox_stack.py, test_channels_stack.py, test_auth_stack.py
        env = fn["Properties"]["Environment"]["Variables"]
        assert set(expected) <= set(env), set(expected) - set(env)
        assert all(env[var] != Settings.model_fields[name].default for var, name in expected.items())
        assert env["STEPWISE_BACKEND"] == "aws" and env["STEPWISE_NAME_PREFIX"] == "stepwise-dev"
        assert env["STEPWISE_STEP_FUNCTION_ARN"] == "arn:aws:lambda:eu-west-1:123456789012:function:stepwise-dev-step"
        assert env["STEPWISE_API_TABLE"] == {"Ref": ref_of(synth, "AWS::DynamoDB::Table", "StorageApi")}
        assert env["STEPWISE_VALKEY_URL"]["Fn::Join"][1][0] == "rediss://"
        assert {
            "STEPWISE_OPENAI_API_KEY_SECRET",
            "STEPWISE_ANTHROPIC_API_KEY_SECRET",
            "STEPWISE_EVENT_BUS",
            "STEPWISE_OPENSEARCH_ENDPOINT",
        } <= set(env)
    values = {k: "x" for k in expected} | {"STEPWISE_BACKEND": "aws"}
    assert Settings.from_env(values).backend == "aws"  # every variable the stack sets is one Settings reads


def _statements(synth: Synth, fragment: str) -> list[dict[str, Any]]:
    out = []
    for key, policy in synth.resources("AWS::IAM::Policy").items():
        if fragment in key:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return actions if isinstance(actions, list) else [actions]


def test_iam_is_least_privilege(synth: Synth) -> None:
    # actions without resource-level permissions; events:ListRules/scheduler:ListSchedules find dropped triggers (api)
    wildcard_ok = re.compile(
        r"^(xray:|states:SendTask|dynamodb:ListStreams$|events:ListRules$|scheduler:ListSchedules$|logs:(CreateLogDelivery|GetLogDelivery|UpdateLogDelivery|DeleteLogDelivery|ListLogDeliveries|PutResourcePolicy|DescribeResourcePolicies|DescribeLogGroups))"
    )
    for policy in synth.resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            for action in _actions(statement):
                assert not action.endswith(":*") and action != "*", action
                if statement["Resource"] == "*":
                    assert wildcard_ok.match(action), action
    api = _statements(synth, "ComputeApiServiceRole")
    passrole = [s for s in api if "iam:PassRole" in _actions(s)]
    assert passrole and passrole[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "states.amazonaws.com"}}
    step = _statements(synth, "ComputeStepServiceRole")
    from infra.stacks.compute import START_ACTIONS

    # the step only starts executions (a thread's queued run, when the run before it ends): no stop, no task tokens, no deploys
    assert {a for s in step for a in _actions(s) if a.startswith("states:")} == set(START_ACTIONS)
    assert any("aoss:APIAccessAll" in _actions(s) for s in step)
    assert not any("aoss:APIAccessAll" in _actions(s) for s in api)


def test_state_machine_role_invokes_only_the_step(synth: Synth) -> None:
    role_id = ref_of(synth, "AWS::IAM::Role", "ComputeStateMachineRole")
    trust = synth.raw["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "states.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    invoke = [s for s in _statements(synth, "ComputeStateMachineRole") if "lambda:InvokeFunction" in _actions(s)]
    step_id = ref_of(synth, "AWS::Lambda::Function", "ComputeStep")
    resources = [r for s in invoke for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
    assert {"Fn::GetAtt": [step_id, "Arn"]} in resources
    assert all(step_id in json.dumps(r) for r in resources)


def _resolve(value: Any, step_id: str) -> str:
    """The definition string with the step's ARN (a GetAtt in the template) replaced by a marker."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join("STEP_ARN" if p == {"Fn::GetAtt": [step_id, "Arn"]} else p for p in parts)


def test_builtin_workflows_are_compiled_by_the_engines_compiler(synth: Synth) -> None:
    machines = synth.resources("AWS::StepFunctions::StateMachine")
    files = builtin_workflows()
    assert len(machines) == len(files) >= 8
    step_id = ref_of(synth, "AWS::Lambda::Function", "ComputeStep")
    by_name = {m["Properties"]["StateMachineName"]: m["Properties"] for m in machines.values()}
    for path in files:
        spec = load_file(path)
        props = by_name[f"stepwise-dev-builtin-{spec.name}"]
        deployed = json.loads(_resolve(props["DefinitionString"], step_id))
        assert deployed == compile_graph(spec, step_arn="STEP_ARN"), path
        assert props["TracingConfiguration"] == {"Enabled": True}
        assert props["LoggingConfiguration"]["Level"] == "ALL"
        assert props["RoleArn"] == {"Fn::GetAtt": [ref_of(synth, "AWS::IAM::Role", "ComputeStateMachineRole"), "Arn"]}


# -- edges ------------------------------------------------------------------------------------------
def test_rest_api_proxies_to_the_api_function_with_access_logs(synth: Synth) -> None:
    api_id = ref_of(synth, "AWS::Lambda::Function", "ComputeApi")
    synth.template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "ANY",
            "Integration": Match.object_like(
                {"Type": "AWS_PROXY", "Uri": Match.serialized_json(Match.any_value()) if False else Match.any_value()}
            ),
        },
    )
    methods = synth.resources("AWS::ApiGateway::Method").values()
    assert all(api_id in json.dumps(m["Properties"]["Integration"]["Uri"]) for m in methods)
    (stage,) = synth.resources("AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["StageName"] == "dev" and stage["Properties"]["TracingEnabled"] is True
    assert "DestinationArn" in stage["Properties"]["AccessLogSetting"] and "requestId" in stage["Properties"]["AccessLogSetting"]["Format"]
    assert stage["Properties"]["MethodSettings"][0]["DataTraceEnabled"] is False


def test_websocket_api_has_thin_routes_and_access_logs(synth: Synth) -> None:
    (ws,) = synth.resources("AWS::ApiGatewayV2::Api").values()
    assert ws["Properties"]["ProtocolType"] == "WEBSOCKET"
    routes = {r["Properties"]["RouteKey"] for r in synth.resources("AWS::ApiGatewayV2::Route").values()}
    assert routes == {"$connect", "$disconnect", "$default"}
    (stage,) = synth.resources("AWS::ApiGatewayV2::Stage").values()
    assert "$context.connectionId" in stage["Properties"]["AccessLogSettings"]["Format"]


def test_valkey_and_opensearch_are_reachable_only_from_the_functions(synth: Synth) -> None:
    (cache,) = synth.resources("AWS::ElastiCache::ServerlessCache").values()
    assert cache["Properties"]["Engine"] == "valkey" and len(cache["Properties"]["SubnetIds"]) == 2
    functions_sg = ref_of(synth, "AWS::EC2::SecurityGroup", "FunctionsSg")
    ingress = synth.resources("AWS::EC2::SecurityGroupIngress").values()
    ports = {(i["Properties"]["FromPort"], i["Properties"]["ToPort"]) for i in ingress}
    assert ports == {(6379, 6380), (443, 443)}
    assert all(i["Properties"]["SourceSecurityGroupId"] == {"Fn::GetAtt": [functions_sg, "GroupId"]} for i in ingress)
    (collection,) = synth.resources("AWS::OpenSearchServerless::Collection").values()
    assert collection["Properties"]["Type"] == "VECTORSEARCH" and collection["Properties"]["StandbyReplicas"] == "DISABLED"
    policies = {
        p["Properties"]["Type"]: p["Properties"]["Policy"] for p in synth.resources("AWS::OpenSearchServerless::SecurityPolicy").values()
    }
    assert set(policies) == {"encryption", "network"}
    assert '"AllowFromPublic":false' in json.dumps(policies["network"]).replace("\\", "").replace(" ", "")
    (access,) = synth.resources("AWS::OpenSearchServerless::AccessPolicy").values()
    assert ref_of(synth, "AWS::IAM::Role", "ComputeStepServiceRole") in json.dumps(access["Properties"]["Policy"])


def test_event_bus_secrets_and_outputs(synth: Synth) -> None:
    (bus,) = synth.resources("AWS::Events::EventBus").values()
    assert bus["Properties"]["Name"] == "stepwise-dev-bus"
    assert len(synth.resources("AWS::SecretsManager::Secret")) == 4  # provider keys, capability key, cache user
    outputs = set(synth.raw["Outputs"])
    assert {"ApiUrl", "WebSocketUrl", "StepFunctionArn", "StateMachineRoleArn", "ApiTable", "CreateApiKeyCommand"} <= outputs


def test_vpc_has_private_egress_gateway_endpoints_and_flow_logs(synth: Synth) -> None:
    assert len(synth.resources("AWS::EC2::NatGateway")) == 1
    endpoints = synth.resources("AWS::EC2::VPCEndpoint").values()
    services = sorted(json.dumps(e["Properties"]["ServiceName"]) for e in endpoints)
    assert any("dynamodb" in s for s in services) and any(".s3" in s for s in services)
    (flow,) = synth.resources("AWS::EC2::FlowLog").values()
    assert flow["Properties"]["LogDestinationType"] == "s3"


@pytest.mark.slow
def test_context_sets_prefix_stage_and_production_defaults(tmp_path: Path) -> None:
    context = {"stepwise:prefix": "acme", "stepwise:stage": "prod", "stepwise:vectorStore": "false", "stepwise:natGateways": "0"}
    prod = synthesize(tmp_path, **context)
    assert prod.error is None, prod.error  # also nag-clean without a fixed region/account
    assert prod.stack.stack_name == "acme-prod"
    names = {f["Properties"]["FunctionName"] for f in prod.resources("AWS::Lambda::Function").values()}
    assert names == {f"acme-prod-{n}" for n in ("api", "step", "sandbox", "channels", "trigger", "authorizer", "webhooks", "recover")}
    assert all(t["Properties"]["DeletionProtectionEnabled"] is True for t in prod.resources("AWS::DynamoDB::Table").values())
    assert all(t["DeletionPolicy"] == "Retain" for t in prod.resources("AWS::DynamoDB::Table").values())
    assert prod.resources("AWS::OpenSearchServerless::Collection") == {}
    assert prod.resources("AWS::EC2::NatGateway") == {}  # no NAT: isolated subnets, AWS reached through endpoints
    env = next(f for f in prod.resources("AWS::Lambda::Function").values() if f["Properties"]["FunctionName"] == "acme-prod-api")[
        "Properties"
    ]["Environment"]["Variables"]
    assert "STEPWISE_OPENSEARCH_ENDPOINT" not in env and env["STEPWISE_NAME_PREFIX"] == "acme-prod"
    assert "Fn::Join" in json.dumps(env["STEPWISE_STEP_FUNCTION_ARN"])  # env-agnostic: region/account are pseudo parameters


def test_memory_uses_the_collection_with_least_privilege_and_consolidates_on_a_schedule(synth: Synth) -> None:
    (access,) = synth.resources("AWS::OpenSearchServerless::AccessPolicy").values()
    policy = json.dumps(access["Properties"]["Policy"])
    for role in ("ComputeStepServiceRole", "ComputeMemoryServiceRole"):
        assert ref_of(synth, "AWS::IAM::Role", role) in policy
    assert ref_of(synth, "AWS::IAM::Role", "ComputeApiServiceRole") not in policy
    permissions = set(re.findall(r"aoss:[A-Za-z]+", policy))
    assert permissions == {"aoss:CreateIndex", "aoss:DescribeIndex", "aoss:ReadDocument", "aoss:WriteDocument"}
    assert "index/stepwise-dev-vectors/stepwise-memory" in policy and "/*" not in policy
    for fn in synth.resources("AWS::Lambda::Function").values():
        if fn["Properties"]["FunctionName"] in OUTSIDE_VPC:
            continue  # their own small environments: tests/infra/test_sandbox_stack.py, test_channels_stack.py, test_auth_stack.py
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["STEPWISE_MEMORY_BACKEND"] == "opensearch" and env["STEPWISE_OPENSEARCH_INDEX"] == "stepwise-memory"
        assert env["STEPWISE_MEMORY_EMBEDDER"] == "bedrock:amazon.titan-embed-text-v2:0#512"
    memory = _statements(synth, "ComputeMemoryServiceRole")
    actions = {a for s in memory for a in _actions(s)}
    assert "aoss:APIAccessAll" in actions and not any(a.startswith(("states:", "s3:")) for a in actions)
    invoke = [s for s in memory if "bedrock:InvokeModel" in _actions(s)]
    assert invoke and "foundation-model/amazon.titan-embed-text-v2:0" in json.dumps(invoke[0]["Resource"])
    assert {a for a in actions if a.startswith("dynamodb:")} == {"dynamodb:Query", "dynamodb:GetItem"}
    memory_fn = ref_of(synth, "AWS::Lambda::Function", "ComputeMemory")
    (rule,) = [r for r in synth.resources("AWS::Events::Rule").values() if memory_fn in json.dumps(r["Properties"].get("Targets"))]
    assert rule["Properties"]["ScheduleExpression"] == "rate(15 minutes)"
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [memory_fn, "Arn"]}


def test_valkey_requires_the_stepwise_user_whose_password_is_in_secrets_manager(synth: Synth) -> None:
    from stepwise.memory.valkey import ACL_RULES

    users = {u["Properties"]["UserName"]: u["Properties"] for u in synth.resources("AWS::ElastiCache::User").values()}
    assert set(users) == {"stepwise", "default"}
    assert users["default"]["AccessString"].startswith("off ")  # nobody connects without credentials
    assert users["stepwise"]["AccessString"] == f"on {ACL_RULES}" and users["stepwise"]["Engine"] == "valkey"
    secret = ref_of(synth, "AWS::SecretsManager::Secret", "ValkeyCredentials")
    (password,) = users["stepwise"]["AuthenticationMode"]["Passwords"]
    assert users["stepwise"]["AuthenticationMode"]["Type"] == "password"
    assert "{{resolve:secretsmanager:" in json.dumps(password) and secret in json.dumps(password)  # resolved at deploy
    generator = synth.resources("AWS::SecretsManager::Secret")[secret]["Properties"]["GenerateSecretString"]
    assert generator["GenerateStringKey"] == "password" and json.loads(generator["SecretStringTemplate"]) == {"username": "stepwise"}
    assert all(c in generator["ExcludeCharacters"] for c in '@"/ ')  # ElastiCache's forbidden password characters
    group_key, group = next(iter(synth.resources("AWS::ElastiCache::UserGroup").items()))
    assert group["Properties"]["Engine"] == "valkey" and len(group["Properties"]["UserIds"]) == 2
    (cache,) = synth.resources("AWS::ElastiCache::ServerlessCache").values()
    assert cache["Properties"]["UserGroupId"] in (group["Properties"]["UserGroupId"], {"Ref": group_key})
    functions = {f["Properties"]["FunctionName"]: f["Properties"] for f in synth.resources("AWS::Lambda::Function").values()}
    for name in ("stepwise-dev-api", "stepwise-dev-step", "stepwise-dev-memory"):
        env = functions[name]["Environment"]["Variables"]
        assert env["STEPWISE_VALKEY_SECRET"] == {"Ref": secret} and json.dumps(env["STEPWISE_VALKEY_URL"]).startswith('{"Fn::Join": [""')
        role = name.split("-")[-1].capitalize()
        reads = [s for s in _statements(synth, f"Compute{role}ServiceRole") if "secretsmanager:GetSecretValue" in _actions(s)]
        assert any({"Ref": secret} in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]) for s in reads), name
    assert "STEPWISE_VALKEY_SECRET" not in json.dumps(functions["stepwise-dev-sandbox"])
