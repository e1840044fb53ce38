"""What a step needs from the outside world, bundled so a Lambda and the local engine build it the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from stepwise.graph.spec import GraphSpec
from stepwise.llm.base import ChatModel
from stepwise.llm.scripted import ScriptedModel
from stepwise.state.hydrate import Hydrator
from stepwise.state.ports import EventStore, Registry, RunStore, SnapshotStore

Observer = Callable[[dict[str, Any]], None]


class DefaultModels:
    """Offline resolver: every model string maps to the scripted model. The LLM layer replaces it."""

    def resolve(self, model: str, script: list[Any] | None = None) -> ChatModel:
        return ScriptedModel(script or [])


@dataclass
class Services:
    events: EventStore
    snapshots: SnapshotStore
    runs: RunStore
    registry: Registry
    models: Any = field(default_factory=DefaultModels)
    observer: Observer | None = None
    snapshot_every: int = 200
    _graphs: dict[str, GraphSpec] = field(default_factory=dict)

    @cached_property
    def hydrator(self) -> Hydrator:
        return Hydrator(self.events, self.snapshots, snapshot_every=self.snapshot_every)

    def graph(self, ref: str) -> GraphSpec:
        spec = self._graphs.get(ref)
        if spec is None:
            found = self.registry.get(ref)
            if found is None:
                raise LookupError(f"graph version {ref!r} is not registered")
            spec = GraphSpec.from_canonical(found[0])
            self._graphs[ref] = spec
        return spec

    def remember_graph(self, spec: GraphSpec) -> None:
        self._graphs[spec.ref] = spec

    def notify(self, **event: Any) -> None:
        if self.observer is not None:
            self.observer(event)
