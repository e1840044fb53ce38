"""Static checks of a GraphSpec. Every problem names the node and the fix; all problems are reported at once."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from stepwise.graph.conditions import ConditionError, parse
from stepwise.graph.errors import GraphError, Problem
from stepwise.graph.spec import AgentConfig, GraphSpec
from stepwise.graph.topology import is_end, strongly_connected, topology
from stepwise.state.reducers import BUILTIN_REDUCERS


def validate(spec: GraphSpec, *, check_imports: bool = False) -> None:
    problems = list(_problems(spec, check_imports))
    if problems:
        raise GraphError(problems, spec.source)


def _problems(spec: GraphSpec, check_imports: bool):  # noqa: C901 - to be split by concern
    body = spec.graph
    nodes = body.nodes
    names = set(nodes)
    if not nodes:
        yield Problem("the graph has no nodes", "add at least one node under graph.nodes")
        return
    if body.entry is None:
        yield Problem("the graph has no entry node", f"add `entry: {next(iter(nodes))}` (the node that runs first) under graph")
    elif body.entry not in names:
        yield Problem(f"entry {body.entry!r} is not a node", f"set entry to one of: {', '.join(sorted(names))}")

    for channel, reducer in spec.state.items():
        if reducer not in BUILTIN_REDUCERS and ":" not in reducer:
            yield Problem(
                f"channel {channel!r} has unknown reducer {reducer!r}",
                f"use one of {', '.join(sorted(BUILTIN_REDUCERS))} or an import path 'pkg.module:function'",
            )

    def known(target: str, source: str, what: str):
        if not is_end(target) and target not in names:
            yield Problem(
                f"{what} points to unknown node {target!r}",
                f"define node {target!r} or fix the name (nodes: {', '.join(sorted(names))})",
                node=source,
            )

    for edge in body.edges:
        if edge.source not in names:
            yield Problem(f"edge from unknown node {edge.source!r}", f"define node {edge.source!r} or fix the name", node=edge.source)
        yield from known(edge.target, edge.source, "an edge")
    for cond in body.conditional_edges:
        if cond.source not in names:
            yield Problem(f"conditional edge from unknown node {cond.source!r}", "define the node or fix the name", node=cond.source)
        for item in cond.conditions:
            yield from known(item.target, cond.source, "a condition")
            if item.when is not None:
                try:
                    parse(item.when)
                except ConditionError as exc:
                    yield Problem(str(exc), "rewrite the condition within the subset (docs/graph-language.md)", node=cond.source)
        if cond.conditions and cond.conditions[-1].otherwise is None:
            yield Problem(
                "conditions have no `else:` fallback", "end the list with `- {else: NODE}` (or `- {else: __end__}`)", node=cond.source
            )
    for par in body.parallel_nodes:
        sources = [par.source] if isinstance(par.source, str) else par.source
        targets = [par.target] if isinstance(par.target, str) else par.target
        if isinstance(par.source, list) == isinstance(par.target, list):
            yield Problem(
                "a parallel_nodes item must fan out ({from: a, to: [b, c]}) or fan in ({from: [b, c], to: d})",
                "make exactly one side a list",
                node=sources[0] if sources else None,
            )
        for n in [*sources, *targets]:
            yield from known(n, sources[0] if sources else n, "a parallel edge")

    topo = topology(spec)
    for name, node in nodes.items():
        if node.kind in LLM_KINDS:
            yield from _check_agent_config(name, node.config)
        if node.kind == "function" and not node.fn:
            yield Problem("function node has no `fn`", f'add `fn: "your.module:{name}"` (a def {name}(state) -> dict)', node=name)
        if node.fn and ":" not in node.fn:
            yield Problem(f"fn {node.fn!r} is not an import path", "write it as 'package.module:function'", node=name)
        elif node.fn and check_imports:
            yield from _check_import(name, node.fn)
        if node.kind == "subgraph" and node.subgraph_spec is None and not node.graph:
            yield Problem("subgraph node has no `graph`", "add `graph: path/to/other.yaml` (relative to this file)", node=name)
        if node.kind == "planner":
            for kind, worker in node.workers.items():
                if worker not in names:
                    yield Problem(f"worker {worker!r} for {kind!r} subtasks is not a node", "define the worker node", node=name)
        outs = topo.edges.get(name, [])
        if len(outs) > 1:
            yield Problem(
                f"{len(outs)} plain edges leave this node ({', '.join(outs)})",
                f"use parallel_nodes: [{{from: {name}, to: [{', '.join(outs)}]}}] to run them together, or conditional_edges to pick one",
                node=name,
            )
        if outs and name in topo.conditions:
            yield Problem(
                "the node has both a plain edge and conditional edges", "move the plain edge into the conditions as `else:`", node=name
            )
        if name in topo.fanout and (outs or name in topo.conditions):
            yield Problem("a fan-out node cannot also have plain or conditional edges", "route after the join instead", node=name)

    if body.entry in names:
        reach = topo.reachable([body.entry])
        for name in nodes:
            if name not in reach:
                yield Problem("node is unreachable from the entry", f"add an edge into {name!r} or remove it", node=name)
        for comp in strongly_connected(topo, sorted(reach)):
            cyclic = len(comp) > 1 or comp[0] in topo.successors(comp[0])
            if not cyclic:
                continue
            members = set(comp)
            exits = any(topo.can_end(n) or any(s not in members for s in topo.successors(n)) for n in comp)
            if not exits:
                yield Problem(
                    f"the cycle {' -> '.join(comp)} has no way out",
                    "add a conditional edge from one of its nodes to a node outside the cycle or to __end__",
                    node=comp[0],
                )

    for split, branches in topo.fanout.items():
        join = topo.join_of(split, names)
        writers: dict[str, str] = {}
        for branch in branches:
            region = topo.reachable([branch], stop=frozenset({join}) if join else frozenset())
            for member in sorted(region):
                for channel in nodes[member].channels_written() if member in nodes else []:
                    if spec.reducer_of(channel) != "replace":
                        continue
                    if channel in writers and writers[channel] != branch:
                        yield Problem(
                            f"parallel branches {writers[channel]!r} and {branch!r} both write channel {channel!r}, "
                            "whose reducer is `replace`",
                            f"give {channel!r} a merging reducer under `state:` (append, merge or add), or write different channels",
                            node=split,
                        )
                    writers.setdefault(channel, branch)


def _check_import(name: str, fn: str):
    module, _, attr = fn.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr, None)
    except Exception as exc:  # noqa: BLE001 - any import failure is reported to the user
        yield Problem(
            f"cannot import {module!r}: {type(exc).__name__}: {exc}", "run from the project directory or add it to PYTHONPATH", node=name
        )
        return
    if not callable(obj):
        yield Problem(f"{module!r} has no function {attr!r}", f"define `def {attr}(state) -> dict` in {module}", node=name)


LLM_KINDS = ("agent", "planner", "synthesizer")


def _check_agent_config(name: str, config: dict[str, Any]):  # type: ignore[no-untyped-def]
    try:
        AgentConfig.model_validate(config)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(AgentConfig.model_fields))
                yield Problem(f"unknown config key `{key}`", f"use one of: {known} (docs/llm.md)", node=name)
            else:
                yield Problem(f"config.{key}: {err['msg']}", "see the agent settings in docs/llm.md", node=name)
