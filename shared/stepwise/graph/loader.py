"""YAML → GraphSpec, accepting the long and short forms, with errors that name file, line and fix."""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stepwise.graph import limits as admission
from stepwise.graph.errors import GraphError, Problem
from stepwise.graph.keys import nearest_key_path, nearest_name
from stepwise.graph.limits import Limits
from stepwise.graph.scripts import load_script
from stepwise.graph.spec import GraphSpec
from stepwise.graph.validate import validate

_FLOW_SHORTHAND = re.compile(r"^\s*-\s*from:\s*([^,{}]+),\s*to:\s*([^{}]+)$")


def load_file(path: str | Path, *, check_imports: bool = False, limits: Limits | None = None) -> GraphSpec:
    path = Path(path)
    if not path.is_file():
        raise GraphError([Problem(f"no such file {str(path)!r}", "check the path")], str(path))
    return load_text(path.read_text(encoding="utf-8"), source=str(path), check_imports=check_imports, limits=limits)


def load_text(text: str, *, source: str | None = None, check_imports: bool = False, limits: Limits | None = None) -> GraphSpec:
    """Parse and validate a graph document within ``limits`` (default: the process's, ``STEPWISE_MAX_*``)."""
    try:
        admission.check_yaml(text, limits)  # before safe_load: aliases, depth and integer size bounded (graph/limits.py)
    except admission.LimitError as exc:
        raise GraphError([Problem(str(exc), "shrink the document, or raise the limit with its STEPWISE_MAX_* variable")], source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        shorthand = _FLOW_SHORTHAND.match(text.splitlines()[mark.line]) if mark is not None and mark.line < len(text.splitlines()) else None
        if shorthand:
            a, b = shorthand.group(1).strip(), shorthand.group(2).strip()
            raise GraphError(
                [
                    Problem(
                        f"edge `- from: {a}, to: {b}` is a common shorthand, which is not valid YAML",
                        f"write it as a flow mapping: `- {{from: {a}, to: {b}}}`",
                        line=line,
                    )
                ],
                source,
            ) from None
        raise GraphError(
            [Problem(f"malformed YAML: {problem}", "fix the YAML syntax at that line (indentation, quotes, colons)", line=line)],
            source,
        ) from None
    if not isinstance(data, dict):
        raise GraphError([Problem("the document is not a mapping", "start the file with `name:` and `graph:` keys")], source)
    _keep_enum_words(data, text)
    if _boolean_node_names(data):
        raise GraphError(
            [
                Problem(
                    "a node is named yes, no, on, off, true or false, which YAML reads as a boolean",
                    "quote the name wherever it appears ('yes'), or rename the node",
                    at=("graph", "nodes"),
                )
            ],
            source,
        )
    origin: Origin = {}
    try:
        spec = parse_dict(data, source=source, base_dir=Path(source).parent if source else Path.cwd(), origin=origin)
        try:
            admission.count_nodes(spec, limits)
        except admission.LimitError as exc:
            raise GraphError([Problem(str(exc), "split the graph into registered subgraphs")], source) from None
        validate(spec, check_imports=check_imports)
    except GraphError as exc:
        if exc.source != source:  # a subgraph file's own problems already name their file and lines
            raise
        raise GraphError(_with_lines(exc.problems, _line_index(text), origin), source) from None
    return spec


# -- positions ----------------------------------------------------------------------------------------
Key = tuple[str | int, ...]
Origin = dict[Key, Key]  # normalised path prefix -> where it was written in the file


def _line_index(text: str) -> dict[Key, int]:
    """1-based line of every mapping key and sequence item in the document, by path."""
    lines: dict[Key, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    todo: list[tuple[Key, yaml.Node]] = [((), root)] if root is not None else []
    while todo:
        path, node = todo.pop()
        if isinstance(node, yaml.MappingNode):
            for key_node, value in node.value:
                child = (*path, str(key_node.value))
                lines[child] = key_node.start_mark.line + 1
                todo.append((child, value))
        elif isinstance(node, yaml.SequenceNode):
            for index, value in enumerate(node.value):
                child = (*path, index)
                lines[child] = value.start_mark.line + 1
                todo.append((child, value))
    return lines


_BOOL_WORDS = re.compile(r"^(y|yes|n|no|on|off)$", re.IGNORECASE)


def _boolean_node_names(data: dict[str, Any]) -> bool:
    """Whether a node key, or the entry, came out of YAML as a boolean (pydantic then says only that
    ``graph.nodes.1`` is not a valid string)."""
    found = data.get("graph")
    graph: dict[str, Any] = found if isinstance(found, dict) else data
    nodes = graph.get("nodes")
    return (isinstance(nodes, dict) and any(isinstance(k, bool) for k in nodes)) or isinstance(graph.get("entry"), bool)


def _keep_enum_words(data: dict[str, Any], text: str) -> None:
    """YAML 1.1 reads `yes`/`no`/`on`/`off` as booleans; in a human node's ``input: {x: {enum: [yes, no]}}`` they
    are answers, so keep them as the words written (``true``/``false`` stay booleans)."""
    graph = data.get("graph") if isinstance(data.get("graph"), dict) else data
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if not isinstance(nodes, dict) or not any(isinstance(n, dict) and isinstance(n.get("input"), dict) for n in nodes.values()):
        return
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return

    def child(node: yaml.Node | None, key: str) -> yaml.Node | None:
        if isinstance(node, yaml.MappingNode):
            return next((v for k, v in node.value if k.value == key), None)
        return None

    raw_nodes = child(child(root, "graph") or root, "nodes")
    for name, node in nodes.items():
        answer = node.get("input") if isinstance(node, dict) else None
        if not isinstance(answer, dict):
            continue
        for key, field in answer.items():
            enum = child(child(child(child(raw_nodes, str(name)), "input"), str(key)), "enum")
            if isinstance(field, dict) and isinstance(field.get("enum"), list) and isinstance(enum, yaml.SequenceNode):
                field["enum"] = [
                    raw.value if isinstance(raw, yaml.ScalarNode) and isinstance(value, bool) and _BOOL_WORDS.match(raw.value) else value
                    for raw, value in zip(enum.value, field["enum"], strict=False)
                ]


def _source_path(path: Key, origin: Origin) -> Key:
    for cut in range(len(path), -1, -1):
        if path[:cut] in origin:
            return origin[path[:cut]] + path[cut:]
    return path


def _with_lines(problems: list[Problem], lines: dict[Key, int], origin: Origin) -> list[Problem]:
    """Give each problem the line of the nearest enclosing key it names (the item, else its node)."""
    out = []
    for problem in problems:
        path = problem.at or (("graph", "nodes", problem.node) if problem.node else None)
        if problem.line is None and path is not None:
            where = _source_path(tuple(path), origin)
            for cut in range(len(where), 0, -1):
                if where[:cut] in lines:
                    problem = replace(problem, line=lines[where[:cut]])
                    break
        out.append(problem)
    return out


# -- normalisation ----------------------------------------------------------------------------------
def parse_dict(data: dict[str, Any], *, source: str | None = None, base_dir: Path | None = None, origin: Origin | None = None) -> GraphSpec:
    """Normalise the short forms into the long form, then validate types with pydantic."""
    origin = {} if origin is None else origin
    data = _normalise(dict(data), source, origin)
    try:
        spec = GraphSpec.model_validate(data)
    except ValidationError as exc:
        raise GraphError([_problem_from_pydantic(err) for err in exc.errors()], source) from None
    spec.source = source
    _load_subgraphs(spec, base_dir or Path.cwd())
    return spec


GRAPH_KEYS = ("nodes", "edges", "conditional_edges", "parallel_nodes", "entry", "max_iterations")


def _normalise(data: dict[str, Any], source: str | None, origin: Origin) -> dict[str, Any]:
    graph = data.get("graph")
    base: Key = ("graph",)
    if graph is None and "nodes" in data:  # the short form at top level
        graph = {k: data.pop(k) for k in GRAPH_KEYS if k in data}
        data["graph"] = graph
        base = ()
        origin[("graph",)] = ()
    if not isinstance(graph, dict):
        raise GraphError([Problem("missing `graph:` section", "add `graph:` with `nodes:`, `edges:` and `entry:`")], source)
    graph = data["graph"] = dict(graph)
    module = data.pop("module", None) or graph.pop("module", None)
    nodes = graph.get("nodes")
    if isinstance(nodes, list):  # short form: nodes: [step1, step2] with module: pkg.mod
        if not module:
            raise GraphError(
                [Problem("`nodes:` is a list but no `module:` names where the functions live", "add `module: your.package.module`")],
                source,
            )
        graph["nodes"] = {str(n): {"kind": "function", "fn": f"{module}:{n}"} for n in nodes}
        origin.update({("graph", "nodes", str(n)): (*base, "nodes", i) for i, n in enumerate(nodes)})
        if not graph.get("edges") and not graph.get("conditional_edges") and not graph.get("parallel_nodes"):
            graph["edges"] = [{"from": a, "to": b} for a, b in pairwise(nodes)]
            origin.update({("graph", "edges", i): (*base, "nodes", i + 1) for i in range(len(nodes) - 1)})
        graph.setdefault("entry", str(nodes[0]) if nodes else None)
    elif isinstance(nodes, dict) and module:
        for name, node in nodes.items():
            if isinstance(node, dict) and node.get("kind", "function") == "function" and "fn" not in node:
                node["fn"] = f"{module}:{name}"
    problems: list[Problem] = []
    for key in ("edges", "parallel_nodes"):
        for i, item in enumerate(graph.get(key) or []):
            if isinstance(item, dict) and "to" not in item and isinstance(item.get("from"), str) and ", to:" in item["from"]:
                a, b = (s.strip() for s in item["from"].split(", to:", 1))
                problems.append(
                    Problem(
                        f"edge `- from: {a}, to: {b}` is a common shorthand, which YAML reads as one string",
                        f"write it as a flow mapping: `- {{from: {a}, to: {b}}}`",
                        at=(*base, key, i),
                    )
                )
    if problems:
        raise GraphError(problems, source)
    _parallel_form(graph, base, source, origin)
    return data


def _parallel_form(graph: dict[str, Any], base: Key, source: str | None, origin: Origin) -> None:
    """The short parallel form, rewritten as fan-out/fan-in items of ``parallel_nodes``:

    - ``edges`` items with a list on one side (``{from: split, to: [a, b]}``, ``{from: [a, b], to: join}``);
    - ``parallel_nodes: [a, b]`` as a list of node *names*, which declares that those nodes run together. Plain
      edges from one node to several of them (or from several of them into one node) become the fan-out
      (fan-in); every declared name must end up as a branch of some fan-out.
    """
    edges, parallel = graph.get("edges") or [], graph.get("parallel_nodes") or []
    if not isinstance(edges, list) or not isinstance(parallel, list):
        return
    if not all(isinstance(i, dict) for i in edges) or not all(isinstance(i, dict | str) for i in parallel):
        return
    declared = [p for p in parallel if isinstance(p, str)]
    plain: list[tuple[Key, dict[str, Any]]] = []
    fan: list[tuple[Key, dict[str, Any]]] = [((*base, "parallel_nodes", i), p) for i, p in enumerate(parallel) if isinstance(p, dict)]
    for i, item in enumerate(edges):
        ends = [item.get("from"), item.get("to")]
        if any(isinstance(e, list) and len(e) == 1 for e in ends):  # a one-element list is a plain edge
            item = {**item, **{k: v[0] for k, v in item.items() if k in ("from", "to") and isinstance(v, list) and len(v) == 1}}
            ends = [item.get("from"), item.get("to")]
        (fan if any(isinstance(e, list) for e in ends) else plain).append(((*base, "edges", i), item))
    if declared:
        group = set(declared)
        outs: dict[str, list[tuple[Key, dict[str, Any]]]] = {}
        ins: dict[str, list[tuple[Key, dict[str, Any]]]] = {}
        for where, item in plain:
            if isinstance(item.get("to"), str) and item["to"] in group:
                outs.setdefault(str(item.get("from")), []).append((where, item))
            if isinstance(item.get("from"), str) and item["from"] in group:
                ins.setdefault(str(item.get("to")), []).append((where, item))
        grouped: set[Key] = set()
        for source_node, items in outs.items():
            if len(items) > 1:
                fan.append((items[0][0], {"from": source_node, "to": [i["to"] for _, i in items]}))
                grouped.update(w for w, _ in items)
        for target, items in ins.items():
            if len(items) > 1:
                fan.append((items[0][0], {"from": [i["from"] for _, i in items], "to": target}))
                grouped.update(w for w, _ in items)
        plain = [(w, i) for w, i in plain if w not in grouped]
        _check_declared(declared, graph, fan, base, source)
    if not declared and len(fan) == sum(isinstance(p, dict) for p in parallel):
        return  # nothing to rewrite: leave the document as written (and its paths as they are)
    graph["edges"] = [item for _, item in plain]
    graph["parallel_nodes"] = [item for _, item in fan]
    origin.update({("graph", "edges", i): where for i, (where, _) in enumerate(plain)})
    origin.update({("graph", "parallel_nodes", i): where for i, (where, _) in enumerate(fan)})


def _check_declared(
    declared: list[str], graph: dict[str, Any], fan: list[tuple[Key, dict[str, Any]]], base: Key, source: str | None
) -> None:
    found = graph.get("nodes")
    nodes: dict[str, Any] = found if isinstance(found, dict) else {}
    branches = {t for _, item in fan if isinstance(item.get("to"), list) for t in item["to"]}
    problems = []
    for i, name in enumerate(declared):
        at = (*base, "parallel_nodes", i)
        if name not in nodes:
            guess = nearest_name(name, nodes)
            hint = f"did you mean {guess!r}? " if guess else ""
            problems.append(Problem(f"parallel_nodes names unknown node {name!r}", f"{hint}list only defined nodes", at=at))
        elif name not in branches:
            listed = ", ".join(declared)
            problems.append(
                Problem(
                    f"{name!r} is listed in parallel_nodes but no fan-out starts it",
                    f"add the fan-out edge `- {{from: SPLIT, to: [{listed}]}}` and the fan-in `- {{from: [{listed}], to: JOIN}}`",
                    node=name,
                    at=at,
                )
            )
    if problems:
        raise GraphError(problems, source)


def _problem_from_pydantic(err: Any) -> Problem:
    loc = tuple(err["loc"])
    names = [str(p) for p in loc]
    node = names[2] if len(names) > 2 and names[:2] == ["graph", "nodes"] else None
    where = ".".join(names)
    if err["type"] == "extra_forbidden":
        guess = nearest_key_path(loc)
        fix = (
            f"did you mean `{guess}`? (docs/graph-language.md)"
            if guess
            else "remove it or check its spelling against docs/graph-language.md"
        )
        return Problem(f"unknown key `{names[-1]}` at {where}", fix, node=node, at=loc)
    if err["type"] == "missing":
        return Problem(f"missing required key `{names[-1]}` at {where}", f"add `{names[-1]}:`", node=node, at=loc[:-1])
    return Problem(f"{where}: {err['msg']}", "see docs/graph-language.md for the expected form", node=node, at=loc)


#: The subgraph files being loaded, outermost first: a file that includes itself (directly or through others)
#: is refused instead of recursing until Python's stack runs out.
_SUBGRAPH_CHAIN: ContextVar[tuple[Path, ...]] = ContextVar("stepwise_subgraph_chain", default=())


def _load_subgraphs(spec: GraphSpec, base_dir: Path) -> None:
    """Inline subgraph files and script files, so a registered version is self-contained and hashable."""
    for name, node in spec.graph.nodes.items():
        if isinstance(node.script, str):
            try:
                node.script = load_script(node.script, base_dir)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                raise GraphError(
                    [Problem(f"cannot read script {node.script!r}: {exc}", "give a YAML list file relative to this file", node=name)],
                    spec.source,
                ) from None
        if node.kind != "subgraph" or not node.graph or node.subgraph_spec is not None:
            continue
        path = (base_dir / node.graph).resolve()
        if not path.is_file():
            raise GraphError(
                [Problem(f"subgraph file {node.graph!r} not found (looked in {path})", "give a path relative to this file", node=name)],
                spec.source,
            )
        chain = _SUBGRAPH_CHAIN.get() or ((Path(spec.source).resolve(),) if spec.source else ())
        if path in chain:
            files = " → ".join(p.name for p in (*chain, path))
            raise GraphError(
                [Problem(f"subgraph {node.graph!r} contains itself ({files})", "loop with edges inside one graph instead", node=name)],
                spec.source,
            )
        token = _SUBGRAPH_CHAIN.set((*chain, path))
        try:
            node.subgraph_spec = load_file(path)
        finally:
            _SUBGRAPH_CHAIN.reset(token)
