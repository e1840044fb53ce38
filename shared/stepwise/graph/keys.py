"""Did-you-mean for graph files: the nearest valid key path for an unknown key, the nearest node for a bad name.

A typo (`max_iteration`), a key one level off (`reflect:` on the node instead of under `config:`) and a
key at the wrong level (`max_iterations` at the top instead of under `graph:`) all get one suggestion,
found with difflib over the keys the spec's pydantic models accept.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from pydantic import BaseModel

from stepwise.graph.memory import MemoryConfig
from stepwise.graph.spec import (
    AgentConfig,
    AnswerField,
    Condition,
    ConditionalEdge,
    Edge,
    GraphBody,
    GraphSpec,
    NodeSpec,
    ParallelEdge,
    RetrySpec,
)

Path = Sequence[str | int]

# Where each dict-typed or list-typed key leads, for keys pydantic sees as plain containers.
_ITEMS: dict[tuple[type[BaseModel], str], type[BaseModel]] = {
    (GraphBody, "nodes"): NodeSpec,
    (GraphBody, "edges"): Edge,
    (GraphBody, "conditional_edges"): ConditionalEdge,
    (GraphBody, "parallel_nodes"): ParallelEdge,
    (ConditionalEdge, "conditions"): Condition,
    (NodeSpec, "input"): AnswerField,
}
_NESTED: dict[tuple[type[BaseModel], str], type[BaseModel]] = {
    (GraphSpec, "graph"): GraphBody,
    (NodeSpec, "retry"): RetrySpec,
    (NodeSpec, "config"): AgentConfig,
    (NodeSpec, "memory"): MemoryConfig,
}
HUMAN_CONFIG_KEYS = ("timeout_seconds",)


def keys_of(model: type[BaseModel]) -> list[str]:
    """The YAML spelling of a model's keys (aliases such as ``from``/``if``), internal ones left out."""
    out = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        out.append(field.alias or name)
    return out


def _model_at(path: Path) -> type[BaseModel] | None:
    """The model that reads the mapping at ``path`` (a document path such as graph.nodes.x)."""
    model: type[BaseModel] = GraphSpec
    i = 0
    while i < len(path):
        key = str(path[i])
        nested = _NESTED.get((model, key))
        item = _ITEMS.get((model, key))
        if nested is not None:
            model, i = nested, i + 1
        elif item is not None and i + 1 < len(path):
            model, i = item, i + 2
        else:
            return None
    return model


def _candidates(parent: Path, model: type[BaseModel]) -> Iterable[tuple[str, ...]]:
    base = tuple(str(p) for p in parent)
    for key in keys_of(model):
        yield (*base, key)
        nested = _NESTED.get((model, key))
        if nested is not None:
            for sub in keys_of(nested):
                yield (*base, key, sub)
    if model is AgentConfig and len(base) >= 2:  # a node key written under config:
        for key in keys_of(NodeSpec):
            if key != "config":
                yield (*base[:-1], key)
    if model is NodeSpec:
        for key in HUMAN_CONFIG_KEYS:
            yield (*base, "config", key)
    if model is GraphBody and base:  # a top-level key written under graph:
        for key in keys_of(GraphSpec):
            if key != "graph":
                yield (key,)


def nearest_key_path(path: Path) -> str | None:
    """For an unknown key at ``path`` (e.g. ``graph.nodes.think.max_iteration``), the nearest valid dotted path."""
    if not path:
        return None
    parent, key = path[:-1], str(path[-1])
    model = _model_at(parent)
    if model is None:
        return None
    best: tuple[float, tuple[str, ...]] | None = None
    for candidate in _candidates(parent, model):
        score = difflib.SequenceMatcher(None, key.lower(), candidate[-1].lower()).ratio()
        if candidate[-1] == key:
            score = 1.0 if len(candidate) != len(path) or candidate[:-1] != tuple(map(str, parent)) else 0.0
        if score >= 0.75 and (best is None or score > best[0]):
            best = (score, candidate)
    return ".".join(best[1]) if best else None


def nearest_name(name: str, names: Iterable[str]) -> str | None:
    """The closest existing name to a misspelt one (node names, channel names), or None."""
    found = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
    return found[0] if found else None
