"""Routes for runs: list them (filtered, paged), read one, page its events, stream them, resume a waiting
run, redrive a failed one, cancel.

No ``from __future__ import annotations``: Powertools reads the route functions' annotations at run time.
"""

from functools import partial
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter as Router

from stepwise.api import models as m
from stepwise.api.auth import tenant_of
from stepwise.api.errors import ApiError, documented
from stepwise.api.facade import MAX_EVENTS_PAGE, StepwiseApi
from stepwise.errors import AnswerError, ConflictingRequestError, StepwiseError, WaitTimedOutError
from stepwise.state.ports import RunQuery, RunRecord, RunStatus, RunTransitionError
from stepwise.state.waits import timed_out
from stepwise.store import thread_name

MAX_RUNS_PAGE = 1000


def runs_page(api: StepwiseApi, who: str, query: RunQuery) -> m.RunList:
    """``GET /runs``: the caller's runs, or (operators only) another tenant's, through ``list_runs``."""
    if query.tenant != who and who not in api.settings.admin_tenants:
        raise ApiError(403, "forbidden", "listing another tenant's runs needs an operator key (a tenant in STEPWISE_ADMIN_TENANTS)")
    try:
        page = api.client.list_runs(query)
    except ValueError as exc:  # a cursor that is not ours
        raise ApiError(422, "validation_error", f"query.{exc}", [{"field": "query.cursor", "type": "invalid_cursor"}]) from None
    agents = sorted(a.name for a in api.store.list_agents(query.tenant))
    return m.RunList(runs=[m.RunSummary.of(r) for r in page.runs], next_cursor=page.next_cursor, agents=agents)


def list_router(api: StepwiseApi) -> Router:
    """``GET /runs``: one page of a tenant's runs from the store's (tenant, created_at) index."""
    router = Router()

    tenant = partial(tenant_of, router)

    @router.get(
        "/runs",
        summary="Your runs, newest first: filter by status, agent, time and cost; paged",
        tags=["runs"],
        responses=documented(403),
    )
    def list_runs(
        status: Annotated[RunStatus | None, Query()] = None,
        agent: Annotated[str | None, Query(min_length=1, max_length=80, pattern=r"^[^@#]+$")] = None,
        since: Annotated[float | None, Query(ge=0, description="created at or after (epoch seconds)")] = None,
        until: Annotated[float | None, Query(ge=0, description="created before (epoch seconds)")] = None,
        min_cost: Annotated[float | None, Query(ge=0, description="LLM spend at least (USD)")] = None,
        max_cost: Annotated[float | None, Query(ge=0, description="LLM spend at most (USD)")] = None,
        tenant_id: Annotated[str | None, Query(alias="tenant", max_length=64, description="another tenant's runs (operators only)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_RUNS_PAGE)] = 100,
        cursor: Annotated[str | None, Query(max_length=600, description="next_cursor of the previous page")] = None,
    ) -> m.RunList:
        who = tenant()
        query = RunQuery.model_construct(
            tenant=tenant_id or who,
            status=status,
            agent=agent,
            since=since,
            until=until,
            min_cost=min_cost,
            max_cost=max_cost,
            thread_id=None,
            limit=limit,
            cursor=cursor,
        )  # each field was validated as a query parameter above
        return runs_page(api, who, query)

    return router


def _timed_out_now(api: StepwiseApi, before: RunRecord) -> None:
    """A late answer made the local engine fail its run with States.Timeout: say so, and let the thread's queue go on."""
    after = api.client.get_run(before.run_id)
    if before.status == "waiting" and after is not None and after.status == "failed":
        api.publish_run("failed", before)
        api.drain(before.thread_id)


def router(api: StepwiseApi) -> Router:
    """A run: its record and state, its events (paged or as server-sent events), resume and cancel."""
    router = Router()

    tenant = partial(tenant_of, router)

    # -- runs -----------------------------------------------------------------------------------
    @router.get("/runs/<run_id>", summary="A run: status, what it waits for, and its thread's state", tags=["runs"], responses=documented())
    def get_run(run_id: str) -> m.Run:
        return api.run_view(api.run_of(tenant(), run_id))

    @router.get("/runs/<run_id>/events", summary="A run's events, oldest first, paged by seq", tags=["runs"], responses=documented())
    def run_events(
        run_id: str,
        after: Annotated[int, Query(ge=0, description="return events with seq > after")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 200,
    ) -> m.EventsPage:
        run = api.run_of(tenant(), run_id)
        events = api.client.run_events(run_id, after=after)
        page = events[:limit]
        next_after = page[-1].seq if len(events) > limit else None
        events_out = [m.EventOut.of(e) for e in page]
        return m.EventsPage(run_id=run_id, thread_id=thread_name(run.thread_id), events=events_out, next_after=next_after)

    @router.get(
        "/runs/<run_id>/stream",
        summary="A run's events as server-sent events (live under `stepwise serve`; resumable with Last-Event-ID)",
        tags=["runs"],
        responses={
            **documented(),
            200: {
                "description": "text/event-stream: `id: <seq>`, `event: <type>`, `data: <event JSON>`",
                "content": {"text/event-stream": {}},
            },
        },
    )
    def run_stream(
        run_id: str,
        after: Annotated[str | None, Query(description="resume after this seq (or send Last-Event-ID)")] = None,
    ) -> Response[str]:
        """Through API Gateway (no response streaming) this answers the events so far and, if the run
        has ended, the closing `end` event; reconnect with Last-Event-ID to continue. `stepwise serve`
        keeps the connection open and streams live (stepwise.api.stream)."""
        from stepwise.api.stream import TERMINAL, backlog, event_frame, resume_after, sse

        run = api.run_of(tenant(), run_id)
        start = resume_after(router.current_event.headers.get("last-event-id"), after)
        events, status = backlog(api, run_id, run.thread_id, start)
        body = b"retry: 1000\n\n" + b"".join(event_frame(e) for e in events)
        if status in TERMINAL:
            body += sse({"run_id": run_id, "status": status}, event="end")
        return Response(
            status_code=200, content_type="text/event-stream; charset=utf-8", body=body.decode(), headers={"Cache-Control": "no-cache"}
        )

    @router.post(
        "/runs/<run_id>/resume",
        summary="Answer a waiting human node and continue the run",
        tags=["runs"],
        responses=documented(409, body=True),
    )
    def resume(run_id: str, body: Annotated[m.ResumeRun, Body()]) -> m.Run:
        run = api.run_of(tenant(), run_id)
        if run.status not in ("waiting", "running") and not timed_out(run):  # timed out: the client's 409 wait_timed_out
            raise ApiError(409, "run_not_waiting", f"run {run_id!r} is {run.status}; only a waiting run can be resumed")
        try:  # a running run is continued only if its process died (else 409 run_running)
            api.client.resume(run_id, body.input, interrupt_id=body.interrupt_id)
        except AnswerError as exc:  # the answer does not fit the node's `input:` schema (or its conditions)
            details = [{"field": "body.input", "type": "invalid_answer", "message": p} for p in exc.problems]
            raise ApiError(422, "invalid_answer", str(exc), details) from None
        except ConflictingRequestError as exc:
            if isinstance(exc, WaitTimedOutError):
                _timed_out_now(api, run)
            raise ApiError(409, exc.code, str(exc)) from None
        except StepwiseError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        api.publish_run("resumed", run)
        run = api.wait(run_id, body.wait_seconds)
        api.drain(run.thread_id)
        if run.status != "running":
            api.publish_run(run.status, run)
        return api.run_view(run)

    @router.post("/runs/<run_id>/cancel", summary="Cancel a running or waiting run", tags=["runs"], responses=documented(409))
    def cancel(run_id: str) -> m.Run:
        run = api.run_of(tenant(), run_id)
        if run.status in ("succeeded", "failed", "cancelled"):
            raise ApiError(409, "run_finished", f"run {run_id!r} already {run.status}")
        try:  # compare-and-set: a run that finished (or was cancelled) meanwhile is not overwritten
            run = api.client.cancel(run_id, cause=f"cancelled through the API by {router.context['principal'].subject}")
        except RunTransitionError as exc:
            raise ApiError(409, "run_finished", str(exc)) from None
        api.publish_run("cancelled", run)
        api.drain(run.thread_id)
        return api.run_view(run)

    return router


def redrive_router(api: StepwiseApi) -> Router:
    """``POST /runs/{id}/redrive``: a failed run re-runs from the state that failed."""
    router = Router()

    tenant = partial(tenant_of, router)

    @router.post(
        "/runs/<run_id>/redrive",
        summary="Re-run a failed run from its failed node (nodes that completed are not run again)",
        tags=["runs"],
        responses=documented(409, body=True),
    )
    def redrive(run_id: str, body: Annotated[m.RedriveRun | None, Body()] = None) -> m.Run:
        run = api.run_of(tenant(), run_id)
        if run.status != "failed":
            raise ApiError(409, "run_not_failed", f"run {run_id!r} is {run.status}; only a failed run can be redriven")
        try:  # compare-and-set from failed: of two redrives, one wins
            api.client.redrive(run_id)
        except ConflictingRequestError as exc:
            raise ApiError(409, "run_not_failed", str(exc)) from None
        api.publish_run("redriven", run)
        run = api.wait(run_id, body.wait_seconds if body is not None else 0)
        if run.status != "running":
            api.publish_run(run.status, run)
        return api.run_view(run)

    return router
