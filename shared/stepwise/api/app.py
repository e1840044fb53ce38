"""The HTTPS API, composed: Powertools' REST resolver with pydantic validation and every route, behind
API-key auth, tenant-scoped.

``create_app(client_factory)`` returns a ``StepwiseApi`` (``facade.py``): call it with an API Gateway
(REST, proxy) event and it returns the proxy response. The Lambda handler (functions/api/handler.py)
and the local server (``stepwise serve``) both call exactly this object.

Who does what:
- ``facade.py`` — ``StepwiseApi``: the front door (size check, body admission, console pages,
  authentication, rate limits, WebSocket events) and the helpers the routes share;
- this module — ``build_resolver``: the error handlers and one router per resource (``routes/``,
  ``roles.py``, ``memory.py``); ``create_app`` hands it to the facade, which builds one resolver per OS
  thread with it. The facade never imports the routes, so the routes import the facade; only entry
  points (``server.py``, ``openapi.py``, ``functions/``) import this module;
- ``errors.py`` — ``ApiError`` and the error answers the routes and the facade share.

Tenancy: every route reads the caller's tenant from the principal. Agents live in the tenant's
partition of the API store; runs carry ``RunRecord.tenant``; threads have an owner record. Anything
of another tenant answers 404, exactly like something that does not exist.

Note on this module: no ``from __future__ import annotations``, like the route modules, where
Powertools reads the route functions' annotations at run time.
"""

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError

from stepwise.api.auth import Authenticator
from stepwise.api.errors import ApiError, error_response
from stepwise.api.facade import StepwiseApi
from stepwise.api.hooks import EventSink, RateLimiter
from stepwise.api.settings import ApiSettings, build_store
from stepwise.client import Stepwise
from stepwise.errors import ConflictingRequestError, StepwiseError
from stepwise.state.ports import RunTransitionError
from stepwise.store import ApiStore, StoreConflict

log = logging.getLogger("stepwise.api")


class ThreadSafeResolver(APIGatewayRestResolver):
    """Powertools keeps the current event on a *class* attribute (``BaseRouter.current_event``), shared by
    every resolver in the process: under a threaded server, two requests read each other's body and path
    (a resume ran with a concurrent cancel's empty body). Setting it on the instance shadows the class
    attribute for everything that reads ``self.current_event``/``app.current_event`` (routers included)."""

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self.current_event = self._to_proxy_event(dict(event))  # type: ignore[assignment]
        self.lambda_context = context
        return super().resolve(event, context)


def _detail(error: Mapping[str, Any]) -> dict[str, Any]:
    """One validation error as ``{field, type, message}``. A body that is not JSON is named as the body, not by
    the parser's position (``body.1``), with what to send instead."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid" and loc[:1] == ("body",):
        at = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
        why = (error.get("ctx") or {}).get("error") or error.get("msg", "")
        message = f"the body is not valid JSON ({why}{at}): send a JSON object with content-type: application/json"
        return {"field": "body", "type": "json_invalid", "message": message}
    return {"field": ".".join(str(p) for p in loc), "type": error.get("type"), "message": error.get("msg", "")}


def served_methods(resolver: APIGatewayRestResolver, path: str) -> list[str]:
    """The methods some route serves ``path`` with, sorted (the ``Allow`` of a 405). Powertools finds no route
    for a known path under another method and, like an unknown path, raises ``NotFoundError``; its routes are
    only on the resolver's private lists."""
    routes = resolver._static_routes + resolver._dynamic_routes
    return sorted({route.method for route in routes if route.rule.match(path)})


def build_resolver(api: StepwiseApi) -> APIGatewayRestResolver:
    """One resolver: error handlers here, routes from ``api/routes/`` (one router per resource)."""
    app = ThreadSafeResolver(enable_validation=True)

    # -- errors -------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    def _api_error(exc: ApiError) -> Response[str]:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[str]:
        details = [_detail(e) for e in exc.errors()]
        summary = "; ".join(f"{d['field']}: {d['message'] or d['type']}" for d in details)
        return error_response(422, "validation_error", summary or "invalid request", details)

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported(exc: RequestUnsupportedContentType) -> Response[str]:  # it was a 500
        sent = app.current_event.headers.get("content-type") or "none"
        message = (
            f"content-type {sent!r} is not accepted: send JSON with content-type: application/json "
            "(registering a graph also takes its YAML with content-type: application/yaml)"
        )
        return error_response(415, "unsupported_media_type", message)

    @app.exception_handler(NotFoundError)
    def _no_route(exc: NotFoundError) -> Response[str]:
        event = app.current_event
        allowed = served_methods(app, event.path)
        if allowed and event.http_method not in allowed:  # a known path, another method: say which ones it serves
            message = f"{event.http_method} is not served on {event.path}; it serves {', '.join(allowed)}"
            return error_response(405, "method_not_allowed", message, headers={"Allow": ", ".join(allowed)})
        return error_response(404, "not_found", f"no route {event.http_method} {event.path}; see docs/api.md")

    @app.exception_handler(ConflictingRequestError)
    def _busy(exc: ConflictingRequestError) -> Response[str]:
        return error_response(409, exc.code, str(exc))

    @app.exception_handler(RunTransitionError)
    def _lost(exc: RunTransitionError) -> Response[str]:
        return error_response(409, "conflict", str(exc))

    @app.exception_handler(StepwiseError)
    def _refused(exc: StepwiseError) -> Response[str]:
        return error_response(422, "invalid_request", str(exc))

    @app.exception_handler(StoreConflict)
    def _conflict(exc: StoreConflict) -> Response[str]:
        return error_response(409, "conflict", f"{exc}; retry the request")

    @app.exception_handler(Exception)
    def _internal(exc: Exception) -> Response[str]:
        request_id = (app.current_event.raw_event.get("requestContext") or {}).get("requestId", "-")
        log.exception("unhandled error in %s %s (request %s)", app.current_event.http_method, app.current_event.path, request_id)
        return error_response(500, "internal", f"internal error; quote request id {request_id} to the operator")

    # the routes load with the first resolver, not with this module: the trigger Lambda builds the API and never routes
    from stepwise.api import memory, roles
    from stepwise.api.routes import agents, console, events, health, runs, threads

    for build in (
        health.router,
        roles.router,
        memory.router,
        agents.router,
        agents.execute_router,
        runs.list_router,
        runs.router,
        runs.redrive_router,
        threads.router,
        events.router,
        console.router,
    ):  # one router per resource
        app.include_router(build(api))

    return app


def create_app(
    client_factory: Callable[[], Stepwise],
    *,
    store: ApiStore | None = None,
    settings: ApiSettings | None = None,
    authenticators: list[Authenticator] | None = None,
    rate_limiter: RateLimiter | None = None,
    events: EventSink | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> StepwiseApi:
    """The API over the engine client that ``client_factory`` builds (lazily, once).

    ``store`` holds keys, agents and thread owners (default: from settings, matching the backend);
    ``authenticators``, ``rate_limiter`` and ``events`` are the seams described in auth.py/hooks.py;
    ``sleep``/``clock`` drive the wait loop (tests pass fakes).
    """
    settings = settings or ApiSettings.from_env()
    return StepwiseApi(
        client_factory,
        store=store or build_store(settings),
        settings=settings,
        resolver_factory=build_resolver,
        authenticators=authenticators,
        rate_limiter=rate_limiter,
        events=events,
        sleep=sleep,
        clock=clock,
    )
