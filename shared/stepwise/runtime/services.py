"""What a step needs from the outside world, bundled so a Lambda and the local engine build it the same way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from stepwise.clock import Clock, SystemClock
from stepwise.graph.spec import GraphSpec
from stepwise.memory.settings import MemorySettings
from stepwise.runtime.graph_cache import reducers_of, reducers_of_canonical
from stepwise.settings import Settings
from stepwise.state.hydrate import Hydrator
from stepwise.state.ports import EventStore, Registry, RunStore, SnapshotStore
from stepwise.tools.settings import ToolSettings

if TYPE_CHECKING:
    from stepwise.runtime.ports import MemoryPort, ModelGateway, ToolGrants, ToolRuntime
    from stepwise.tools.executor import ActionExecutor

Observer = Callable[[dict[str, Any]], None]
#: ``handover(run_id, cursor, number)``: start continuation execution ``number`` of a run with ``cursor``.
Handover = Callable[[str, dict[str, Any], int], None]


def default_models() -> ModelGateway:
    """The model hub configured from the environment: ``scripted`` stays offline; provider strings
    (``openai:…``, ``anthropic:…``, ``bedrock:…``, ``local:…``, ``auto``) go through the router, cache and budgets."""
    from stepwise.extras import needs

    with needs("llm", "agent, planner and synthesizer nodes"):
        from stepwise.llm.gateway import ModelHub

        return ModelHub.from_env()


@dataclass
class Services:
    """What a step needs: the stores, the model gateway, tools, memory, permissions and the observer."""

    events: EventStore
    snapshots: SnapshotStore
    runs: RunStore
    registry: Registry
    #: The model hub; built from the environment on first use (``models``), so a function-only graph never
    #: imports the LLM layer and its optional dependencies (numpy, SDKs).
    model_hub: ModelGateway | None = None
    observer: Observer | None = None
    snapshot_every: int = 200
    #: MCP tool servers (built-ins in-process, plus STEPWISE_MCP_CONFIG); created on first use.
    tool_registry: ToolRuntime | None = None
    #: How tool retries wait (asyncio.sleep); tests inject a recorder so they never really sleep.
    tool_sleep: Callable[[float], Awaitable[None]] | None = None
    #: Memory services (stepwise.memory.service.MemoryServices); None: the process-wide default for ``memory_settings``.
    memory: MemoryPort | None = None
    #: Tool permissions (RBAC + capability tokens, ``stepwise.tools.permissions``); default: tokens with an
    #: ephemeral key and no roles. ``Stepwise.embedded`` and the AWS client set the persistent ones.
    permissions: ToolGrants | None = None
    #: Engine settings (local concurrency, run lease); by default read from the environment once, here.
    settings: Settings = field(default_factory=Settings.from_env)
    #: The tool layer's settings (HTTP allow-list, MCP servers, RBAC, budgets, sandbox); read once, here.
    tool_settings: ToolSettings = field(default_factory=ToolSettings.from_env)
    #: The memory layer's settings (backends, Valkey, embedder); read once, here.
    memory_settings: MemorySettings = field(default_factory=MemorySettings.from_env)
    #: The engine's time where a deadline is recorded (a human wait's ``config.timeout_seconds``); tests inject a fake.
    clock: Clock = field(default_factory=SystemClock)
    #: Starts a continuation execution (set by the executor: a new local execution, or a new Step Functions one).
    handover: Handover | None = None
    #: Events one execution may append before it hands over (default: ``settings.continue_after_events``).
    continue_after: int = -1
    #: run id -> the thread's head right after this process began the run (its ``run_started`` seq), for the local
    #: executor that runs it next: it then knows no task has completed without reading the head. Bounded.
    begun: dict[str, int] = field(default_factory=dict)
    #: thread id -> (seq, run id) of this process's last main-flow node append on the thread, when the run was not
    #: cancelled as it committed (``RunStore.append_and_cancelled``). The very next step on the thread pops it, and
    #: if that step is the run's next main-flow node and the state it has cached is at that seq, it skips its read
    #: (tail and cancel check). Any other next step (a branch, a join, the end, a wait) just drops it. Bounded.
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: run ids this process is cancelling or has cancelled (an ordered set, oldest dropped past 4,096): a step of one
    #: of them never skips its read, so a cancel made here stops the next node exactly as a cancel check would.
    cancelling: dict[str, None] = field(default_factory=dict)
    _graphs: dict[str, GraphSpec] = field(default_factory=dict)
    _reducers: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.continue_after < 0:
            self.continue_after = self.settings.continue_after_events

    @property
    def tool_permissions(self) -> ToolGrants:
        if self.permissions is None:
            from stepwise.tools.permissions import PermissionManager

            self.permissions = PermissionManager()
        return self.permissions

    @property
    def models(self) -> ModelGateway:
        if self.model_hub is None:
            self.model_hub = default_models()
        return self.model_hub

    @models.setter
    def models(self, hub: ModelGateway) -> None:
        self.model_hub = hub

    @cached_property
    def hydrator(self) -> Hydrator:
        return Hydrator(self.events, self.snapshots, snapshot_every=self.snapshot_every)

    @property
    def tools(self) -> ToolRuntime:
        if self.tool_registry is None:
            from stepwise.extras import needs
            from stepwise.tools.registry import ToolRegistry

            with needs("llm", "tools over MCP"):
                self.tool_registry = ToolRegistry.from_settings(self.tool_settings)
        return self.tool_registry

    def tool_executor(self, timeouts: dict[str, float]) -> ActionExecutor:
        from stepwise.tools.executor import ActionExecutor

        return ActionExecutor(self.tools, timeouts=timeouts, sleep=self.tool_sleep, policy=self.tool_permissions)

    def graph(self, ref: str) -> GraphSpec:
        spec = self._graphs.get(ref)
        if spec is None:
            found = self.registry.get(ref)
            if found is None:
                raise LookupError(f"graph version {ref!r} is not registered")
            spec = GraphSpec.from_canonical(found[0])
            self._graphs[ref] = spec
        return spec

    def reducers(self, ref: str) -> dict[str, str]:
        """The reducers of graph version ``ref`` (and its inlined subgraphs). A graph built here already knows
        them; otherwise they are read from the registered spec's JSON without validating a GraphSpec (versions
        are immutable, so they are cached by ref). Callers must not mutate the mapping."""
        spec = self._graphs.get(ref)
        if spec is not None:
            return reducers_of(spec)
        found = self._reducers.get(ref)
        if found is None:
            data = self.registry.spec(ref)
            if data is None:
                raise LookupError(f"graph version {ref!r} is not registered")
            found = self._reducers[ref] = reducers_of_canonical(data)
        return found

    def remember_graph(self, spec: GraphSpec) -> None:
        self._graphs[spec.ref] = spec

    def notify(self, **event: Any) -> None:
        if self.observer is not None:
            self.observer(event)

    def also_observe(self, observer: Observer) -> None:
        """Call ``observer`` with every event too, after the observer set before it (live streams and the
        serve scheduler each listen beside the CLI's progress or a test's observer)."""
        previous = self.observer

        def both(event: dict[str, Any]) -> None:
            if previous is not None:
                previous(event)
            observer(event)

        self.observer = both
