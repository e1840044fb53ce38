"""A Python builder that produces the same GraphSpec as the YAML loader.

g = Graph("support-router", state={"trail": "append"})
g.function("evaluate", "mypkg.support:evaluate")
g.function("billing", billing_fn)              # or a module-level function object
g.when("evaluate", "state.type == 'A'", "billing").otherwise("evaluate", END)
spec = g.build()                               # validated, like a loaded file
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

from stepwise.graph.spec import END, GraphSpec
from stepwise.graph.validate import validate

__all__ = ["END", "Graph"]


def _import_path(fn: str | Callable[..., Any]) -> str:
    if isinstance(fn, str):
        return fn
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<" in name or "." in name:
        raise ValueError(f"{fn!r} is not a module-level function; pass 'package.module:function' instead")
    return f"{module}:{name}"


class Graph:
    """Builds a graph in Python (nodes, edges, conditions) and compiles it to a GraphSpec."""

    def __init__(self, name: str, *, state: dict[str, str] | None = None, max_iterations: int = 25, description: str = "") -> None:
        self._data: dict[str, Any] = {
            "name": name,
            "description": description,
            "state": dict(state or {}),
            "graph": {"nodes": {}, "edges": [], "conditional_edges": [], "parallel_nodes": [], "max_iterations": max_iterations},
        }
        self._conditions: dict[str, list[dict[str, str]]] = {}

    @property
    def _graph(self) -> dict[str, Any]:
        return self._data["graph"]  # type: ignore[no-any-return]

    def node(self, name: str, kind: str = "function", **options: Any) -> Graph:
        if name in self._graph["nodes"]:
            raise ValueError(f"node {name!r} is already defined")
        if "fn" in options:
            options["fn"] = _import_path(options["fn"])
        self._graph["nodes"][name] = {"kind": kind, **options}
        self._graph.setdefault("entry", name)
        return self

    def function(self, name: str, fn: str | Callable[..., Any], **options: Any) -> Graph:
        return self.node(name, "function", fn=fn, **options)

    def agent(self, name: str, **options: Any) -> Graph:
        return self.node(name, "agent", **options)

    def human(self, name: str, prompt: str, **options: Any) -> Graph:
        return self.node(name, "human", prompt=prompt, **options)

    def entry(self, name: str) -> Graph:
        self._graph["entry"] = name
        return self

    def edge(self, source: str, target: str) -> Graph:
        self._graph["edges"].append({"from": source, "to": target})
        return self

    def sequence(self, *names: str) -> Graph:
        for a, b in pairwise(names):
            self.edge(a, b)
        return self

    def when(self, source: str, condition: str, target: str) -> Graph:
        self._conditions.setdefault(source, []).append({"if": condition, "then": target})
        return self

    def otherwise(self, source: str, target: str) -> Graph:
        self._conditions.setdefault(source, []).append({"else": target})
        return self

    def parallel(self, source: str, targets: list[str], join: str | None = None, tails: list[str] | None = None) -> Graph:
        """Fan out from ``source`` to ``targets``; with ``join``, fan back in from ``tails`` (default: the targets)."""
        self._graph["parallel_nodes"].append({"from": source, "to": list(targets)})
        if join is not None:
            self._graph["parallel_nodes"].append({"from": list(tails or targets), "to": join})
        return self

    def build(self) -> GraphSpec:
        data = {**self._data, "graph": {**self._graph}}
        data["graph"]["conditional_edges"] = [{"from": s, "conditions": c} for s, c in self._conditions.items()]
        spec = GraphSpec.model_validate(data)
        validate(spec)
        return spec
