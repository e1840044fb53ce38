"""The graph specification: plain pydantic data that the loader, builder, validator and compiler share."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stepwise.graph.guardrails import GuardrailsConfig
from stepwise.graph.memory import MemoryConfig
from stepwise.graph.triggers import Trigger, named

END = "__end__"
#: The state every failure routes to; the step records the run as failed there.
FAILED = "__failed__"
#: Reducers a ``state:`` channel may name without an import path (implemented in ``state/reducers.py``).
REDUCER_NAMES = ("replace", "append", "merge", "add")
NodeKind = Literal["function", "agent", "planner", "synthesizer", "human", "subgraph"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetrySpec(_Strict):
    """Retry of a failing node, compiled into the Task's Retry block."""

    max_attempts: int = Field(2, ge=0, le=10)
    interval_seconds: float = Field(1.0, ge=0)
    backoff_rate: float = Field(2.0, ge=1.0)
    max_delay_seconds: float | None = None
    jitter: Literal["FULL", "NONE"] = "NONE"


class AgentConfig(BaseModel):
    """``config:`` of agent, planner and synthesizer nodes (validated, so a typo is an error, not a no-op)."""

    model_config = ConfigDict(extra="forbid")
    loop: Literal["graph", "fused"] | None = None  # None: graph when an edge leads to a tool node, else fused
    max_iterations: int | None = Field(default=None, ge=1, le=200)
    reasoning: Literal["direct", "cot"] = "direct"
    output_schema: str | dict[str, str] | None = None
    cache: Literal["off", "exact", "semantic"] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    tool_timeouts: dict[str, float] = Field(default_factory=dict)
    reflect: bool = False
    reflect_prompt: str | None = None
    reflect_script: list[Any] | None = None
    feedback: str | None = None  # a channel whose latest entry is shown to the agent as reviewer feedback
    inputs: list[str] | None = None  # synthesizer: channels to combine (default: the merge channels)
    dag: bool = False  # planner: run subtasks in dependency waves (the compiler adds the wave loop)
    min_quality: float = Field(default=0.8, ge=0, le=1)


AnswerType = Literal["string", "number", "integer", "boolean", "object", "array", "any"]


class AnswerField(_Strict):
    """One key of a human node's answer (``input: {decision: {enum: [yes, no]}}``), checked on resume."""

    type: AnswerType = "any"
    enum: list[Any] | None = None
    required: bool = True
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """``decision: string`` is short for ``decision: {type: string}``."""
        return {"type": value} if isinstance(value, str) else value


class NodeSpec(_Strict):
    """One node of a graph: its kind and that kind's settings."""

    kind: NodeKind = "function"
    fn: str | None = None
    model: str | None = None
    system: str | None = None
    prompt: str | None = None
    tools: list[str] = Field(default_factory=list)
    script: list[Any] | str | None = None
    graph: str | None = None
    workers: dict[str, str] = Field(default_factory=dict)
    output: str | None = None
    writes: list[str] = Field(default_factory=list)
    max_concurrency: int = Field(0, ge=0)
    retry: RetrySpec | None = None
    max_iterations: int | None = Field(default=None, ge=1, le=200)  # agent: same as config.max_iterations
    input: dict[str, AnswerField] | None = None  # human: the answer's schema, checked by resume
    config: dict[str, Any] = Field(default_factory=dict)
    memory: MemoryConfig | None = None  # agent memory (docs/memory.md)
    # graceful degradation, on a fan-out node (its Parallel branches) or a planner (its Map items):
    # `continue` lets the others finish and the join receives their results with the failures named
    on_error: Literal["continue"] | None = None
    tolerated_failure_percentage: float | None = Field(default=None, ge=0, le=100)  # planner: Map's ToleratedFailurePercentage
    guardrails: GuardrailsConfig | None = None  # rails on input/tools/memory/output (docs/security.md)
    subgraph_spec: GraphSpec | None = Field(default=None, exclude=True)

    def channels_written(self) -> list[str]:
        """Channels this node is declared (or known, for LLM kinds) to write; used by static checks."""
        if self.writes:
            return self.writes
        if self.kind == "agent":
            return [self.output or "messages"]
        if self.kind == "synthesizer":
            return [self.output or "answer", "quality"]
        if self.kind == "planner":
            return [self.output or "subtasks"]
        return []


class Edge(_Strict):
    """A plain edge from one node to the next."""

    source: str = Field(alias="from")
    target: str = Field(alias="to")


class Condition(_Strict):
    """One branch of a conditional edge: ``if`` an expression ``then`` a target, or ``else``."""

    when: str | None = Field(default=None, alias="if")
    then: str | None = None
    otherwise: str | None = Field(default=None, alias="else")

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        if self.otherwise is None and (self.when is None or self.then is None):
            raise ValueError("a condition is either {if: EXPR, then: NODE} or {else: NODE}")
        if self.otherwise is not None and (self.when is not None or self.then is not None):
            raise ValueError("{else: NODE} cannot be combined with if/then in the same item")
        return self

    @property
    def target(self) -> str:
        return self.otherwise if self.otherwise is not None else str(self.then)


class ConditionalEdge(_Strict):
    """A node's conditional routes, tried in order."""

    source: str = Field(alias="from")
    conditions: list[Condition]


class ParallelEdge(_Strict):
    """A fan-out (one to many) or fan-in (many to one)."""

    source: str | list[str] = Field(alias="from")
    target: str | list[str] = Field(alias="to")


class GraphBody(_Strict):
    """A graph's nodes, edges and entry."""

    nodes: dict[str, NodeSpec]
    edges: list[Edge] = Field(default_factory=list)
    conditional_edges: list[ConditionalEdge] = Field(default_factory=list)
    parallel_nodes: list[ParallelEdge] = Field(default_factory=list)
    entry: str | None = None
    max_iterations: int = Field(25, ge=1, le=10_000)
    #: How conditional edges compile to Step Functions. ``jump`` (default): no Choice state; the first target
    #: is the Task's Next and other routes are taken through a Catch on ``Stepwise.Route.<i>`` (one transition
    #: per node, but each such jump is a caught Task failure and a Lambda error). ``choice``: a Choice state on
    #: the returned route after the Task (one more transition per conditional node, no error for a route).
    routing: Literal["jump", "choice"] = "jump"


class GraphSpec(_Strict):
    """A validated graph document: name, state channels and reducers, and the graph."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
    description: str = ""
    state: dict[str, str] = Field(default_factory=dict)
    graph: GraphBody
    guardrails: GuardrailsConfig | None = None  # every agent's rails; a node's own stages override (docs/security.md)
    triggers: list[Trigger] = Field(default_factory=list)  # events and schedules that start runs (docs/triggers.md)
    source: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_triggers(self) -> GraphSpec:
        named(self.triggers)
        return self

    @property
    def entry(self) -> str:
        return self.graph.entry or next(iter(self.graph.nodes))

    def reducer_of(self, channel: str) -> str:
        return self.state.get(channel, "replace")

    def canonical(self) -> dict[str, Any]:
        """JSON-ready form with subgraphs inlined, used for hashing and the registry."""
        data = self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=False)
        if not self.triggers:  # graphs without triggers keep the refs they had before triggers existed
            data.pop("triggers", None)
        if self.graph.routing == "jump":  # likewise graphs with the default routing
            data["graph"].pop("routing", None)
        for name, node in self.graph.nodes.items():
            if node.subgraph_spec is not None:
                data["graph"]["nodes"][name]["subgraph_spec"] = node.subgraph_spec.canonical()
        return data

    @property
    def ref(self) -> str:
        """Immutable version id: the graph name plus a hash of its canonical content."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return f"{self.name}@{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    @classmethod
    def from_canonical(cls, data: dict[str, Any]) -> GraphSpec:
        data = json.loads(json.dumps(data))
        subs = {n: v.pop("subgraph_spec") for n, v in data["graph"]["nodes"].items() if "subgraph_spec" in v}
        spec = cls.model_validate(data)
        for name, sub in subs.items():
            spec.graph.nodes[name].subgraph_spec = cls.from_canonical(sub)
        return spec


NodeSpec.model_rebuild()
