"""The web console: static pages served at ``/`` (and ``/console/<file>``), plus the read routes the
pages need beyond the run/thread API: the runs list, an agent version's compiled graph, agent stats.

Why the pages go through the API handler and not the ASGI server: the same handler runs behind API
Gateway, so the console deploys with the API (same pages, same routes, same auth). The pages are
public (they hold no data); every data request carries the API key the user typed in, like any client.

No ``from __future__ import annotations``: Powertools reads the route signatures at runtime.
"""

import json
import math
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, Field

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
MAX_LIST = 5000
Status = Literal["running", "waiting", "succeeded", "failed", "cancelled"]


@cache
def _files() -> dict[str, tuple[str, str]]:
    """name -> (text, content type), read once: a fixed set, so a path can never leave the folder."""
    return {p.name: (p.read_text(encoding="utf-8"), TYPES[p.suffix]) for p in STATIC.iterdir() if p.suffix in TYPES}


def static_response(method: str, path: str) -> dict[str, Any] | None:
    """The proxy response for a console page or asset, or None when ``path`` is not the console's."""
    if method not in ("GET", "HEAD"):
        return None
    if path in ("/", "/console", "/console/"):
        name = "index.html"
    elif path.startswith("/console/"):
        name = path[len("/console/") :]
    else:
        return None
    found = _files().get(name)
    if found is None:
        body = json.dumps({"error": {"code": "not_found", "message": f"no console file {name!r}"}})
        return {"statusCode": 404, "headers": {"Content-Type": "application/json"}, "body": body, "isBase64Encoded": False}
    text, content_type = found
    return {
        "statusCode": 200,
        "headers": {"Content-Type": content_type, **SECURITY_HEADERS},
        "body": "" if method == "HEAD" else text,
        "isBase64Encoded": False,
    }


class RunSummary(BaseModel):
    run_id: str
    thread_id: str
    agent: str
    graph_ref: str
    status: Status
    created_at: float
    finished_at: float | None = None
    duration_s: float | None = None
    steps: int = 0
    waiting_node: str | None = None
    error: str | None = None


class RunList(BaseModel):
    runs: list[RunSummary]
    total: int = Field(description="runs matching the filters (the list holds the newest `limit`)")
    agents: list[str] = Field(description="agents with runs, for the filter")


class AgentGraph(BaseModel):
    agent: str
    version: int
    ref: str
    asl: dict[str, Any] = Field(description="the compiled Amazon States Language document: what runs")
    spec: dict[str, Any] = Field(description="the graph as registered (node kinds, conditions, human input schemas)")


class AgentStats(BaseModel):
    agent: str
    runs: int
    by_status: dict[str, int]
    runs_per_day: dict[str, int]
    p50_s: float | None
    p95_s: float | None
    spend_usd: float
    tokens: int


class StatsOut(BaseModel):
    days: int
    sampled_runs: int
    agents: list[AgentStats]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(run: Any) -> RunSummary:
    error = run.error or None
    return RunSummary(
        run_id=run.run_id,
        thread_id=run.thread_id,
        agent=run.graph_ref.split("@", 1)[0],
        graph_ref=run.graph_ref,
        status=run.status,
        created_at=run.created_at,
        finished_at=run.finished_at,
        duration_s=(run.finished_at - run.created_at) if run.finished_at else None,
        steps=run.steps,
        waiting_node=(run.waiting or {}).get("node"),
        error=str(error.get("message") or error.get("error") or error)[:500] if isinstance(error, dict) else None,
    )


def add_console_routes(app: Any, api: Any, tenant: Callable[[], str], error: Callable[..., Exception], errors: Callable[..., Any]) -> None:
    def tenant_runs() -> list[Any]:
        who = tenant()
        return [r for r in api.client.services.runs.list(limit=100_000) if r.tenant == who]

    @app.get("/runs", summary="Your runs, newest first (filter by status and agent)", tags=["runs"], responses=errors())
    def list_runs(
        status: Annotated[Status | None, Query()] = None,
        agent: Annotated[str | None, Query(max_length=80)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 200,
    ) -> RunList:
        runs = tenant_runs()
        agents = sorted({r.graph_ref.split("@", 1)[0] for r in runs})
        chosen = [r for r in runs if (status is None or r.status == status) and (agent is None or r.graph_ref.split("@", 1)[0] == agent)]
        return RunList(runs=[summary(r) for r in chosen[:limit]], total=len(chosen), agents=agents)

    @app.get(
        "/agents/<agent_id>/versions/<version>/graph",
        summary="A version's compiled ASL and its graph spec (what the console draws)",
        tags=["agents"],
        responses=errors(),
    )
    def agent_graph(agent_id: str, version: int) -> AgentGraph:
        record = api.agent(tenant(), agent_id)
        found = record.version(version)
        if found is None:
            raise error(404, "version_not_found", f"agent {agent_id!r} has versions 1..{len(record.versions)}")
        hit = api.client.services.registry.get(found.ref)
        if hit is None:
            raise error(404, "version_not_found", f"graph {found.ref} is not in this store")
        spec, asl = hit
        spec_data = spec if isinstance(spec, dict) else spec.canonical()
        return AgentGraph(agent=agent_id, version=version, ref=found.ref, asl=asl, spec=spec_data)

    @app.get("/stats/agents", summary="Per agent: runs per day, p50/p95 duration, spend", tags=["runs"], responses=errors())
    def agent_stats(
        days: Annotated[int, Query(ge=1, le=90)] = 14,
        sample: Annotated[int, Query(ge=1, le=MAX_LIST, description="newest runs whose LLM cost is summed")] = 500,
    ) -> StatsOut:
        since = time.time() - days * 86400
        runs = [r for r in tenant_runs() if r.created_at >= since]
        per: dict[str, list[Any]] = {}
        for run in runs:
            per.setdefault(run.graph_ref.split("@", 1)[0], []).append(run)
        costed = {r.run_id for r in runs[:sample]}
        out = []
        for name, items in sorted(per.items()):
            by_day: dict[str, int] = {}
            by_status: dict[str, int] = {}
            for r in items:
                day = time.strftime("%Y-%m-%d", time.gmtime(r.created_at))
                by_day[day] = by_day.get(day, 0) + 1
                by_status[r.status] = by_status.get(r.status, 0) + 1
            durations = [r.finished_at - r.created_at for r in items if r.finished_at]
            spend, tokens = 0.0, 0
            for r in items:
                if r.run_id in costed:
                    for e in api.client.services.events.read(r.thread_id, after=0):
                        if e.run_id == r.run_id and e.type == "llm_call":
                            spend += float(e.data.get("cost_usd") or 0)
                            tokens += int(e.data.get("input_tokens") or 0) + int(e.data.get("output_tokens") or 0)
            out.append(
                AgentStats(
                    agent=name,
                    runs=len(items),
                    by_status=by_status,
                    runs_per_day=dict(sorted(by_day.items())),
                    p50_s=percentile(durations, 50),
                    p95_s=percentile(durations, 95),
                    spend_usd=round(spend, 6),
                    tokens=tokens,
                )
            )
        return StatsOut(days=days, sampled_runs=len(costed), agents=out)
