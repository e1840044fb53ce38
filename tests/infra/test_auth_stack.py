"""Auth and usage plans in the stack: every REST method behind the Lambda REQUEST authorizer (API keys and OIDC
JWTs), usage-plan keys from the authorizer, per-tenant usage plans; a Cognito user pool or another issuer by
context. Each variant is synthesized nag-clean and cfn-lint-clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from tests.infra.conftest import Synth, synthesize

ENV = {"stepwise:region": "eu-west-1", "stepwise:account": "123456789012"}


def _fn(synth: Synth, name: str) -> tuple[str, dict[str, Any]]:
    [(fid, fn)] = [(k, f) for k, f in synth.resources("AWS::Lambda::Function").items() if f["Properties"]["FunctionName"] == name]
    return fid, fn["Properties"]


def _actions(synth: Synth, role_id: str) -> list[tuple[set[str], Any]]:
    out = []
    for p in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in p["Properties"]["Roles"]:
            for s in p["Properties"]["PolicyDocument"]["Statement"]:
                out.append((set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]]), s["Resource"]))
    return out


def _clean(synth: Synth) -> None:
    assert synth.error is None, synth.error
    errors = [m for m in lint(json.dumps(synth.raw), regions=["eu-west-1"]) if m.rule.id.startswith("E")]
    assert errors == [], [f"{m.rule.id} {m.message}" for m in errors]


def test_every_rest_method_goes_through_the_authorizer_and_needs_a_usage_plan_key(synth: Synth) -> None:
    fid, _ = _fn(synth, "stepwise-dev-authorizer")
    [(auth_id, authorizer)] = synth.resources("AWS::ApiGateway::Authorizer").items()
    assert authorizer["Properties"]["Type"] == "REQUEST" and authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == 0
    assert fid in json.dumps(authorizer["Properties"]["AuthorizerUri"])
    every = list(synth.resources("AWS::ApiGateway::Method").values())
    pages = [m for m in every if m["Properties"]["AuthorizationType"] == "NONE"]
    methods = [m for m in every if m not in pages]
    assert methods
    # only the web console's static pages and the liveness route are public: GET /, /console, /console/{file}, /health
    resources = synth.resources("AWS::ApiGateway::Resource")
    assert sorted(m["Properties"]["HttpMethod"] for m in pages) == ["GET"] * 4
    paths = sorted(
        resources[m["Properties"]["ResourceId"]["Ref"]]["Properties"]["PathPart"] for m in pages if "Ref" in m["Properties"]["ResourceId"]
    )
    assert paths == ["console", "health", "{file}"] and all(m["Properties"]["ApiKeyRequired"] is False for m in pages)
    for method in methods:
        assert method["Properties"]["AuthorizationType"] == "CUSTOM"
        assert method["Properties"]["AuthorizerId"] == {"Ref": auth_id}
        assert method["Properties"]["ApiKeyRequired"] is True
    [rest] = synth.resources("AWS::ApiGateway::RestApi").values()
    assert rest["Properties"]["ApiKeySourceType"] == "AUTHORIZER"  # the authorizer names the tenant's key
    [plan] = synth.resources("AWS::ApiGateway::UsagePlan").values()
    assert plan["Properties"]["Throttle"] == {"RateLimit": 50, "BurstLimit": 100}
    [stage] = plan["Properties"]["ApiStages"]
    assert stage["ApiId"] == {"Ref": next(iter(synth.resources("AWS::ApiGateway::RestApi")))}
    responses = {r["Properties"]["ResponseType"]: r["Properties"] for r in synth.resources("AWS::ApiGateway::GatewayResponse").values()}
    assert responses["INVALID_API_KEY"]["StatusCode"] == "403" and "no_usage_plan" in json.dumps(responses["INVALID_API_KEY"])
    assert responses["THROTTLED"]["StatusCode"] == "429" and responses["QUOTA_EXCEEDED"]["StatusCode"] == "429"
    assert "STEPWISE_USAGE_PLAN_ID" in json.dumps(synth.raw["Outputs"]["CreateApiKeyCommand"])
    assert "UsagePlanDefaultId" in synth.raw["Outputs"]


def test_the_authorizer_reads_one_table_and_nothing_else(synth: Synth) -> None:
    _, props = _fn(synth, "stepwise-dev-authorizer")
    assert "VpcConfig" not in props and props["Layers"]
    env = props["Environment"]["Variables"]
    assert env["STEPWISE_BACKEND"] == "aws" and env["STEPWISE_USAGE_PLANS"] == "1"
    assert "STEPWISE_JWT_ISSUER" not in env  # API keys only unless an issuer is configured
    role_id = props["Role"]["Fn::GetAtt"][0]
    statements = _actions(synth, role_id)
    api_table = next(k for k, v in synth.resources("AWS::DynamoDB::Table").items() if "StorageApi" in k)
    assert ({"dynamodb:GetItem"}, {"Fn::GetAtt": [api_table, "Arn"]}) in statements
    everything = set().union(*(a for a, _ in statements))
    assert everything <= {"dynamodb:GetItem", "logs:CreateLogStream", "logs:PutLogEvents"}, everything
    assert "ManagedPolicyArns" not in synth.raw["Resources"][role_id]["Properties"]


@pytest.fixture(scope="module")
def cognito(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    plans = json.dumps({"free": {"rate": 5, "burst": 10, "quota": 1000, "period": "DAY"}, "pro": {"rate": 100, "burst": 200}})
    return synthesize(tmp_path_factory.mktemp("cognito"), **ENV, **{"stepwise:cognito": "true", "stepwise:usagePlans": plans})


def test_cognito_user_pool_issues_the_tokens_the_api_accepts(cognito: Synth) -> None:
    _clean(cognito)
    [(pool_id, pool)] = cognito.resources("AWS::Cognito::UserPool").items()
    props = pool["Properties"]
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True and props["MfaConfiguration"] == "ON"
    [tenant] = [a for a in props["Schema"] if a["Name"] == "tenant"]
    assert tenant["Mutable"] is False
    [(client_id, client)] = cognito.resources("AWS::Cognito::UserPoolClient").items()
    assert "custom:tenant" not in client["Properties"]["WriteAttributes"]  # users cannot pick their tenant
    assert client["Properties"]["GenerateSecret"] is False
    for name in ("stepwise-dev-authorizer", "stepwise-dev-api"):
        env = _fn(cognito, name)[1]["Environment"]["Variables"]
        issuer = env["STEPWISE_JWT_ISSUER"]["Fn::Join"][1]  # https://cognito-idp.<region>.amazonaws.com/<pool id>: the tokens' iss
        assert issuer[0] == "https://cognito-idp.eu-west-1." and issuer[-1] == {"Ref": pool_id}
        assert env["STEPWISE_JWT_AUDIENCE"] == {"Ref": client_id}
        assert env["STEPWISE_JWT_TENANT_CLAIM"] == "custom:tenant" and env["STEPWISE_JWT_ROLES_CLAIM"] == "cognito:groups"
    plans = {p["Properties"]["UsagePlanName"]: p["Properties"] for p in cognito.resources("AWS::ApiGateway::UsagePlan").values()}
    assert plans["stepwise-dev-api-free"]["Quota"] == {"Limit": 1000, "Period": "DAY"}
    assert plans["stepwise-dev-api-pro"]["Throttle"] == {"RateLimit": 100, "BurstLimit": 200}
    assert {"UserPoolId", "UserPoolClientId", "JwtIssuer", "UsagePlanFreeId", "UsagePlanProId"} <= set(cognito.raw["Outputs"])


def test_another_oidc_issuer_by_context_and_usage_plans_off(tmp_path: Path) -> None:
    context = {
        **ENV,
        "stepwise:jwtIssuer": "https://login.example.com/realms/acme",
        "stepwise:jwtAudience": "stepwise",
        "stepwise:jwtTenantClaim": "org",
        "stepwise:usagePlans": "false",
    }
    oidc = synthesize(tmp_path, **context)
    _clean(oidc)
    assert oidc.resources("AWS::Cognito::UserPool") == {} and oidc.resources("AWS::ApiGateway::UsagePlan") == {}
    for name in ("stepwise-dev-authorizer", "stepwise-dev-api"):
        env = _fn(oidc, name)[1]["Environment"]["Variables"]
        assert env["STEPWISE_JWT_ISSUER"] == "https://login.example.com/realms/acme" and env["STEPWISE_JWT_TENANT_CLAIM"] == "org"
    assert all(m["Properties"]["ApiKeyRequired"] is False for m in oidc.resources("AWS::ApiGateway::Method").values())
    kinds = sorted(m["Properties"]["AuthorizationType"] for m in oidc.resources("AWS::ApiGateway::Method").values())
    assert kinds == ["CUSTOM"] * (len(kinds) - 4) + ["NONE"] * 4  # all but the console's three page routes and /health
    assert _fn(oidc, "stepwise-dev-authorizer")[1]["Environment"]["Variables"]["STEPWISE_USAGE_PLANS"] == "0"


def test_auth_context_mistakes_are_explained() -> None:
    from infra.stacks.config import StackConfig, _usage_plans

    with pytest.raises(ValueError, match="not both"):
        StackConfig(cognito=True, jwt_issuer="https://a.example", jwt_audience="x")
    with pytest.raises(ValueError, match="go together"):
        StackConfig(jwt_issuer="https://a.example")
    with pytest.raises(ValueError, match="https://"):
        StackConfig(jwt_issuer="http://a.example", jwt_audience="x")
    with pytest.raises(ValueError, match="needs rate and burst"):
        _usage_plans('{"free": {"rate": 5}}')
    with pytest.raises(ValueError, match="period"):
        _usage_plans('{"free": {"rate": 5, "burst": 5, "quota": 1, "period": "YEAR"}}')
