"""Request and response bodies of the HTTPS API (pydantic: validation and the OpenAPI document)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stepwise.state.events import FORKED, Event
from stepwise.state.ports import RunRecord
from stepwise.state.waits import deadline_of
from stepwise.store import AgentRecord, VersionRecord, thread_name

AGENT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
THREAD_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
ALIAS = r"^[A-Za-z0-9_-]{1,40}$"  # an alias name, as set (PUT .../aliases/{alias}) and as executed
STEPS = (  # a run's `steps`, in its view and in a runs list
    "top-level nodes completed, counted when the run waits or ends (a parallel block counts as its split and join; "
    "a subgraph's own nodes count too; a cancelled run keeps the count of its last wait)"
)


class _Body(BaseModel):
    """A request body: unknown keys and values of another JSON type are refused (strict: ``"5"`` is not a number,
    ``"yes"`` not a boolean), so every field reads as documented and none is guessed at."""

    model_config = ConfigDict(extra="forbid", strict=True)


class GraphSource(_Body):
    """A graph given as YAML text or as a JSON object (exactly one)."""

    yaml: str | None = Field(None, description="the graph as YAML text (exactly one of yaml / graph)", max_length=512_000)
    graph: dict[str, Any] | None = Field(None, description="the graph as a JSON object (exactly one of yaml / graph)")
    description: str = Field("", max_length=2000)


class RegisterAgent(GraphSource):
    """A new agent: its graph, and optionally its id (default: the graph's name)."""

    id: str | None = Field(None, pattern=AGENT_ID, description="agent id; defaults to the graph's `name`, and must equal it")


class AddVersion(GraphSource):
    """A new version of an agent's graph."""

    promote: bool = Field(True, description="point the `live` alias at this version")


WebhookEvent = Literal["succeeded", "failed", "cancelled", "waiting"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("succeeded", "failed", "cancelled", "waiting")


class Webhook(_Body):
    """Where to POST a run's events, and which ones."""

    url: str = Field(
        max_length=2048, description="https URL to POST run events to (public addresses only unless the server allows private)"
    )
    secret: str = Field(min_length=16, max_length=256, description="HMAC-SHA256 key for the Stepwise-Signature header (never stored)")
    events: list[WebhookEvent] = Field(default_factory=lambda: list(WEBHOOK_EVENTS), description="which run statuses to report")


class WebhookInfo(BaseModel):
    """An agent's webhook as the API shows it: never the secret."""

    agent: str
    url: str | None = None
    events: list[WebhookEvent] = Field(default_factory=list)
    configured: bool = False


class ExecuteAgent(_Body):
    """Start a run of an agent version: its input, thread, and whether to wait for it."""

    input: dict[str, Any] = Field(default_factory=dict, description="initial state update of the run")
    version: int | None = Field(None, ge=1, description="run this version (default: the `live` alias)")
    alias: str | None = Field(None, pattern=ALIAS, description="run the version this alias points at")
    thread_id: str | None = Field(None, pattern=THREAD_ID, description="continue this thread (yours), or start it with this id")
    wait_seconds: float = Field(
        0, ge=0, le=900, description="wait up to this long for the run to leave `running` or `queued` (capped by the server)"
    )
    webhook: Webhook | None = Field(
        None,
        description="POST a signed event to this URL when the run ends or waits (docs/api.md#webhooks); "
        "default: the agent's webhook (PUT /agents/{id}/webhook), if it has one",
    )
    multitask: Literal["reject", "enqueue", "interrupt", "rollback"] = Field(
        "reject",
        description="double texting: what to do when the thread already has a run in flight — `reject` (409 thread_busy "
        "if a run is running or, when `reject` is given by name, waiting on it; left out, a run may start beside a waiting one), "
        "`enqueue` (record the run as `queued`; it starts when the runs before it end, in order; `wait_seconds` waits for it "
        "to be started and leave `running`, else 202 with `status: queued`), "
        "`interrupt` (cancel it — it stops before its "
        "next node — and run from the state it reached; a waiting run is cancelled too), `rollback` (cancel it and "
        "discard its writes: the new run starts from the state before it)",
    )
    background: bool = Field(
        False,
        description="answer with the run id at once (202) and execute in the background, then follow GET /runs/{id}/stream; "
        "runs on Step Functions always start in the background",
    )


class ResumeRun(_Body):
    """The answer to a paused run's question (its human node's input)."""

    input: dict[str, Any] = Field(default_factory=dict, description="the human node's answer, merged into the state")
    interrupt_id: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{16}$",
        description="the `waiting.interrupt_id` being answered; an answer to an earlier wait gets 409 stale_interrupt",
    )
    wait_seconds: float = Field(0, ge=0, le=900)


class RedriveRun(_Body):
    """Re-run a failed run from the state that failed."""

    wait_seconds: float = Field(0, ge=0, le=900, description="wait up to this long for the run to leave `running`")


class ForkThread(_Body):
    """Fork a thread at a sequence number (default: its head)."""

    at: int | None = Field(None, ge=1, description="sequence number to fork at (default: the head)")


class SetAlias(_Body):
    """Point an alias at a version."""

    version: int = Field(ge=1)


# -- responses ---------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a message saying how to fix it, and field details."""

    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every error response's body."""

    error: ErrorDetail


class AgentVersion(BaseModel):
    """One immutable version of an agent: its graph ref and when it was added."""

    version: int
    ref: str
    description: str = ""
    created_at: float

    @classmethod
    def of(cls, v: VersionRecord) -> AgentVersion:
        return cls(version=v.version, ref=v.ref, description=v.description, created_at=v.created_at)


class Agent(BaseModel):
    """An agent with its versions and aliases."""

    id: str
    description: str
    versions: list[AgentVersion]
    aliases: dict[str, int]
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, a: AgentRecord) -> Agent:
        return cls(
            id=a.name,
            description=a.description,
            versions=[AgentVersion.of(v) for v in a.versions],
            aliases=a.aliases,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


class AgentSummary(BaseModel):
    """An agent in a list: its latest version and aliases."""

    id: str
    description: str
    latest_version: int
    aliases: dict[str, int]
    updated_at: float


class AgentList(BaseModel):
    """The caller's agents."""

    agents: list[AgentSummary]


class VersionResult(BaseModel):
    """The version a register or add-version created."""

    agent: str
    version: int
    ref: str
    created: bool
    aliases: dict[str, int]


class Waiting(BaseModel):
    """What a paused run waits for: the human node, its prompt and interrupt id, and until when."""

    node: str | None = None
    prompt: str | None = None
    interrupt_id: str | None = None
    deadline: float | None = Field(
        None,
        description="epoch seconds: with no answer by then the run fails with States.Timeout (the node's config.timeout_seconds); "
        "absent: it waits until answered",
    )

    @classmethod
    def of(cls, waiting: dict[str, Any]) -> Waiting:
        """From a run record's ``waiting``: never its task token."""
        return cls(
            node=waiting.get("node"), prompt=waiting.get("prompt"), interrupt_id=waiting.get("interrupt_id"), deadline=deadline_of(waiting)
        )


class Run(BaseModel):
    """A run: status, what it waits for, and its thread's state."""

    run_id: str
    thread_id: str
    agent: str
    version: int | None
    graph_ref: str
    status: Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]
    created_at: float
    updated_at: float
    finished_at: float | None = None
    steps: int = Field(0, description=STEPS)
    error: dict[str, Any] | None = None
    waiting: Waiting | None = None
    state: dict[str, Any] | None = Field(None, description="the thread's current state")

    @classmethod
    def of(cls, run: RunRecord, version: int | None, state: dict[str, Any] | None) -> Run:
        return cls(
            run_id=run.run_id,
            thread_id=thread_name(run.thread_id),
            agent=run.graph_ref.split("@", 1)[0],
            version=version,
            graph_ref=run.graph_ref,
            status=run.status,
            created_at=run.created_at,
            updated_at=run.updated_at,
            finished_at=run.finished_at,
            steps=run.steps,
            error=public_error(run.error) if run.error else None,
            waiting=Waiting.of(run.waiting) if run.waiting else None,
            state=state,
        )


#: Fields of an event's data that only the engine may read: an interrupt's task token resumes the run
#: directly on Step Functions, and its payload is the engine's resume cursor.
PRIVATE_EVENT_FIELDS = frozenset({"token", "payload"})


def webhook_waiting(waiting: dict[str, Any]) -> dict[str, Any]:
    """What a ``run.waiting`` webhook says of the wait: what ``GET /runs/{id}`` shows of it, without empty fields."""
    return Waiting.of(waiting).model_dump(exclude_none=True)


def public_error(error: dict[str, Any]) -> dict[str, Any]:
    """A failed node's or run's error as API clients see it: the message, node, ``where`` and ``fix``, without
    the traceback and the ``cause``'s ``stackTrace`` (server paths and engine frames). Operators read those in
    the event log (``stepwise history RUN_ID -o json`` on the server's store) and the step's log."""
    out = {k: v for k, v in error.items() if k != "traceback"}
    cause = out.get("cause")
    try:
        parsed = json.loads(cause) if isinstance(cause, str) and cause.startswith("{") else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "stackTrace" in parsed:
        out["cause"] = json.dumps({k: v for k, v in parsed.items() if k != "stackTrace"})
    if isinstance(out.get("redrive"), dict):  # where a redrive starts; its cursor is the engine's (thread ids, visits)
        out["redrive"] = {k: v for k, v in out["redrive"].items() if k != "cursor"}
    return out


def public_event(e: Event) -> dict[str, Any]:
    """An event as API clients see it (REST, SSE, WebSocket): the log record without engine-only secrets
    and without tracebacks (``public_error``)."""
    out = e.to_json()
    out.pop("key", None)
    out["data"] = public_error({k: v for k, v in e.data.items() if k not in PRIVATE_EVENT_FIELDS})
    if e.type == FORKED and isinstance(out["data"].get("from"), str):  # the thread forked from, by its tenant's name
        out["data"]["from"] = thread_name(out["data"]["from"])
    return out


class EventOut(BaseModel):
    """One event of a run's log, as the API shows it."""

    seq: int
    type: str
    run_id: str
    node: str | None
    scope: str
    ts: float
    data: dict[str, Any]

    @classmethod
    def of(cls, e: Event) -> EventOut:
        return cls.model_validate(public_event(e))


class EventsPage(BaseModel):
    """A page of a run's events, with where to continue."""

    run_id: str
    thread_id: str
    events: list[EventOut]
    next_after: int | None = Field(None, description="pass as `after` to read the next page; null at the end")


class ThreadState(BaseModel):
    """A thread's state folded up to a sequence number."""

    thread_id: str
    seq: int
    head: int
    state: dict[str, Any]


class Forked(BaseModel):
    """The new thread a fork created, and where it branched off."""

    thread_id: str
    forked_from: str
    at: int


class Health(BaseModel):
    """Liveness and the server's version."""

    status: str
    version: str


class EventEntry(_Body):
    """One event for the local bus, in EventBridge PutEvents' shape (``detail_type`` = ``DetailType``)."""

    source: str = Field(min_length=1, max_length=256)
    detail_type: str = Field(min_length=1, max_length=128)
    detail: dict[str, Any] = Field(default_factory=dict)
    resources: list[str] = Field(default_factory=list, max_length=20)
    id: str | None = Field(default=None, min_length=1, max_length=128, description="event id (idempotency); default: a new uuid")


class PutEvents(_Body):
    """Events to put on the caller's bus (each starts the runs whose triggers match)."""

    entries: list[EventEntry] = Field(min_length=1, max_length=10)


class TriggeredRun(BaseModel):
    """A run an event started (or would have, when it was a duplicate)."""

    agent: str
    trigger: str
    run_id: str | None
    duplicate: bool = Field(description="true when this event id already started the run (a redelivery)")


class PutEventResult(BaseModel):
    """What one put event started."""

    event_id: str
    runs: list[TriggeredRun]


class PutEventsResult(BaseModel):
    """What each put event started, in order."""

    results: list[PutEventResult]


# -- the runs list, a thread's timeline, graphs and stats (the console and `stepwise runs --url`) --------
RunStatusName = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"]


class RunSummary(BaseModel):
    """A run in a list: status, agent, times and cost."""

    run_id: str
    thread_id: str
    agent: str
    graph_ref: str
    status: RunStatusName
    created_at: float
    finished_at: float | None = None
    duration_s: float | None = None
    steps: int = Field(0, description=STEPS)
    cost_usd: float = Field(0.0, description="LLM spend, summed when the run waits or ends")
    tokens: int = 0
    waiting_node: str | None = None
    error: str | None = None
    tenant: str

    @classmethod
    def of(cls, run: RunRecord) -> RunSummary:
        error = run.error or None
        return cls(
            run_id=run.run_id,
            thread_id=thread_name(run.thread_id),
            agent=run.graph_ref.split("@", 1)[0],
            graph_ref=run.graph_ref,
            status=run.status,
            created_at=run.created_at,
            finished_at=run.finished_at,
            duration_s=(run.finished_at - run.created_at) if run.finished_at else None,
            steps=run.steps,
            cost_usd=run.cost_usd,
            tokens=run.tokens,
            waiting_node=(run.waiting or {}).get("node"),
            error=str(error.get("message") or error.get("error") or error)[:500] if isinstance(error, dict) else None,
            tenant=run.tenant,
        )


class RunList(BaseModel):
    """A page of runs, newest first."""

    runs: list[RunSummary]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next (older) page; null at the end")
    agents: list[str] = Field(description="the tenant's registered agents, for a filter")


class ThreadEvents(BaseModel):
    """A thread's timeline: every run's events by seq, and its runs."""

    thread_id: str
    events: list[EventOut] = Field(description="every run's events on the thread, by seq; a fork starts with `forked`")
    runs: list[RunSummary] = Field(description="the runs on this thread, newest first")
    forked_from: Forked | None = Field(None, description="where this thread was forked from, if it was")
    next_after: int | None = Field(None, description="pass as `after` to read the next page; null at the end")


class AgentGraph(BaseModel):
    """A version's compiled graph (for drawing it)."""

    agent: str
    version: int
    ref: str
    asl: dict[str, Any] = Field(description="the compiled Amazon States Language document: what runs")
    spec: dict[str, Any] = Field(description="the graph as registered (node kinds, conditions, human input schemas)")


class AgentStats(BaseModel):
    """One agent's run counts, durations and cost over a window."""

    agent: str
    runs: int
    by_status: dict[str, int]
    runs_per_day: dict[str, int]
    spend_per_day: dict[str, float] = Field(description="USD of LLM calls per UTC day (runs that waited or ended)")
    p50_s: float | None
    p95_s: float | None
    spend_usd: float
    tokens: int


class StatsOut(BaseModel):
    """Per-agent statistics of the caller's runs over the last days."""

    days: int
    runs: int = Field(description="runs in the window that the stats cover")
    truncated: bool = Field(description="true when the window held more runs than the stats read (the newest are used)")
    agents: list[AgentStats]
