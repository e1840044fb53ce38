"""API Gateway's Lambda (REQUEST) authorizer for the REST API, and the tenants' usage-plan keys.

Why a Lambda authorizer rather than a Cognito or JWT authorizer: the REST API must accept both Stepwise
API keys and JWTs of any OIDC issuer, and REST APIs have no JWT authorizer (HTTP APIs do, but they have
no usage plans). So one authorizer runs the same authenticators as the API (``default_authenticators``:
JWTs against the issuer's JWKS when ``STEPWISE_JWT_ISSUER`` is set, then API keys against the API
table) and answers API Gateway with:

- ``Allow`` on the called method, the principal in ``context`` (``tenant``, ``subject``, ``method``,
  ``roles``), and — with usage plans on — ``usageIdentifierKey``: the tenant's usage-plan key
  (``usage_key``), so API Gateway meters and throttles the request against the plan that key is in
  (the API's key source is ``AUTHORIZER``; clients never send or see that value);
- no credentials or bad ones: ``Unauthorized`` (API Gateway's 401), never a 5xx for a bad token.

The api function authenticates again behind it (defence in depth, and revocation is read fresh).

Usage-plan keys: ``enroll(tenant, plan_id)`` creates the tenant's API Gateway key (value ``usage_key(tenant)``)
if missing and puts it in exactly that plan (``python -m stepwise.api.keys plan``; ``keys create`` does it
when ``STEPWISE_USAGE_PLAN_ID`` is set). A tenant in no plan gets 403 from API Gateway once usage plans are on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stepwise.api.auth import TENANT_PATTERN, Authenticator, AuthError, Principal, check_one_credential

USAGE_KEY_PREFIX = "stepwise-usage-plan-tenant-"


class Unauthorized(Exception):
    """Raised with the message ``Unauthorized``: API Gateway answers 401 (any other failure would be a 500)."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def usage_key(tenant: str) -> str:
    """The API Gateway key value that identifies ``tenant`` to its usage plan (20-128 characters)."""
    if not TENANT_PATTERN.match(tenant):
        raise ValueError(f"tenant {tenant!r} must be 1-63 lowercase letters, digits or '-', starting with a letter or digit")
    return USAGE_KEY_PREFIX + tenant


def _principal(authenticators: Sequence[Authenticator], headers: Mapping[str, str], event: Mapping[str, Any]) -> Principal:
    try:
        check_one_credential(headers)
        for authenticator in authenticators:
            principal = authenticator.authenticate(headers, event)
            if principal is not None:
                return principal
    except AuthError:
        raise Unauthorized() from None
    raise Unauthorized()


def authorize(event: Mapping[str, Any], authenticators: Sequence[Authenticator], *, usage_plans: bool) -> dict[str, Any]:
    """The authorizer's answer for one REQUEST event (``headers``, ``methodArn``); raises ``Unauthorized``."""
    method_arn = event.get("methodArn")
    if not isinstance(method_arn, str) or not method_arn.startswith("arn:"):
        raise Unauthorized()
    headers = {str(k): str(v) for k, v in (event.get("headers") or {}).items()}
    principal = _principal(authenticators, headers, event)
    answer: dict[str, Any] = {
        "principalId": principal.subject,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn}],
        },
        "context": {
            "tenant": principal.tenant,
            "subject": principal.subject,
            "method": principal.method,
            "roles": ",".join(principal.roles),
        },
    }
    if usage_plans:
        answer["usageIdentifierKey"] = usage_key(principal.tenant)
    return answer


def enroll(tenant: str, plan_id: str, apigw: Any = None) -> str:
    """Put ``tenant``'s usage-plan key in plan ``plan_id`` (and in no other plan); create the key if missing.
    Idempotent. Returns the key's id."""
    if apigw is None:
        from stepwise.awsclients import client

        apigw = client("apigateway")
    value = usage_key(tenant)
    name = f"stepwise-tenant-{tenant}"
    found = [k for k in apigw.get_api_keys(nameQuery=name, includeValues=True).get("items", []) if k.get("value") == value]
    if found:
        key_id = str(found[0]["id"])
    else:
        key_id = str(
            apigw.create_api_key(
                name=name, value=value, enabled=True, description=f"Stepwise tenant {tenant}: identifies it to its usage plan"
            )["id"]
        )
    for plan in apigw.get_usage_plans().get("items", []):
        if plan["id"] == plan_id:
            continue
        keys = apigw.get_usage_plan_keys(usagePlanId=plan["id"]).get("items", [])
        if any(k["id"] == key_id for k in keys):
            apigw.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key_id)
    current = apigw.get_usage_plan_keys(usagePlanId=plan_id).get("items", [])
    if not any(k["id"] == key_id for k in current):
        apigw.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
    return key_id
