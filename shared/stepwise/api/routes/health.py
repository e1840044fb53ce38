"""Public routes: liveness and the OpenAPI document (no authentication).

No ``from __future__ import annotations``: Powertools reads the route functions' annotations at run time.
"""

from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayRouter as Router

import stepwise
from stepwise.api import models as m
from stepwise.api.facade import StepwiseApi


def router(api: StepwiseApi) -> Router:
    """Liveness and the OpenAPI document."""
    router = Router()

    # -- public ---------------------------------------------------------------------------------
    @router.get("/health", summary="Liveness (no authentication)", tags=["meta"], security=[])
    def health() -> m.Health:
        return m.Health(status="ok", version=stepwise.__version__)

    @router.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return api.openapi()

    return router
