"""YAML → GraphSpec, accepting the seed's long and short forms, with errors that name file, line and fix."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stepwise.graph import limits
from stepwise.graph.errors import GraphError, Problem
from stepwise.graph.spec import GraphSpec
from stepwise.graph.validate import validate
from stepwise.llm.scripted import load_script

_SEED_SHORTHAND = re.compile(r"^\s*-\s*from:\s*([^,{}]+),\s*to:\s*([^{}]+)$")


def load_file(path: str | Path, *, check_imports: bool = False) -> GraphSpec:
    path = Path(path)
    if not path.is_file():
        raise GraphError([Problem(f"no such file {str(path)!r}", "check the path")], str(path))
    return load_text(path.read_text(encoding="utf-8"), source=str(path), check_imports=check_imports)


def load_text(text: str, *, source: str | None = None, check_imports: bool = False) -> GraphSpec:
    try:
        limits.check_yaml(text)  # before safe_load: aliases, depth and integer size bounded (graph/limits.py)
    except limits.LimitError as exc:
        raise GraphError([Problem(str(exc), "shrink the document, or raise the limit with its STEPWISE_MAX_* variable")], source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        shorthand = _SEED_SHORTHAND.match(text.splitlines()[mark.line]) if mark is not None and mark.line < len(text.splitlines()) else None
        if shorthand:
            a, b = shorthand.group(1).strip(), shorthand.group(2).strip()
            raise GraphError(
                [
                    Problem(
                        f"edge `- from: {a}, to: {b}` is the seed's shorthand, which is not valid YAML",
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
    spec = parse_dict(data, source=source, base_dir=Path(source).parent if source else Path.cwd())
    try:
        limits.count_nodes(spec)
    except limits.LimitError as exc:
        raise GraphError([Problem(str(exc), "split the graph into registered subgraphs")], source) from None
    validate(spec, check_imports=check_imports)
    return spec


def parse_dict(data: dict[str, Any], *, source: str | None = None, base_dir: Path | None = None) -> GraphSpec:
    """Normalise the seed's forms into the long form, then validate types with pydantic."""
    data = _normalise(dict(data), source)
    try:
        spec = GraphSpec.model_validate(data)
    except ValidationError as exc:
        raise GraphError([_problem_from_pydantic(err) for err in exc.errors()], source) from None
    spec.source = source
    _load_subgraphs(spec, base_dir or Path.cwd())
    return spec


def _normalise(data: dict[str, Any], source: str | None) -> dict[str, Any]:
    graph = data.get("graph")
    if graph is None and "nodes" in data:  # seed short form at top level
        graph = {k: data.pop(k) for k in ("nodes", "edges", "conditional_edges", "parallel_nodes", "entry", "max_iterations") if k in data}
        data["graph"] = graph
    if not isinstance(graph, dict):
        raise GraphError([Problem("missing `graph:` section", "add `graph:` with `nodes:`, `edges:` and `entry:`")], source)
    module = data.pop("module", None) or graph.pop("module", None)
    nodes = graph.get("nodes")
    if isinstance(nodes, list):  # short form: nodes: [step1, step2] with module: pkg.mod
        if not module:
            raise GraphError(
                [Problem("`nodes:` is a list but no `module:` names where the functions live", "add `module: your.package.module`")],
                source,
            )
        graph["nodes"] = {str(n): {"kind": "function", "fn": f"{module}:{n}"} for n in nodes}
        if not graph.get("edges") and not graph.get("conditional_edges") and not graph.get("parallel_nodes"):
            graph["edges"] = [{"from": a, "to": b} for a, b in pairwise(nodes)]
        graph.setdefault("entry", str(nodes[0]) if nodes else None)
    elif isinstance(nodes, dict) and module:
        for name, node in nodes.items():
            if isinstance(node, dict) and node.get("kind", "function") == "function" and "fn" not in node:
                node["fn"] = f"{module}:{name}"
    problems: list[Problem] = []
    for key in ("edges", "parallel_nodes"):
        for item in graph.get(key) or []:
            if isinstance(item, dict) and "to" not in item and isinstance(item.get("from"), str) and ", to:" in item["from"]:
                a, b = (s.strip() for s in item["from"].split(", to:", 1))
                problems.append(
                    Problem(
                        f"edge `- from: {a}, to: {b}` is the seed's shorthand, which YAML reads as one string",
                        f"write it as a flow mapping: `- {{from: {a}, to: {b}}}`",
                    )
                )
    if problems:
        raise GraphError(problems, source)
    return data


def _problem_from_pydantic(err: Any) -> Problem:
    loc = [str(p) for p in err["loc"]]
    node = loc[2] if len(loc) > 2 and loc[:2] == ["graph", "nodes"] else None
    where = ".".join(loc)
    if err["type"] == "extra_forbidden":
        return Problem(f"unknown key `{loc[-1]}` at {where}", "remove it or check its spelling against docs/graph-language.md", node=node)
    if err["type"] == "missing":
        return Problem(f"missing required key `{loc[-1]}` at {where}", f"add `{loc[-1]}:`", node=node)
    return Problem(f"{where}: {err['msg']}", "see docs/graph-language.md for the expected form", node=node)


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
        node.subgraph_spec = load_file(path)
