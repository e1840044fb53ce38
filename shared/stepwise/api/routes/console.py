"""Routes the web console needs beyond the run/thread API (``GET /runs`` and ``GET /threads/{id}/events``
live beside this module): an agent version's compiled graph, agent stats. Every read goes through an
engine client method. The console's pages themselves are static files (``stepwise.api.console``).

No ``from __future__ import annotations``: Powertools reads the route functions' annotations at run time.
"""

import math
import time
from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter as Router

from stepwise.api import models as m
from stepwise.api.auth import Principal
from stepwise.api.errors import ApiError, documented
from stepwise.api.facade import StepwiseApi
from stepwise.errors import StepwiseError
from stepwise.state.ports import RunQuery, RunRecord

MAX_STATS_RUNS = 20_000


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def agent_stats(name: str, runs: list[RunRecord]) -> m.AgentStats:
    """Runs per day, status counts, p50/p95 duration and spend per day of one agent's runs."""
    by_day: dict[str, int] = {}
    spend_day: dict[str, float] = {}
    by_status: dict[str, int] = {}
    for r in runs:
        day = time.strftime("%Y-%m-%d", time.gmtime(r.created_at))
        by_day[day] = by_day.get(day, 0) + 1
        spend_day[day] = spend_day.get(day, 0.0) + r.cost_usd
        by_status[r.status] = by_status.get(r.status, 0) + 1
    durations = [r.finished_at - r.created_at for r in runs if r.finished_at]
    return m.AgentStats(
        agent=name,
        runs=len(runs),
        by_status=by_status,
        runs_per_day=dict(sorted(by_day.items())),
        spend_per_day={d: round(v, 6) for d, v in sorted(spend_day.items())},
        p50_s=percentile(durations, 50),
        p95_s=percentile(durations, 95),
        spend_usd=round(sum(r.cost_usd for r in runs), 6),
        tokens=sum(r.tokens for r in runs),
    )


def router(api: StepwiseApi) -> Router:
    """The reads the console needs beyond runs and threads: a version's compiled graph, per-agent stats."""
    router = Router()

    def tenant() -> str:
        principal: Principal = router.context["principal"]
        return principal.tenant

    @router.get(
        "/agents/<agent_id>/versions/<version>/graph",
        summary="A version's compiled ASL and its graph spec (what the console draws)",
        tags=["agents"],
        responses=documented(),
    )
    def agent_graph(agent_id: str, version: int) -> m.AgentGraph:
        record = api.agent(tenant(), agent_id)
        found = record.version(version)
        if found is None:
            raise ApiError(404, "version_not_found", f"agent {agent_id!r} has versions 1..{len(record.versions)}")
        try:
            spec, asl = api.client.compiled(found.ref)
        except StepwiseError:
            raise ApiError(404, "version_not_found", f"graph {found.ref} is not in this store") from None
        return m.AgentGraph(agent=agent_id, version=version, ref=found.ref, asl=asl, spec=spec)

    @router.get(
        "/stats/agents",
        summary="Per agent: runs and spend per day, p50/p95 duration, status counts",
        tags=["runs"],
        responses=documented(),
    )
    def stats(
        days: Annotated[int, Query(ge=1, le=90)] = 14,
        max_runs: Annotated[int, Query(ge=1, le=MAX_STATS_RUNS, description="read at most this many (newest) runs")] = 5000,
    ) -> m.StatsOut:
        query = RunQuery(tenant=tenant(), since=time.time() - days * 86400, limit=min(max_runs, 1000), cursor=None)
        runs: list[RunRecord] = []
        truncated = False
        while True:  # pages of the tenant's index within the window
            page = api.client.list_runs(query)
            runs += page.runs
            if page.next_cursor is None:
                break
            if len(runs) >= max_runs:
                truncated = True
                break
            query = query.model_copy(update={"cursor": page.next_cursor, "limit": min(1000, max_runs - len(runs))})
        per: dict[str, list[RunRecord]] = {}
        for run in runs:
            per.setdefault(run.graph_ref.split("@", 1)[0], []).append(run)
        return m.StatsOut(days=days, runs=len(runs), truncated=truncated, agents=[agent_stats(n, rs) for n, rs in sorted(per.items())])

    return router
