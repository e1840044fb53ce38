"""Static checks of a GraphSpec. Every problem names the node and the fix; all problems are reported at once."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from stepwise.graph.conditions import ConditionError, parse
from stepwise.graph.errors import GraphError, Problem
from stepwise.graph.keys import HUMAN_CONFIG_KEYS, nearest_key_path, nearest_name
from stepwise.graph.spec import REDUCER_NAMES, AgentConfig, GraphSpec, NodeSpec
from stepwise.graph.topology import is_end, routes_to_tools, strongly_connected, topology


def validate(spec: GraphSpec, *, check_imports: bool = False) -> None:
    problems = _problems(spec, check_imports)
    if problems:
        raise GraphError(problems, spec.source)


def _problems(spec: GraphSpec, check_imports: bool) -> list[Problem]:
    """Root causes first: a bad name in an edge or the entry is reported once, and the reachability and cycle
    checks (whose findings would only be its consequences) wait until the names are right."""
    if not spec.graph.nodes:
        return [Problem("the graph has no nodes", "add at least one node under graph.nodes", at=("graph", "nodes"))]
    roots = list(_references(spec))
    rest = [*_reducers(spec, check_imports), *_nodes(spec, check_imports), *_parallel_writes(spec)]
    return [*roots, *rest] if roots else [*rest, *_flow(spec)]


def _unknown(target: str, names: set[str], what: str, source: str | None, at: tuple[str | int, ...]) -> Iterator[Problem]:
    if is_end(target) or target in names:
        return
    guess = nearest_name(target, names)
    hint = f"did you mean {guess!r}? Otherwise define node {target!r}" if guess else f"define node {target!r} or fix the name"
    yield Problem(f"{what} points to unknown node {target!r}", f"{hint} (nodes: {', '.join(sorted(names))})", node=source, at=at)


def _reserved_names(spec: GraphSpec) -> Iterator[Problem]:
    """Node names the engine gives a meaning of its own."""
    for name in spec.graph.nodes:
        if "/" in name:
            yield Problem(
                f"node name {name!r} contains '/', which separates a subgraph's nodes (prepare/fetch)",
                f"rename it, e.g. {name.replace('/', '_')!r}",
                at=("graph", "nodes", name),
            )
        elif is_end(name):
            yield Problem(f"node name {name!r} is where a run ends, not a node", "rename the node", at=("graph", "nodes", name))


def _references(spec: GraphSpec) -> Iterator[Problem]:
    yield from _reserved_names(spec)
    body = spec.graph
    names = set(body.nodes)
    if body.entry is None:
        yield Problem("the graph has no entry node", f"add `entry: {next(iter(body.nodes))}` (the node that runs first) under graph")
    elif body.entry not in names:
        guess = nearest_name(body.entry, names)
        hint = f"did you mean {guess!r}? " if guess else ""
        yield Problem(
            f"entry {body.entry!r} is not a node", f"{hint}set entry to one of: {', '.join(sorted(names))}", at=("graph", "entry")
        )
    for i, edge in enumerate(body.edges):
        at = ("graph", "edges", i)
        if edge.source not in names:
            guess = nearest_name(edge.source, names)
            hint = f"did you mean {guess!r}? Otherwise define" if guess else "define"
            yield Problem(f"edge from unknown node {edge.source!r}", f"{hint} node {edge.source!r} or fix the name", at=at)
        yield from _unknown(edge.target, names, "an edge", edge.source if edge.source in names else None, at)
    for i, cond in enumerate(body.conditional_edges):
        at = ("graph", "conditional_edges", i)
        if cond.source not in names:
            guess = nearest_name(cond.source, names)
            hint = f"did you mean {guess!r}? Otherwise define" if guess else "define"
            yield Problem(f"conditional edge from unknown node {cond.source!r}", f"{hint} the node or fix the name", at=at)
        for j, item in enumerate(cond.conditions):
            yield from _unknown(item.target, names, "a condition", cond.source, (*at, "conditions", j))
    for i, par in enumerate(body.parallel_nodes):
        at = ("graph", "parallel_nodes", i)
        sources = [par.source] if isinstance(par.source, str) else par.source
        targets = [par.target] if isinstance(par.target, str) else par.target
        if isinstance(par.source, list) == isinstance(par.target, list):
            yield Problem(
                "a parallel_nodes item must fan out ({from: a, to: [b, c]}) or fan in ({from: [b, c], to: d})",
                "make exactly one side a list",
                node=sources[0] if sources else None,
                at=at,
            )
        for n in [*sources, *targets]:
            yield from _unknown(n, names, "a parallel edge", None, at)
    for name, node in body.nodes.items():
        if node.kind == "planner":
            for kind, worker in node.workers.items():
                if worker not in names:
                    guess = nearest_name(worker, names)
                    hint = f"did you mean {guess!r}? Otherwise define" if guess else "define"
                    yield Problem(
                        f"worker {worker!r} for {kind!r} subtasks is not a node",
                        f"{hint} the worker node",
                        node=name,
                        at=("graph", "nodes", name, "workers"),
                    )


def _reducers(spec: GraphSpec, check_imports: bool) -> Iterator[Problem]:
    for channel, reducer in spec.state.items():
        if reducer not in REDUCER_NAMES and ":" not in reducer:
            guess = nearest_name(reducer, REDUCER_NAMES)
            hint = f"did you mean {guess!r}? " if guess else ""
            yield Problem(
                f"channel {channel!r} has unknown reducer {reducer!r}",
                f"{hint}use one of {', '.join(sorted(REDUCER_NAMES))} or an import path 'pkg.module:function'",
                at=("state", channel),
            )
        elif reducer not in REDUCER_NAMES and check_imports:
            yield from _check_reducer_import(channel, reducer)


def _check_reducer_import(channel: str, path: str) -> Iterator[Problem]:
    """A custom reducer is imported like a function node's ``fn`` (``check_imports``): a typo in its path
    otherwise surfaced only when a node first wrote the channel, failing that run half-way."""
    module, _, attr = path.partition(":")
    at = ("state", channel)
    what = f"reducer {path!r} of channel {channel!r}"
    if not module or not attr:
        yield Problem(f"{what} is not an import path", "write it as 'package.module:function'", at=at)
        return
    obj, failed = _import_attr(path)
    if failed is not None:
        yield Problem(f"{what}: {failed}", _IMPORT_FIX, at=at)
        return
    if not callable(obj):
        yield Problem(f"{what}: {module!r} has no function {attr!r}", f"define `def {attr}(current, update)` in {module}", at=at)
        return
    try:
        inspect.signature(obj).bind(None, None)
    except TypeError:
        yield Problem(
            f"{what} cannot be called as {attr}(current, update)",
            "a reducer takes the channel's current value and the node's update, and returns the new value",
            at=at,
        )
    except ValueError:  # no signature to read (some builtins): the call itself will tell
        return


def _nodes(spec: GraphSpec, check_imports: bool) -> Iterator[Problem]:
    for name, node in spec.graph.nodes.items():
        yield from _node(spec, name, node, check_imports)
    yield from _routing(spec)
    yield from _on_error(spec)
    yield from _tolerance(spec)
    yield from _conditions(spec)


def _node(spec: GraphSpec, name: str, node: NodeSpec, check_imports: bool) -> Iterator[Problem]:
    """What one node's own keys say: its kind's settings, its function, its subgraph."""
    at = ("graph", "nodes", name)
    if node.kind in LLM_KINDS:
        yield from _check_agent_config(name, node.config)
        yield from _check_agent(spec, name, node)
    elif node.max_iterations is not None:
        yield Problem(
            "`max_iterations` on a node applies to agents only",
            "bound cycles with graph.max_iterations instead",
            node=name,
            at=(*at, "max_iterations"),
        )
    if node.memory is not None and node.kind not in LLM_KINDS:
        yield Problem(
            f"a {node.kind} node cannot have a memory block",
            "move `memory:` to an agent node (docs/memory.md)",
            node=name,
            at=(*at, "memory"),
        )
    if node.guardrails is not None and node.kind not in LLM_KINDS:
        yield from _check_guardrails(name, node)
    if node.kind == "human":
        yield from _check_human_config(name, node.config)
    elif node.kind == "function" and "timeout_seconds" in node.config:
        yield from _check_timeout(name, node.kind, node.config["timeout_seconds"])
    elif node.input is not None:
        yield Problem(
            "`input:` declares the answer of a human node", "remove it, or make this node `kind: human`", node=name, at=(*at, "input")
        )
    if node.kind == "function" and not node.fn:
        yield Problem("function node has no `fn`", f'add `fn: "your.module:{name}"` (a def {name}(state) -> dict)', node=name)
    if node.fn and ":" not in node.fn:
        yield Problem(f"fn {node.fn!r} is not an import path", "write it as 'package.module:function'", node=name, at=(*at, "fn"))
    elif node.fn and check_imports:
        yield from _check_import(name, node.fn)
    if node.kind == "subgraph" and node.subgraph_spec is None and not node.graph:
        yield Problem("subgraph node has no `graph`", "add `graph: path/to/other.yaml` (relative to this file)", node=name)


def _routing(spec: GraphSpec) -> Iterator[Problem]:
    """How control leaves each node: one plain edge, or conditions, or a fan-out, never a mix."""
    topo = topology(spec)
    for name in spec.graph.nodes:
        outs = topo.edges.get(name, [])
        if len(outs) > 1:
            yield Problem(
                f"{len(outs)} plain edges leave this node ({', '.join(outs)})",
                f"to run them together write `- {{from: {name}, to: [{', '.join(outs)}]}}` (a fan-out), "
                "or use conditional_edges to pick one",
                node=name,
            )
        if outs and name in topo.conditions:
            yield Problem(
                "the node has both a plain edge and conditional edges", "move the plain edge into the conditions as `else:`", node=name
            )
        if name in topo.fanout and (outs or name in topo.conditions):
            yield Problem("a fan-out node cannot also have plain or conditional edges", "route after the join instead", node=name)


def _on_error(spec: GraphSpec) -> Iterator[Problem]:
    """``on_error: continue`` tolerates failing Parallel branches or Map items, so it means something only on a
    node that starts them: a fan-out node or a planner. Anywhere else it was silently ignored."""
    topo = topology(spec)
    for name, node in spec.graph.nodes.items():
        if node.on_error is None or node.kind == "planner" or name in topo.fanout:
            continue
        splits = [split for split, branches in topo.fanout.items() if name in branches]
        move = f"move it to {splits[0]!r}, the fan-out node this node is a branch of, or remove it" if splits else "remove it"
        yield Problem(
            f"`on_error: {node.on_error}` applies only to a node that fans out (its parallel branches) or a planner "
            f"(its subtasks); this {node.kind} node does neither, so a failure here would still fail the run",
            f"{move} (docs/reliability.md#graceful-degradation-on_error-continue)",
            node=name,
            at=("graph", "nodes", name, "on_error"),
        )


def _tolerance(spec: GraphSpec) -> Iterator[Problem]:
    """``tolerated_failure_percentage`` is the Map's ``ToleratedFailurePercentage``: only a planner compiles to
    a Map whose items may fail; elsewhere it was silently ignored."""
    for name, node in spec.graph.nodes.items():
        if node.tolerated_failure_percentage is not None and node.kind != "planner":
            yield Problem(
                f"`tolerated_failure_percentage` applies only to a planner (its subtasks run as a Map); "
                f"this {node.kind} node has no items to tolerate failures of",
                "remove it, or use `on_error: continue` on a fan-out node (docs/reliability.md#graceful-degradation-on_error-continue)",
                node=name,
                at=("graph", "nodes", name, "tolerated_failure_percentage"),
            )


def _conditions(spec: GraphSpec) -> Iterator[Problem]:
    for i, cond in enumerate(spec.graph.conditional_edges):
        for j, item in enumerate(cond.conditions):
            if item.when is not None:
                try:
                    parse(item.when)
                except ConditionError as exc:
                    yield Problem(
                        str(exc),
                        "rewrite the condition within the subset (docs/graph-language.md)",
                        node=cond.source,
                        at=("graph", "conditional_edges", i, "conditions", j),
                    )
        if cond.conditions and cond.conditions[-1].otherwise is None:
            yield Problem(
                "conditions have no `else:` fallback",
                "end the list with `- {else: NODE}` (or `- {else: __end__}`)",
                node=cond.source,
                at=("graph", "conditional_edges", i),
            )


def _flow(spec: GraphSpec) -> Iterator[Problem]:
    """Reachability and cycles, reported per region: an orphaned node is one problem, not one per node after it."""
    body = spec.graph
    nodes = body.nodes
    if body.entry not in nodes:
        return
    topo = topology(spec)
    reach = topo.reachable([body.entry])
    unreachable = [n for n in nodes if n not in reach]
    regions = {n: topo.reachable([n]) & set(unreachable) for n in unreachable}
    order = {n: i for i, n in enumerate(unreachable)}
    for name in unreachable:
        upstream = [m for m in unreachable if m != name and name in regions[m] and (m not in regions[name] or order[m] < order[name])]
        if upstream:
            continue
        after = sorted(regions[name] - {name}, key=order.__getitem__)
        also = f" (and so are {', '.join(after)}, which only it leads to)" if after else ""
        yield Problem(f"node is unreachable from the entry{also}", f"add an edge into {name!r} or remove it", node=name)
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


def _parallel_writes(spec: GraphSpec) -> Iterator[Problem]:
    nodes = spec.graph.nodes
    names = set(nodes)
    topo = topology(spec)
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


_IMPORT_FIX = "run from the project directory or add it to PYTHONPATH"


def _import_attr(path: str) -> tuple[Any, str | None]:
    """What ``module:attr`` names (None when the module has no such attribute), or why the module does not
    import: a function node's ``fn`` and a custom reducer are checked alike."""
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr, None), None
    except Exception as exc:  # noqa: BLE001 - any import failure is reported to the user
        return None, f"cannot import {module!r}: {type(exc).__name__}: {exc}"


def _check_import(name: str, fn: str) -> Iterator[Problem]:
    module, _, attr = fn.partition(":")
    obj, failed = _import_attr(fn)
    if failed is not None:
        yield Problem(failed, _IMPORT_FIX, node=name)
        return
    if not callable(obj):
        yield Problem(f"{module!r} has no function {attr!r}", f"define `def {attr}(state) -> dict` in {module}", node=name)


LLM_KINDS = ("agent", "planner", "synthesizer")


def _check_agent_config(name: str, config: dict[str, Any]) -> Iterator[Problem]:
    at = ("graph", "nodes", name, "config")
    try:
        AgentConfig.model_validate(config)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                guess = nearest_key_path((*at, *err["loc"]))
                hint = f"did you mean `{guess}`? Otherwise use" if guess else "use"
                known = ", ".join(sorted(AgentConfig.model_fields))
                yield Problem(f"unknown config key `{key}`", f"{hint} one of: {known} (docs/llm.md)", node=name, at=(*at, *err["loc"]))
            else:
                yield Problem(f"config.{key}: {err['msg']}", "see the agent settings in docs/llm.md", node=name, at=(*at, *err["loc"]))


def _check_agent(spec: GraphSpec, name: str, node: NodeSpec) -> Iterator[Problem]:
    at = ("graph", "nodes", name)
    inner = node.config.get("max_iterations")
    if node.max_iterations is not None and inner is not None and inner != node.max_iterations:
        yield Problem(
            f"max_iterations is {node.max_iterations} on the node but {inner} under config",
            "keep one of them (they mean the same thing)",
            node=name,
            at=(*at, "max_iterations"),
        )
    if node.kind == "agent" and node.tools and node.config.get("loop") == "graph" and not routes_to_tools(spec, name):
        yield Problem(
            "the agent has tools and `config.loop: graph`, but no edge leads to a node that runs tool calls, "
            "so its tool calls would never run",
            "remove `loop: graph` (the agent then runs its own bounded ReAct loop), or route "
            '`- {if: "state.messages[-1].tool_calls", then: act}` to `act: {kind: function, fn: "stepwise.tools.react:run_tool_calls"}`',
            node=name,
            at=(*at, "config", "loop"),
        )


#: Guardrail stages that screen a model call: only the LLM kinds make one.
MODEL_STAGES = ("input", "memory", "output")


def _check_guardrails(name: str, node: NodeSpec) -> Iterator[Problem]:
    """Rails a node of this kind never runs were accepted and ignored, leaving the author believing they hold.
    A function node's ``tool_args``/``tool_results`` rails do run: they screen the tools it calls through
    ``ctx.run_tools`` (the graph-loop ``act`` node); the model stages and any rail on a human or subgraph
    node (no model call, no tools) do not."""
    rails = node.guardrails
    assert rails is not None
    at = ("graph", "nodes", name, "guardrails")
    llm = "agent, planner and synthesizer nodes"
    if node.kind != "function":
        yield Problem(
            f"`guardrails:` on a {node.kind} node never run: a {node.kind} node makes no model call and runs no tools",
            f"move them to the {llm} they are meant for, or to the graph's top-level `guardrails:` (docs/security.md)",
            node=name,
            at=at,
        )
        return
    unused = [stage for stage in MODEL_STAGES if getattr(rails, stage) is not None]
    if "stream_window" in rails.model_fields_set:
        unused.append("stream_window")
    if unused:
        yield Problem(
            f"guardrails {', '.join(unused)} on a function node never run: they screen a model call, which only {llm} make",
            "move them to an agent, planner or synthesizer node (or the graph's `guardrails:`); on a function node keep only "
            "tool_args and tool_results, which screen the tools it runs through ctx.run_tools (docs/security.md)",
            node=name,
            at=(*at, unused[0]),
        )


def _check_timeout(name: str, kind: str, value: Any) -> Iterator[Problem]:
    """A function or human node's ``config.timeout_seconds`` is its Task's ``TimeoutSeconds``, which Step Functions
    takes in whole seconds from 1: the local engine keeps to the same value, so both time out alike."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        yield Problem(
            f"config.timeout_seconds of a {kind} node is {value!r}; it must be a whole number of seconds, at least 1",
            f"write e.g. `timeout_seconds: {3600 if kind == 'human' else 30}` (the Task fails with States.Timeout after that long)",
            node=name,
            at=("graph", "nodes", name, "config", "timeout_seconds"),
        )


def _check_human_config(name: str, config: dict[str, Any]) -> Iterator[Problem]:
    for key, value in config.items():
        at = ("graph", "nodes", name, "config", key)
        if key not in HUMAN_CONFIG_KEYS:
            close = nearest_name(key, HUMAN_CONFIG_KEYS)
            guess = f"graph.nodes.{name}.config.{close}" if close else nearest_key_path(at)
            hint = f"did you mean `{guess}`? Otherwise use" if guess else "use"
            yield Problem(
                f"unknown config key `{key}` for a human node", f"{hint} one of: {', '.join(HUMAN_CONFIG_KEYS)}", node=name, at=at
            )
        else:  # timeout_seconds, the only key
            yield from _check_timeout(name, "human", value)
