"""``StepwiseApi``: the API object every route, stream and trigger works through, and its front door.

Call it with an API Gateway (REST, proxy) event and it returns the proxy response. Request flow: size
check → body admission and YAML normalisation (``bodies.py``) → the web console's static pages
(``console.py``) → authentication (``auth.py``) → rate limit seam (``hooks.py``) → the resolver (request
validation → route). Authentication runs before Powertools' validation on purpose: an anonymous caller
learns nothing about the API's schema from its errors. WebSocket events (AWS) go to ``websocket.py``.

Beside the front door, the helpers the routes share: tenant-scoped reads (an agent, a run, a thread:
anything of another tenant answers 404, exactly like something that does not exist), the run view,
background execution, double texting, webhooks and the wait loop.

This module imports no route: the resolver that holds the routes is built by ``resolver_factory``, which
``stepwise.api.app.create_app`` passes in (``app.build_resolver``). So the routes may import this module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

import stepwise
from stepwise.api import console, websocket
from stepwise.api import models as m
from stepwise.api.auth import ApiKeyAuthenticator, Authenticator, AuthError, Principal, check_one_credential
from stepwise.api.bodies import admit_body, yaml_body
from stepwise.api.errors import ApiError, proxy_error
from stepwise.api.hooks import EventSink, NoEvents, NoLimit, RateLimited, RateLimiter
from stepwise.api.settings import ApiSettings
from stepwise.client import Stepwise
from stepwise.errors import StepwiseError
from stepwise.graph import limits
from stepwise.state.ports import RunRecord
from stepwise.store import AgentRecord, ApiStore, thread_name

log = logging.getLogger("stepwise.api")

PUBLIC_ROUTES = frozenset({("GET", "/health"), ("GET", "/openapi.json")})
POLL_SECONDS = 0.5
#: A run the API answers 202 for: it has not finished, failed or stopped at a human node yet.
UNSETTLED = ("running", "queued")
MAX_EVENTS_PAGE = 1000
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


class StepwiseApi:
    """The API handler: ``api(event, context) -> proxy response``; one Powertools resolver per OS thread.

    ``resolver_factory(api)`` builds a resolver holding every route (``stepwise.api.app.build_resolver``);
    build the whole API with ``stepwise.api.app.create_app``."""

    def __init__(
        self,
        client_factory: Callable[[], Stepwise],
        *,
        store: ApiStore,
        settings: ApiSettings,
        resolver_factory: Callable[[StepwiseApi], APIGatewayRestResolver],
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
        self._ws: websocket.Connections | None = None
        self._watchers: Any = None
        self._local = threading.local()
        self._resolver_factory = resolver_factory
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
            resolver = self._resolver_factory(self)
            self._local.resolver = resolver
        return resolver

    def openapi(self) -> dict[str, Any]:
        doc = self.resolver.get_openapi_json_schema(
            title="Stepwise API",
            version=stepwise.__version__,
            description=(
                "Register agent graphs, run them, resume human steps, read and fork threads. Every error is an ErrorBody; "
                "a path asked with a method it does not serve answers 405 method_not_allowed with an Allow header. See docs/api.md."
            ),
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
            return proxy_error(413, "payload_too_large", f"request bodies are limited to {self.settings.api_max_body_bytes} bytes")
        if method not in HTTP_METHODS:
            return proxy_error(405, "method_not_allowed", f"{method or 'this method'} is not served; use {', '.join(HTTP_METHODS)}")
        try:
            event = admit_body(event, headers)
        except limits.LimitError as exc:
            return proxy_error(422, "invalid_body", str(exc))
        page = console.static_response(method, path)  # the web console's pages: public, hold no data
        if page is not None:
            return page
        event = yaml_body(event, headers)
        resolver = self.resolver
        limit_headers: Mapping[str, str] | None = None
        if (method, path) not in PUBLIC_ROUTES:
            admitted = self.admit(method, path, headers, event)
            if isinstance(admitted, dict):
                return admitted
            principal, limit_headers = admitted
            resolver.append_context(principal=principal)
        response = resolver.resolve(event, context)
        response["statusCode"] = int(response["statusCode"])
        if limit_headers:
            response["headers"] = {**(response.get("headers") or {}), **limit_headers}
        return response

    def admit(
        self, method: str, path: str, headers: dict[str, str], event: dict[str, Any]
    ) -> tuple[Principal, Mapping[str, str] | None] | dict[str, Any]:
        """Authenticate and rate-limit one request: the principal and rate-limit headers, or the response refusing it."""
        try:
            principal = self.authenticate(headers, event)
        except AuthError as exc:
            return proxy_error(401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})
        if principal is None:
            return proxy_error(
                401,
                "unauthorized",
                "send an API key in the x-api-key header (or Authorization: Bearer); see docs/api.md",
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            limit_headers = self.rate_limiter.check(principal, f"{method} {path}")
        except RateLimited as exc:
            return proxy_error(429, "rate_limited", str(exc), {"Retry-After": str(max(1, math.ceil(exc.retry_after))), **exc.headers})
        return principal, limit_headers

    def authenticate(self, headers: dict[str, str], event: dict[str, Any]) -> Principal | None:
        check_one_credential(headers)
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

    def thread_of(self, tenant: str, name: str) -> tuple[str, int]:
        """The engine thread behind one of the tenant's threads, and its head seq; else a 404."""
        thread = name if self._owns(tenant, name, claim=False) else self.store.thread_alias(tenant, name, create=False)
        head = self.client.head(thread) if thread else 0
        if not thread or head == 0:
            raise ApiError(404, "thread_not_found", f"no thread {name!r}")
        return thread, head

    def claim_thread(self, tenant: str, name: str) -> str:
        """The engine thread a run of ``tenant`` on its thread ``name`` goes to: ``name`` itself when the tenant
        owns it or it is free (then the tenant owns it from now on); when another tenant owns the name, a thread
        of the tenant's own behind it (``ApiStore.thread_alias``). Thread names are per tenant: the answer is the
        same whether or not someone else uses a name, so a tenant can neither learn nor squat another's names."""
        if self._owns(tenant, name, claim=True):
            return name
        thread = self.store.thread_alias(tenant, name, create=True)
        assert thread is not None
        self.store.claim_thread(tenant, thread)
        return thread

    def _owns(self, tenant: str, name: str, *, claim: bool) -> bool:
        """Whether the tenant owns the engine thread ``name`` (with ``claim``: taking it when nobody does).

        A thread started outside the API (the CLI) has no owner record: it belongs to the tenant of its
        runs, and a thread with events but no runs (a CLI fork) belongs to nobody on the API."""
        owner = self.store.thread_owner(name)
        if owner is not None:
            return owner == tenant
        if self.client.head(name) > 0:
            runs = self.client.runs(thread_id=name, limit=1000)
            if not runs or any(r.tenant != tenant for r in runs):
                return False
        elif not claim:
            return False
        return not claim or self.store.claim_thread(tenant, name) == tenant

    def publish_run(self, kind: str, run: RunRecord, **extra: Any) -> None:
        """Put ``run.<kind>`` on the run's tenant's event sink, naming its thread as the tenant does."""
        self.events.publish(f"run.{kind}", run.tenant, {"run_id": run.run_id, "thread_id": thread_name(run.thread_id), **extra})

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
    def ws_connections(self) -> websocket.Connections:
        """WebSocket connections and subscriptions (stepwise.api.websocket): the API table on AWS, memory otherwise."""
        if self._ws is None:
            aws = self.settings.backend == "aws"
            self._ws = websocket.DynamoConnections(self.settings.api_table) if aws else websocket.MemoryConnections()
        return self._ws

    @ws_connections.setter
    def ws_connections(self, value: websocket.Connections) -> None:
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
            known = {"thread_id": thread_name(run.thread_id), "agent": run.graph_ref.split("@", 1)[0]} if run else {}
            facts = {"run_id": run_id, **known}
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
                        "thread_id": thread_name(run.thread_id),
                        "status": run.status,
                        "agent": run.graph_ref.split("@", 1)[0],
                    }
                    if run.waiting:
                        detail["waiting"] = m.webhook_waiting(run.waiting)
                    if run.error:
                        detail["error"] = m.public_error(run.error)
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
            self.publish_run(kind, run, **({"by": policy} if kind == "cancelled" else {}))

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
