"""The web console: static pages served at ``/`` (and ``/console/<file>``), plus a router of the reads the
pages need beyond the run/thread API (``GET /runs`` and ``GET /threads/{id}/events`` live in routes/):
an agent version's compiled graph, agent stats. Every read goes through an engine client method.

Why the pages go through the API handler and not the ASGI server: the same handler runs behind API
Gateway, so the console deploys with the API (same pages, same routes, same auth). The pages are
public (they hold no data); every data request carries the API key the user typed in, like any client.

No ``from __future__ import annotations``: Powertools reads the route signatures at runtime.
"""

import json
import math
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter as Router

from stepwise.api import models as m
from stepwise.api.auth import Principal
from stepwise.errors import StepwiseError
from stepwise.state.ports import RunQuery, RunRecord

if TYPE_CHECKING:
    from stepwise.api.app import StepwiseApi

STATIC = Path(__file__).with_name("console_static")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Only our own files, no inline script, no framing: the pages hold the API key in sessionStorage.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MAX_STATS_RUNS = 20_000


@cache
def _files() -> dict[str, tuple[str, str]]:
    """name -> (text, content type), read once: a fixed set, so a path can never leave the folder."""
    return {p.name: (p.read_text(encoding="utf-8"), TYPES[p.suffix]) for p in STATIC.iterdir() if p.suffix in TYPES}


def static_response(method: str, path: str) -> dict[str, Any] | None:
    """The proxy response for a console page or asset, or None when ``path`` is not the console's."""
    if method not in ("GET", "HEAD"):
        return None
    if path in ("/", "/console"):  # the page's relative links resolve to <root>/console/… from both
        name = "index.html"
    elif path.startswith("/console/"):
        name = path[len("/console/") :]
    else:
        return None
    found = _files().get(name) if name != "index.html" or path in ("/", "/console") else None  # at /console/ its links would miss
    if found is None:
        message = "the console's page is at / (or /console)" if name in ("", "index.html") else f"no console file {name!r}"
        body = json.dumps({"error": {"code": "not_found", "message": message}})
        return {"statusCode": 404, "headers": {"Content-Type": "application/json"}, "body": body, "isBase64Encoded": False}
    text, content_type = found
    return {
        "statusCode": 200,
        "headers": {"Content-Type": content_type, **SECURITY_HEADERS},
        "body": "" if method == "HEAD" else text,
        "isBase64Encoded": False,
    }


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


def router(api: "StepwiseApi") -> Router:
    """The reads the console needs beyond runs and threads: a version's compiled graph, per-agent stats."""
    from stepwise.api.app import ApiError, _errors  # app imports this module for the static pages

    router = Router()

    def tenant() -> str:
        principal: Principal = router.context["principal"]
        return principal.tenant

    @router.get(
        "/agents/<agent_id>/versions/<version>/graph",
        summary="A version's compiled ASL and its graph spec (what the console draws)",
        tags=["agents"],
        responses=_errors(),
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
        "/stats/agents", summary="Per agent: runs and spend per day, p50/p95 duration, status counts", tags=["runs"], responses=_errors()
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
