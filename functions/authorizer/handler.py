"""The ``authorizer`` Lambda: API Gateway's REQUEST authorizer in front of the REST API. Thin on purpose.

``stepwise.api.authorizer.authorize`` runs the API's own authenticators (JWTs of the configured OIDC issuer,
then API keys from the API table) and answers Allow with the tenant in the context and, with usage plans
on (``STEPWISE_USAGE_PLANS=1``), the tenant's usage-plan key; anything else is API Gateway's 401.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from stepwise.api.auth import Authenticator
from stepwise.api.authorizer import Unauthorized, authorize
from stepwise.api.facade import default_authenticators
from stepwise.api.settings import ApiSettings, build_store

logger = Logger(service="stepwise-authorizer")
_authenticators: list[Authenticator] | None = None


def authenticators() -> list[Authenticator]:
    """Built on the first request (the JWKS is fetched then too), kept for the container's life."""
    global _authenticators
    if _authenticators is None:
        settings = ApiSettings.from_env()
        _authenticators = default_authenticators(build_store(settings), settings)
    return _authenticators


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    usage_plans = os.environ.get("STEPWISE_USAGE_PLANS", "").lower() in ("1", "true", "yes")
    try:
        answer = authorize(event, authenticators(), usage_plans=usage_plans)
    except Unauthorized:
        logger.info("refused", extra={"path": event.get("path"), "method": event.get("httpMethod")})  # never the credentials
        raise
    logger.info("allowed", extra={"tenant": answer["context"]["tenant"], "method": answer["context"]["method"]})
    return answer
