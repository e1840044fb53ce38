"""Routes for threads: the thread's timeline (every run's events), state now or at a past seq (time travel),
and fork.

No ``from __future__ import annotations``: Powertools reads the route functions' annotations at run time.
"""

from functools import partial
from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter as Router

from stepwise.api import models as m
from stepwise.api.auth import tenant_of
from stepwise.api.errors import ApiError, documented
from stepwise.api.facade import MAX_EVENTS_PAGE, StepwiseApi
from stepwise.state.events import FORKED
from stepwise.store import thread_name


def router(api: StepwiseApi) -> Router:
    """A thread's state at any seq, and forks into new threads."""
    router = Router()

    tenant = partial(tenant_of, router)

    # -- threads --------------------------------------------------------------------------------
    @router.get(
        "/threads/<thread_id>/events",
        summary="A thread's timeline: every run's events by seq (a fork starts with its `forked` marker), and its runs",
        tags=["threads"],
        responses=documented(),
    )
    def thread_events(
        thread_id: str,
        after: Annotated[int, Query(ge=0, description="return events with seq > after")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 500,
    ) -> m.ThreadEvents:
        who = tenant()
        thread, _ = api.thread_of(who, thread_id)
        events = api.client.thread_events(thread, after=after)
        page = events[:limit]
        first = next(iter(events[:1] if after == 0 else api.client.thread_events(thread, upto=1)), None)  # a fork's marker is seq 1
        forked = (
            m.Forked(thread_id=thread_id, forked_from=thread_name(str(first.data.get("from"))), at=int(first.data.get("at") or 0))
            if first is not None and first.type == FORKED
            else None
        )
        runs = [r for r in api.client.runs(thread_id=thread, limit=100) if r.tenant == who]  # the thread index
        return m.ThreadEvents(
            thread_id=thread_id,
            events=[m.EventOut.of(e) for e in page],
            runs=[m.RunSummary.of(r) for r in runs],
            forked_from=forked,
            next_after=page[-1].seq if len(events) > limit else None,
        )

    @router.get(
        "/threads/<thread_id>/state",
        summary="A thread's state, now or at a past seq (time travel)",
        tags=["threads"],
        responses=documented(),
    )
    def thread_state(
        thread_id: str, at: Annotated[int | None, Query(ge=1, description="sequence number; default: the head")] = None
    ) -> m.ThreadState:
        thread, head = api.thread_of(tenant(), thread_id)
        if at is not None and at > head:
            raise ApiError(
                422,
                "validation_error",
                f"query.at: thread {thread_id!r} has seqs 1..{head}",
                [{"field": "query.at", "type": "out_of_range"}],
            )
        seq, state = api.client.state(thread, at=at)
        return m.ThreadState(thread_id=thread_id, seq=seq, head=head, state=state)

    @router.post(
        "/threads/<thread_id>/fork",
        status_code=201,
        summary="Fork a thread at a seq into a new thread",
        tags=["threads"],
        responses=documented(ok=201, body=True),
    )
    def fork(thread_id: str, body: Annotated[m.ForkThread | None, Body()] = None) -> m.Forked:
        who = tenant()
        thread, head = api.thread_of(who, thread_id)
        at = head if body is None or body.at is None else body.at  # no body: at the head, as documented
        if at > head:
            raise ApiError(
                422, "validation_error", f"body.at: thread {thread_id!r} has seqs 1..{head}", [{"field": "body.at", "type": "out_of_range"}]
            )
        new_thread = api.client.fork(thread, at)
        api.store.claim_thread(who, new_thread)
        api.events.publish("thread.forked", who, {"thread_id": new_thread, "from": thread_id, "at": at})
        return m.Forked(thread_id=new_thread, forked_from=thread_id, at=at)

    return router
