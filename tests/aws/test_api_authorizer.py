"""The REST API's Lambda authorizer (functions/authorizer, stepwise.api.authorizer) and usage-plan enrollment,
on moto: API keys from the API table in DynamoDB, JWTs against a JWKS served on loopback, usage-plan keys in
moto's API Gateway. (moto does not run API Gateway's data plane, so the throttling itself is AWS's.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tests.unit.test_api_jwt import AUDIENCE, ISSUER, RSA, Jwks, claims, sign, unsigned
from tests.unit.test_api_jwt import jwks as jwks
from typer.testing import CliRunner

from stepwise.api.authorizer import Unauthorized, authorize, enroll, usage_key
from stepwise.api.keys import cli, create_key, revoke_key
from stepwise.api.oidc import JwtAuthenticator, JwtSettings
from stepwise.store.dynamodb import DynamoApiStore

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/POST/agents/digest/execute"
CONTEXT = SimpleNamespace(
    function_name="stepwise-dev-authorizer",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:stepwise-dev-authorizer",
    aws_request_id="r1",
)


def request(headers: dict[str, str]) -> dict[str, Any]:
    """A REQUEST authorizer event as API Gateway (REST) sends it."""
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "resource": "/{proxy+}",
        "path": "/agents/digest/execute",
        "httpMethod": "POST",
        "headers": headers,
        "queryStringParameters": {},
        "requestContext": {"stage": "dev", "requestId": "q1"},
    }


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        db.create_table(
            TableName="api",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        )
        yield db


def load_handler(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for name, value in {"STEPWISE_BACKEND": "aws", "STEPWISE_API_TABLE": "api", "POWERTOOLS_TRACE_DISABLED": "true", **env}.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("authorizer_handler_under_test", ROOT / "functions" / "authorizer" / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "authorizer_handler_under_test", module)
    return module


def test_api_keys_from_the_api_table_are_allowed_with_the_tenant_and_its_usage_plan_key(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DynamoApiStore("api", client=aws)
    record, key = create_key(store, "acme")
    handler = load_handler(monkeypatch, STEPWISE_USAGE_PLANS="1")
    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
        answer = handler.handler(request(headers), CONTEXT)
        assert answer["policyDocument"]["Statement"] == [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}]
        assert answer["context"] == {"tenant": "acme", "subject": f"key:{record.key_id}", "method": "api_key", "roles": ""}
        assert answer["usageIdentifierKey"] == usage_key("acme") and answer["principalId"] == f"key:{record.key_id}"
    refused = [
        {},  # no credentials
        {"x-api-key": key[:-2] + "xx"},  # wrong secret
        {"x-api-key": "swk_acme_0123456789abcdef_guess"},  # unknown key id
        {"x-api-key": "not-a-key"},  # malformed
        {"x-api-key": key, "Authorization": "Bearer swk_globex_0123456789abcdef_other"},  # two credentials
    ]
    for headers in refused:
        with pytest.raises(Unauthorized) as caught:
            handler.handler(request(headers), CONTEXT)
        assert str(caught.value) == "Unauthorized"  # the exact message API Gateway turns into a 401
    revoke_key(store, "acme", record.key_id)
    with pytest.raises(Unauthorized):
        handler.handler(request({"x-api-key": key}), CONTEXT)
    without_plans = load_handler(monkeypatch, STEPWISE_USAGE_PLANS="0")
    _, other = create_key(store, "globex")
    assert "usageIdentifierKey" not in without_plans.handler(request({"x-api-key": other}), CONTEXT)


def test_jwts_of_the_configured_issuer_are_allowed_and_bad_tokens_are_401s(aws: Any, jwks: Jwks) -> None:
    jwks.publish(("k1", RSA))
    authenticators = [JwtAuthenticator(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks.url))]
    answer = authorize(request({"Authorization": f"Bearer {sign(claims())}"}), authenticators, usage_plans=True)
    assert answer["context"] == {"tenant": "acme", "subject": "jwt:user-1", "method": "jwt", "roles": "admin"}
    assert answer["usageIdentifierKey"] == usage_key("acme")
    bad = [
        unsigned(claims()),
        sign(claims(exp=1)),
        sign(claims(aud="someone-else")),
        sign(claims(iss="https://evil.example")),
        sign(claims(), kid="unknown"),
        sign(claims(tenant="Not A Tenant")),
    ]
    for token in bad:
        with pytest.raises(Unauthorized):
            authorize(request({"Authorization": f"Bearer {token}"}), authenticators, usage_plans=True)
    with pytest.raises(Unauthorized):  # API Gateway always sends methodArn; without it nothing is allowed
        authorize({"headers": {"Authorization": f"Bearer {sign(claims())}"}}, authenticators, usage_plans=True)


def test_enroll_puts_a_tenant_in_exactly_one_usage_plan_idempotently(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    apigw = boto3.client("apigateway", region_name=REGION)
    standard = apigw.create_usage_plan(name="standard", throttle={"rateLimit": 10, "burstLimit": 20})["id"]
    premium = apigw.create_usage_plan(name="premium", throttle={"rateLimit": 100, "burstLimit": 200})["id"]
    key_id = enroll("acme", standard, apigw)
    assert enroll("acme", standard, apigw) == key_id  # again: same key, still one membership
    [member] = apigw.get_usage_plan_keys(usagePlanId=standard)["items"]
    assert member["id"] == key_id and member["value"] == usage_key("acme")
    enroll("acme", premium, apigw)  # moving a tenant takes it out of the other plan
    assert apigw.get_usage_plan_keys(usagePlanId=standard)["items"] == []
    assert [k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=premium)["items"]] == [key_id]
    assert len(apigw.get_api_keys(includeValues=True)["items"]) == 1

    # `keys create` on AWS enrolls the tenant when the stack's STEPWISE_USAGE_PLAN_ID is set; `keys plan` moves it
    for name, value in {"STEPWISE_BACKEND": "aws", "STEPWISE_API_TABLE": "api", "STEPWISE_USAGE_PLAN_ID": standard}.items():
        monkeypatch.setenv(name, value)
    out = CliRunner().invoke(cli, ["create", "--tenant", "globex"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.strip().splitlines()[-1])["tenant"] == "globex"
    values = {k["value"] for k in apigw.get_usage_plan_keys(usagePlanId=standard)["items"]}
    assert values == {usage_key("globex")}
    moved = CliRunner().invoke(cli, ["plan", "--tenant", "globex", "--plan-id", premium])
    assert moved.exit_code == 0 and json.loads(moved.stdout)["usage_plan_id"] == premium
    assert {k["value"] for k in apigw.get_usage_plan_keys(usagePlanId=premium)["items"]} == {usage_key("acme"), usage_key("globex")}
    with pytest.raises(ValueError, match="tenant"):
        usage_key("Bad Tenant")
