"""The HTTPS API: Powertools' REST resolver with pydantic validation, behind API-key auth, tenant-scoped.

``create_app(client_factory)`` returns a ``StepwiseApi``: call it with an API Gateway (REST, proxy)
event and it returns the proxy response. The Lambda handler (functions/api/handler.py) and the local
server (``stepwise serve``) both call exactly this object.

Request flow: size check → YAML body normalisation → authentication (``auth.py``) → rate limit seam
(``hooks.py``) → the resolver (request validation → route). Authentication runs before Powertools'
validation on purpose: an anonymous caller learns nothing about the API's schema from its errors.

Tenancy: every route reads the caller's tenant from the principal. Agents live in the tenant's
partition of the API store; runs carry ``RunRecord.tenant``; threads have an owner record. Anything
of another tenant answers 404, exactly like something that does not exist.

Note on this module: no ``from __future__ import annotations`` — Powertools reads the route
functions' annotations at run time to build validation and the OpenAPI document.
"""

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

import stepwise
from stepwise.api import console, policy, websocket
from stepwise.api import models as m
from stepwise.api.auth import ApiKeyAuthenticator, Authenticator, AuthError, Principal
from stepwise.api.hooks import EventSink, NoEvents, NoLimit, RateLimited, RateLimiter
from stepwise.api.settings import ApiSettings, build_store
from stepwise.client import Stepwise
from stepwise.errors import ConflictingRequestError, StepwiseError
from stepwise.graph import limits
from stepwise.graph.errors import GraphError
from stepwise.state.ports import RunRecord, RunTransitionError
from stepwise.store import AgentRecord, ApiStore, StoreConflict

log = logging.getLogger("stepwise.api")

PUBLIC_ROUTES = frozenset({("GET", "/health"), ("GET", "/openapi.json")})
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
POLL_SECONDS = 0.5
#: A run the API answers 202 for: it has not finished, failed or stopped at a human node yet.
UNSETTLED = ("running", "queued")
MAX_EVENTS_PAGE = 1000
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


class ApiError(StepwiseError):
    """An error answered as ``{"error": {"code", "message", "details"?}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> Response[str]:
    body = m.ErrorBody(error=m.ErrorDetail(code=code, message=message, details=details))
    return Response(status_code=status, content_type="application/json", body=body.model_dump_json(exclude_none=True), headers=headers)


def _proxy(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A proxy response built without the resolver (for auth, size and rate-limit failures)."""
    body = m.ErrorBody(error=m.ErrorDetail(code=code, message=message)).model_dump_json(exclude_none=True)
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": body,
        "isBase64Encoded": False,
    }


ERRORS: dict[int, Any] = {
    code: {"description": text, "content": {"application/json": {"model": m.ErrorBody}}}
    for code, text in (
        (401, "missing, unknown or revoked API key"),
        (404, "no such resource for this tenant"),
        (422, "invalid body or parameter"),
    )
}


def _errors(*extra: int) -> dict[int, Any]:
    out = dict(ERRORS)
    for code in extra:
        out[code] = {"description": HTTPStatus(code).phrase, "content": {"application/json": {"model": m.ErrorBody}}}
    return out


class StepwiseApi:
    """The API handler: ``api(event, context) -> proxy response``; one Powertools resolver per OS thread."""

    def __init__(
        self,
        client_factory: Callable[[], Stepwise],
        *,
        store: ApiStore,
        settings: ApiSettings,
        authenticators: list[Authenticator] | None = None,
        rate_limiter: RateLimiter | None = None,
        events: EventSink | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_factory = client_factory
        self._client: Stepwise | None = None
        self._client_lock = threading.Lock()
        self._background: Any = None
        self._executions: dict[str, Any] = {}  # run id -> Future of a run this process executes in the background
        self._webhooks: Any = None
        self._ws: Any = None
        self._watchers: Any = None
        self._local = threading.local()
        self.store = store
        self.settings = settings
        self.authenticators = authenticators if authenticators is not None else default_authenticators(store, settings)
        self.rate_limiter = rate_limiter or default_rate_limiter(settings)
        self.events = events or NoEvents()
        self.sleep = sleep
        self.clock = clock

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def client(self) -> Stepwise:
        """The engine client, built on first use (a Lambda pays for it once per container)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._client_factory()
        return self._client

    @property
    def resolver(self) -> APIGatewayRestResolver:
        """This thread's resolver. Powertools keeps the current event on the resolver, so threads don't share one."""
        resolver: APIGatewayRestResolver | None = getattr(self._local, "resolver", None)
        if resolver is None:
            resolver = build_resolver(self)
            self._local.resolver = resolver
        return resolver

    def openapi(self) -> dict[str, Any]:
        doc = self.resolver.get_openapi_json_schema(
            title="Stepwise API",
            version=stepwise.__version__,
            description="Register agent graphs, run them, resume human steps, read and fork threads. See docs/api.md.",
            security_schemes={
                "apiKey": APIKey.model_validate({"name": "x-api-key", "in": APIKeyIn.header}),
                "bearer": HTTPBearer(bearerFormat="swk_<tenant>_<id>_<secret>, or a JWT of the configured OIDC issuer"),
            },
            security=[{"apiKey": []}, {"bearer": []}],
        )
        return json.loads(doc)  # type: ignore[no-any-return]

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        if websocket.is_websocket(event):
            return websocket.handle(self, event)
        method = str(event.get("httpMethod") or "").upper()
        path = str(event.get("path") or "")
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        body = event.get("body") or ""
        if len(body) > self.settings.api_max_body_bytes:
            return _proxy(413, "payload_too_large", f"request bodies are limited to {self.settings.api_max_body_bytes} bytes")
        if method not in HTTP_METHODS:
            return _proxy(405, "method_not_allowed", f"{method or 'this method'} is not served; use {', '.join(HTTP_METHODS)}")
        try:
            event = _admit_body(event, headers)
        except limits.LimitError as exc:
            return _proxy(422, "invalid_body", str(exc))
        page = console.static_response(method, path)  # the web console's pages: public, hold no data
        if page is not None:
            return page
        event = _yaml_body(event, headers)
        resolver = self.resolver
        if (method, path) not in PUBLIC_ROUTES:
            admitted = self.admit(method, path, headers, event)
            if isinstance(admitted, dict):
                return admitted
            principal, limit_headers = admitted
            resolver.append_context(principal=principal)
            if limit_headers:
                response = resolver.resolve(event, context)
                response["statusCode"] = int(response["statusCode"])
                response["headers"] = {**(response.get("headers") or {}), **limit_headers}
                return response
        response = resolver.resolve(event, context)
        response["statusCode"] = int(response["statusCode"])
        return response

    def admit(
        self, method: str, path: str, headers: dict[str, str], event: dict[str, Any]
    ) -> tuple[Principal, Mapping[str, str] | None] | dict[str, Any]:
        """Authenticate and rate-limit one request: the principal and rate-limit headers, or the response refusing it."""
        try:
            principal = self.authenticate(headers, event)
        except AuthError as exc:
            return _proxy(401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})
        if principal is None:
            return _proxy(
                401,
                "unauthorized",
                "send an API key in the x-api-key header (or Authorization: Bearer); see docs/api.md",
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            limit_headers = self.rate_limiter.check(principal, f"{method} {path}")
        except RateLimited as exc:
            return _proxy(429, "rate_limited", str(exc), {"Retry-After": str(max(1, math.ceil(exc.retry_after))), **exc.headers})
        return principal, limit_headers

    def stream_preflight(self, event: dict[str, Any], run_id: str) -> tuple[RunRecord, int] | dict[str, Any]:
        """For the live stream (stepwise.api.stream): the run and the seq to resume after, or an error response."""
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        admitted = self.admit("GET", str(event.get("path")), headers, event)
        if isinstance(admitted, dict):
            return admitted
        try:
            run = self.run_of(admitted[0].tenant, run_id)
            after = resume_after(headers.get("last-event-id"), (event.get("queryStringParameters") or {}).get("after"))
        except ApiError as exc:
            return _proxy(exc.status, exc.code, exc.message)
        return run, after

    def authenticate(self, headers: dict[str, str], event: dict[str, Any]) -> Principal | None:
        for authenticator in self.authenticators:
            principal = authenticator.authenticate(headers, event)
            if principal is not None:
                return principal
        return None

    # -- helpers the routes share ---------------------------------------------------------------
    def agent(self, tenant: str, agent_id: str) -> AgentRecord:
        record = self.store.get_agent(tenant, agent_id)
        if record is None:
            raise ApiError(404, "agent_not_found", f"no agent {agent_id!r}; list yours with GET /agents")
        return record

    def run_of(self, tenant: str, run_id: str) -> RunRecord:
        run = self.client.get_run(run_id)
        if run is None or run.tenant != tenant:
            raise ApiError(404, "run_not_found", f"no run {run_id!r}")
        return run

    def thread_of(self, tenant: str, thread_id: str) -> int:
        """The head seq of one of the tenant's threads, else a 404."""
        owner = self.store.thread_owner(thread_id)
        if owner is None:  # threads started outside the API (CLI): owned by the tenant of their runs
            runs = self.client.runs(thread_id=thread_id, limit=1)
            owner = runs[0].tenant if runs else None
        head = self.client.head(thread_id) if owner == tenant else 0
        if head == 0:
            raise ApiError(404, "thread_not_found", f"no thread {thread_id!r}")
        return head

    def claim_thread(self, tenant: str, thread_id: str) -> None:
        """Make ``tenant`` the owner of a new thread, or check it owns an existing one, else 404.

        A thread started outside the API (the CLI) has no owner record: it belongs to the tenant of its
        runs, and a thread with events but no runs (a CLI fork) belongs to nobody on the API."""
        if self.store.thread_owner(thread_id) is None and self.client.head(thread_id) > 0:
            runs = self.client.runs(thread_id=thread_id, limit=1000)
            if not runs or any(r.tenant != tenant for r in runs):
                raise ApiError(404, "thread_not_found", f"no thread {thread_id!r}")
        if self.store.claim_thread(tenant, thread_id) != tenant:
            raise ApiError(404, "thread_not_found", f"no thread {thread_id!r}")

    def run_view(self, run: RunRecord, *, with_state: bool = True) -> m.Run:
        agent = self.store.get_agent(run.tenant, run.graph_ref.split("@", 1)[0])
        found = agent.by_ref(run.graph_ref) if agent else None
        state = None
        if with_state and self.client.head(run.thread_id) > 0:
            try:
                _, state = self.client.state(run.thread_id)
            except StepwiseError:  # a reducer raised: the run record (and its error) still reads
                state = None
        return m.Run.of(run, found.version if found else None, state)

    def start_background(self, spec: Any, input: dict[str, Any], thread_id: str, tenant: str) -> str:
        """Record the run now and execute it on a background thread (the local engine runs synchronously;
        on Step Functions starting an execution is already asynchronous). Returns the run id at once."""
        if not self.client.executor.synchronous:
            return self.client.run(spec, input, thread_id=thread_id, tenant=tenant).run_id
        record = self.client.start(spec, input, thread_id=thread_id, tenant=tenant)
        self.run_in_background(self.client.execute, record.run_id)
        return record.run_id

    def run_in_background(self, fn: Callable[[str], Any], run_id: str) -> None:
        """Execute (or continue) a run on this process's background threads, remembering it for ``settle``."""
        with self._client_lock:
            if self._background is None:
                from concurrent.futures import ThreadPoolExecutor

                self._background = ThreadPoolExecutor(max_workers=self.settings.api_background_runs, thread_name_prefix="stepwise-run")

        def execute_then_drain(key: str) -> Any:
            try:
                return fn(key)
            finally:
                self._drain_after(key)

        future = self._background.submit(execute_then_drain, run_id)
        self._executions[run_id] = future
        future.add_done_callback(_log_failure)
        future.add_done_callback(lambda _: self._executions.pop(run_id, None))

    @property
    def ws_connections(self) -> Any:
        """WebSocket connections and subscriptions (stepwise.api.websocket): the API table on AWS, memory otherwise."""
        if self._ws is None:
            from stepwise.api import websocket as ws

            self._ws = ws.DynamoConnections(self.settings.api_table) if self.settings.backend == "aws" else ws.MemoryConnections()
        return self._ws

    @ws_connections.setter
    def ws_connections(self, value: Any) -> None:
        self._ws = value

    @property
    def webhooks(self) -> Any:
        """The webhook sender (stepwise.api.webhooks), built on first use."""
        if self._webhooks is None:
            from stepwise.api.webhooks import WebhookSender

            home = self.settings.home if self.settings.backend == "embedded" else None
            self._webhooks = WebhookSender(
                home=home,
                allow_private=self.settings.webhook_allow_private,
                attempts=self.settings.webhook_attempts,
                base=self.settings.webhook_backoff_seconds,
                sleep=self.sleep,
            )
        return self._webhooks

    def agent_webhook(self, tenant: str, agent: str) -> m.Webhook | None:
        """The webhook configured on the agent (PUT /agents/{id}/webhook), used by runs without their own."""
        hook = self.store.get_webhook(tenant, agent)
        return m.Webhook.model_validate(hook) if hook else None

    def watch(self, run_id: str, hook: m.Webhook) -> None:
        """Follow a run on a watcher thread and deliver a webhook for each status in ``hook.events`` it reaches
        (waiting, then after a resume its end), until it ends. On AWS a thread would not outlive the Lambda's
        answer: the hook is stored and the events stream delivers it (stepwise.api.webhooks_aws)."""
        if self.settings.backend == "aws":
            from stepwise.api.webhooks_aws import store_run_webhook

            run = self.client.get_run(run_id)
            facts = {"run_id": run_id, **({"thread_id": run.thread_id, "agent": run.graph_ref.split("@", 1)[0]} if run else {})}
            store_run_webhook(self.store, run_id, hook, facts)
            return
        with self._client_lock:
            if self._watchers is None:
                from concurrent.futures import ThreadPoolExecutor

                self._watchers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="stepwise-webhook")
        self._watchers.submit(self._watch, run_id, hook).add_done_callback(_log_failure)

    def _watch(self, run_id: str, hook: m.Webhook) -> None:
        reported: set[tuple[str, str]] = set()
        while True:
            run = self.client.get_run(run_id)
            if run is None:
                return
            mark = (run.status, str((run.waiting or {}).get("interrupt_id") or (run.waiting or {}).get("node") or ""))
            if run.status != "running" and mark not in reported:
                reported.add(mark)
                if run.status in hook.events:
                    detail: dict[str, Any] = {
                        "run_id": run.run_id,
                        "thread_id": run.thread_id,
                        "status": run.status,
                        "agent": run.graph_ref.split("@", 1)[0],
                    }
                    if run.waiting:
                        detail["waiting"] = {"node": run.waiting.get("node"), "prompt": run.waiting.get("prompt")}
                    if run.error:
                        detail["error"] = run.error
                    self.webhooks.deliver(hook.url, hook.secret, f"run.{run.status}", detail)
            if run.status in ("succeeded", "failed", "cancelled"):
                return
            self.sleep(POLL_SECONDS)

    def make_room(self, thread_id: str, policy: str, cause: str) -> None:
        """Double texting: apply the thread's policy to the runs in flight on it before a new run starts
        (``Stepwise.make_room``: ``reject`` refuses a waiting run, the engine a running one, 409 thread_busy;
        ``interrupt`` cancels them; ``rollback`` cancels them and discards their writes). This process's
        execution of a cancelled run is settled before its rollback; each step is published as an event."""

        def report(kind: str, run: RunRecord) -> None:
            extra = {"by": policy} if kind == "cancelled" else {}
            self.events.publish(f"run.{kind}", run.tenant, {"run_id": run.run_id, "thread_id": thread_id, **extra})

        self.client.make_room(thread_id, policy, cause=cause, settle=self.settle, report=report)

    def enqueue_behind(self, spec: Any, input: dict[str, Any], thread_id: str, tenant: str) -> RunRecord | None:
        """Double texting ``enqueue``: if the thread has a run in flight (running or waiting) or queued, record
        this one as ``queued`` in the run store (durable, tenant-scoped) and return it; None: the thread is
        free, start the run now. A drain right after covers a run that ended between the check and the put."""
        record = self.client.enqueue_if_busy(spec, input, thread_id=thread_id, tenant=tenant)
        if record is not None:
            self.drain(thread_id)
        return record

    def drain(self, thread_id: str) -> None:
        """Start the thread's queued runs (one at a time, in order) on a background thread, if it is idle."""
        if self.client.next_queued(thread_id) is None:
            return
        if not self.client.executor.synchronous:  # Step Functions: starting an execution returns at once
            self.client.drain_queue(thread_id)
        else:
            self.run_in_background(lambda _: self.client.drain_queue(thread_id), f"drain:{thread_id}")

    def _drain_after(self, run_id: str) -> None:
        """The run-end path of this process's executions: a run that ended lets its thread's queue go on."""
        run = self.client.get_run(run_id)
        if run is not None and run.status in ("succeeded", "failed", "cancelled"):
            self.client.drain_queue(run.thread_id)

    def settle(self, run_id: str) -> None:
        """Wait (up to the server's wait cap) for this process's execution of a cancelled run to return, so
        the node it was in has landed its write before anything else is written on the thread."""
        future = self._executions.get(run_id)
        if future is not None:
            with contextlib.suppress(Exception):  # its outcome is the run record's business; we only wait
                future.result(timeout=self.settings.api_max_wait_seconds)

    def wait(self, run_id: str, seconds: float) -> RunRecord:
        """Poll the run store until the run leaves ``running`` (a queued run: is started by the drain, then
        leaves ``running``) or the (capped) wait is over."""
        run = self.client.get_run(run_id)
        assert run is not None
        deadline = self.clock() + min(seconds, self.settings.api_max_wait_seconds)
        while run.status in UNSETTLED and self.clock() < deadline:
            self.sleep(min(POLL_SECONDS, max(0.0, deadline - self.clock())))
            run = self.client.get_run(run_id) or run
        return run

    def register_version(self, tenant: str, agent_id: str | None, source: m.GraphSource) -> tuple[str, str]:
        """Load the graph under the policy, register it with the engine; return (agent id, ref)."""
        if (source.yaml is None) == (source.graph is None):
            kind = "missing" if source.yaml is None else "exclusive"
            details = [{"field": f"body.{name}", "type": kind} for name in ("yaml", "graph")]
            raise ApiError(422, "validation_error", "send exactly one of `yaml` (YAML text) or `graph` (a JSON object)", details)
        try:
            spec = policy.load_graph(yaml_text=source.yaml, graph=source.graph, allowed_modules=self.settings.api_allowed_modules)
        except GraphError as exc:
            raise ApiError(422, "invalid_graph", str(exc), [_problem(p) for p in exc.problems]) from None
        if agent_id is not None and spec.name != agent_id:
            raise ApiError(
                422,
                "validation_error",
                f"the graph's name is {spec.name!r} but the agent is {agent_id!r}; make them equal",
                [{"field": "body.graph.name", "type": "mismatch"}],
            )
        from stepwise.tools.permissions import PermissionManager
        from stepwise.tools.roles import RoleStore

        denied = PermissionManager(RoleStore(self.store)).check_graph(spec, tenant)
        if denied:
            raise ApiError(403, "tools_not_permitted", "; ".join(denied), [{"field": "body.graph", "type": "role"}])
        ref = self.client.register(spec)
        from stepwise.api.triggers import register_triggers

        register_triggers(self, tenant, spec.name, spec)
        return spec.name, ref


def default_authenticators(store: ApiStore, settings: ApiSettings) -> list[Authenticator]:
    """JWT bearer tokens when an issuer is configured (STEPWISE_JWT_ISSUER), then API keys (always)."""
    from stepwise.api.oidc import JwtAuthenticator

    jwt_auth = JwtAuthenticator.from_settings(settings)
    return [*([jwt_auth] if jwt_auth is not None else []), ApiKeyAuthenticator(store)]


def default_rate_limiter(settings: ApiSettings) -> RateLimiter:
    """A Valkey token bucket per tenant and route class when STEPWISE_RATE_LIMITS is set, else none."""
    if not settings.rate_limits:
        return NoLimit()
    from stepwise.api.ratelimit import ValkeyRateLimiter, parse_limits
    from stepwise.extras import require

    # fail at start-up, naming the extra: at request time a missing client would be a silent fail-open
    require("redis", "rate limits (STEPWISE_RATE_LIMITS)")
    return ValkeyRateLimiter(parse_limits(settings.rate_limits), url=settings.valkey_url, secret=settings.valkey_secret)


def _log_failure(future: Any) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("background run failed outside its steps: %s: %s", type(exc).__name__, exc)


def resume_after(last_event_id: str | None, after: str | None) -> int:
    """The seq a stream resumes after: ``Last-Event-ID`` (what an EventSource sends on reconnect) or ``?after=``."""
    raw = last_event_id if last_event_id not in (None, "") else after
    if raw in (None, ""):
        return 0
    assert raw is not None
    if not raw.strip().isdigit() or len(raw.strip()) > 18:
        raise ApiError(422, "validation_error", "Last-Event-ID / after must be an event seq (a non-negative integer)")
    return int(raw.strip())


def _problem(p: Any) -> dict[str, Any]:
    return {k: v for k, v in {"message": p.message, "fix": p.fix, "node": p.node, "line": p.line}.items() if v is not None}


def _admit_body(event: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """Bodies are UTF-8 text; a JSON body is measured (depth, integer size, lone surrogates) before any
    recursive parser sees it, so hostile input gets a 422 instead of a RecursionError or ValueError 500."""
    body = event.get("body")
    if not body:
        return event
    if event.get("isBase64Encoded"):
        import base64
        import binascii

        try:
            body = base64.b64decode(body).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise limits.LimitError("the request body is not UTF-8 text; send JSON (or YAML) encoded as UTF-8") from None
        event = {**event, "body": body, "isBase64Encoded": False}
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json") or (content_type == "" and _looks_like_json(body)):
        limits.check_json(str(body))
    return event


def _yaml_body(event: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """``Content-Type: application/yaml`` on a graph route: wrap the text as ``{"yaml": ...}`` for validation."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("", "application/x-www-form-urlencoded") and _looks_like_json(event.get("body")):
        return _with_json_type(event, event.get("body"))  # `curl -d '{...}'` without a content type
    if content_type not in YAML_TYPES or event.get("httpMethod", "").upper() != "POST":
        return event
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        import base64

        body = base64.b64decode(body).decode("utf-8", errors="replace")
    return _with_json_type(event, json.dumps({"yaml": body}))


def _looks_like_json(body: Any) -> bool:
    return isinstance(body, str) and body.lstrip()[:1] in ("{", "[")


def _with_json_type(event: dict[str, Any], body: Any) -> dict[str, Any]:
    new_headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    new_headers["content-type"] = "application/json"
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    multi["content-type"] = ["application/json"]
    return {**event, "headers": new_headers, "multiValueHeaders": multi, "body": body, "isBase64Encoded": False}


class ThreadSafeResolver(APIGatewayRestResolver):
    """Powertools keeps the current event on a *class* attribute (``BaseRouter.current_event``), shared by
    every resolver in the process: under a threaded server, two requests read each other's body and path
    (a resume ran with a concurrent cancel's empty body). Setting it on the instance shadows the class
    attribute for everything that reads ``self.current_event``/``app.current_event`` (routers included)."""

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self.current_event = self._to_proxy_event(dict(event))  # type: ignore[assignment]
        self.lambda_context = context
        return super().resolve(event, context)


def build_resolver(api: StepwiseApi) -> APIGatewayRestResolver:
    """One resolver: error handlers here, routes from ``api/routes/`` (one router per resource)."""
    app = ThreadSafeResolver(enable_validation=True)

    # -- errors -------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    def _api_error(exc: ApiError) -> Response[str]:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[str]:
        details = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "type": e.get("type"), "message": e.get("msg", "")} for e in exc.errors()
        ]
        summary = "; ".join(f"{d['field']}: {d['message'] or d['type']}" for d in details)
        return error_response(422, "validation_error", summary or "invalid request", details)

    @app.exception_handler(NotFoundError)
    def _no_route(exc: NotFoundError) -> Response[str]:
        event = app.current_event
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

    from stepwise.api import memory, roles
    from stepwise.api.routes import agents, events, health, runs, threads

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
        authenticators=authenticators,
        rate_limiter=rate_limiter,
        events=events,
        sleep=sleep,
        clock=clock,
    )
