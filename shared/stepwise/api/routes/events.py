"""The local event bus: ``POST /events`` starts the runs whose ``triggers:`` match (EventBridge on AWS).

No ``from __future__ import annotations``: Powertools reads the route functions' annotations at run time.
"""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import APIGatewayRouter as Router

from stepwise.api import models as m
from stepwise.api.auth import Principal
from stepwise.api.errors import ApiError, documented
from stepwise.api.facade import StepwiseApi
from stepwise.api.triggers import TriggerError, put_events


def router(api: StepwiseApi) -> Router:
    """Put events on the tenant's bus; every agent trigger whose pattern matches starts a run, once per event id."""
    router = Router()

    @router.post(
        "/events",
        summary="Put events on your bus: agents whose `triggers:` pattern matches start runs (once per event id)",
        tags=["triggers"],
        responses=documented(409, body=True),
    )
    def post_events(body: Annotated[m.PutEvents, Body()]) -> m.PutEventsResult:
        principal: Principal = router.context["principal"]
        try:
            results = put_events(api, principal.tenant, [e.model_dump() for e in body.entries])
        except TriggerError as exc:
            raise ApiError(409, "trigger_failed", str(exc)) from None
        return m.PutEventsResult.model_validate({"results": results})

    return router
