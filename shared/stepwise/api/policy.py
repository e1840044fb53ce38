"""What a tenant may put in a graph it sends over the API.

A graph is code by reference: a function node's ``fn`` and a custom reducer name a Python callable that
the step imports and calls with the thread's state. On a multi-tenant API that is remote code
selection, so the API enforces, at registration and again at execution:

1. Import paths (``fn`` of function nodes, custom reducers ``pkg.mod:fn``) must be
   ``module.path:function`` with a module under one of the allowed prefixes
   (``STEPWISE_API_ALLOWED_MODULES``, default ``statemachines.`` (the project's own graphs),
   ``stepwise.examples.`` and ``stepwise.tools.``, see ``api/settings.py``); the function name may not
   start with ``_``. The path must resolve to a plain Python function *defined in* that module
   (``obj.__module__`` is the module): not a re-exported module (``stepwise.tools.builtin:os``),
   a class, a builtin, a generator, a coroutine function (``async def``
   node functions are accepted outside the ``stepwise`` package), or a CLI entry point
   (``main`` or anything in a ``__main__``/``cli`` module), and it must accept the call the step makes
   (``(state)`` or ``(state, ctx)``; reducers ``(current, update)``). Deploy your node code inside an
   allowed package (e.g. ``statemachines.yourteam``) or widen the list for a single-tenant install.
2. No server files: ``script:`` must be an inline list and a subgraph must be inlined as
   ``subgraph_spec:`` (or registered separately), never a path, so a request cannot read files.
3. A document may expand to at most ``STEPWISE_MAX_VALUES`` values (``graph/limits.py``): YAML aliases are fine for reuse (a model
   string shared by two nodes) but not as an expansion bomb ("billion laughs"). YAML is parsed only by
   ``yaml.safe_load`` through ``stepwise.graph.loader.load_text`` — never eval.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from stepwise.graph import limits
from stepwise.graph.errors import GraphError, Problem
from stepwise.graph.loader import load_text
from stepwise.graph.spec import GraphSpec
from stepwise.graph.validate import validate
from stepwise.state.reducers import BUILTIN_REDUCERS

_IMPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z][A-Za-z0-9_]*$")


def load_graph(*, yaml_text: str | None = None, graph: dict[str, Any] | None = None, allowed_modules: Sequence[str]) -> GraphSpec:
    """Parse a graph sent by a tenant, enforcing the policy above; GraphError lists every problem."""
    if (yaml_text is None) == (graph is None):
        raise GraphError([Problem("send exactly one of `yaml` (text) or `graph` (a JSON object)", "drop one of them")])
    if yaml_text is not None:
        try:
            limits.check_yaml(yaml_text)  # aliases, depth and integer size bounded before any parser recurses
            data = yaml.safe_load(yaml_text)
        except limits.LimitError as exc:
            raise GraphError([Problem(str(exc), "shrink or flatten the document (limits: graph/limits.py)")]) from None
        except yaml.YAMLError:
            data = None  # load_text reports the syntax error with its line
        text = yaml_text
    else:
        data, text = graph, json.dumps(graph)
    if isinstance(data, dict):
        problems = list(_file_references(data))
        if problems:
            raise GraphError(problems)
    spec = load_text(text)
    check(spec, allowed_modules)
    return spec


def check(spec: GraphSpec, allowed_modules: Sequence[str]) -> None:
    """Raise GraphError if the spec (or an inlined subgraph) imports outside the allowed modules."""
    problems: list[Problem] = []
    for owner, sub in _specs(spec, ""):
        if owner:  # inlined subgraphs bypass the loader's validation: validate them here
            try:
                validate(sub)
            except GraphError as exc:
                problems.extend(Problem(p.message, p.fix, node=f"{owner}/{p.node}" if p.node else owner) for p in exc.problems)
        for name, node in sub.graph.nodes.items():
            if node.fn is not None:
                problems.extend(_check_path(node.fn, f"{owner}{name}", "fn", allowed_modules, arities=(1, 2), coroutines=True))
        for channel, reducer in sub.state.items():
            if reducer not in BUILTIN_REDUCERS:
                problems.extend(_check_path(reducer, None, f"reducer of channel {channel!r}", allowed_modules, arities=(2,)))
    if problems:
        raise GraphError(problems)


def allowed(path: str, allowed_modules: Sequence[str]) -> bool:
    if not _IMPORT_PATH.match(path):
        return False
    module = path.split(":", 1)[0] + "."
    return any(module.startswith(p if p.endswith(".") else p + ".") for p in allowed_modules)


def _check_path(
    path: str, node: str | None, what: str, allowed_modules: Sequence[str], arities: tuple[int, ...], *, coroutines: bool = False
) -> Iterator[Problem]:
    if not allowed(path, allowed_modules):
        prefixes = ", ".join(allowed_modules) or "(none: this API accepts no custom code)"
        yield Problem(
            f"{what} {path!r} is not an allowed import path on this API",
            f"use 'module.path:function' inside an allowed package ({prefixes}); operators widen the list "
            "with STEPWISE_API_ALLOWED_MODULES",
            node=node,
        )
        return
    reason = plain_function_problem(path, arities, coroutines=coroutines)
    if reason is not None:
        yield Problem(f"{what} {path!r} {reason}", "point it at a `def` of your own node code in that module", node=node)


_ENTRY_MODULES = ("__main__", "cli")


def plain_function_problem(path: str, arities: tuple[int, ...] = (1, 2), *, coroutines: bool = False) -> str | None:
    """Why ``path`` is not a plain function defined in its own module and callable with one of ``arities``
    positional arguments; None if it is. Imports the module (it is under an allowed prefix already).

    ``coroutines``: an ``async def`` node function is accepted too (the engine awaits it; fan-out branches
    wait without a thread each), but only outside the ``stepwise`` package: Stepwise's own coroutine
    functions are tool and model calls (``stepwise.tools.builtin:http_fetch``) that must be reached through
    their permission checks, never called as a bare node. Reducers stay synchronous."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the tenant's problem to fix
        return f"cannot be imported ({type(exc).__name__})"
    obj = getattr(module, attr, None)
    if obj is None:
        return "does not exist"
    awaitable_ok = coroutines and not (module_name == "stepwise" or module_name.startswith("stepwise."))
    if not inspect.isfunction(obj) or (inspect.iscoroutinefunction(obj) and not awaitable_ok) or inspect.isgeneratorfunction(obj):
        return f"is a {type(obj).__name__}, not a plain function"
    if obj.__module__ != module_name or obj.__name__ != attr:
        return f"is re-exported from {obj.__module__}:{obj.__name__}, not defined in {module_name}"
    if attr == "main" or module_name.rsplit(".", 1)[-1] in _ENTRY_MODULES:
        return "is a command-line entry point"
    signature = inspect.signature(obj)
    for n in arities:
        try:
            signature.bind(*range(n))
            return None
        except TypeError:
            continue
    return f"does not take {' or '.join(str(n) for n in arities)} positional argument(s)"


def _specs(spec: GraphSpec, owner: str) -> Iterator[tuple[str, GraphSpec]]:
    yield owner, spec
    for name, node in spec.graph.nodes.items():
        if node.subgraph_spec is not None:
            yield from _specs(node.subgraph_spec, f"{owner}{name}/")


def _file_references(data: dict[str, Any], owner: str = "") -> Iterator[Problem]:
    graph = data.get("graph") if isinstance(data.get("graph"), dict) else data
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if not isinstance(nodes, dict):
        return
    for name, node in nodes.items():
        if not isinstance(node, dict):
            continue
        where = f"{owner}{name}"
        if isinstance(node.get("script"), str):
            yield Problem("`script:` names a file; the API does not read server files", "inline the script as a YAML/JSON list", node=where)
        if node.get("kind") == "subgraph" and isinstance(node.get("graph"), str) and not node.get("subgraph_spec"):
            yield Problem(
                "`graph:` names a subgraph file; the API does not read server files",
                "inline the subgraph under `subgraph_spec:` (a whole graph document)",
                node=where,
            )
        if isinstance(node.get("subgraph_spec"), dict):
            yield from _file_references(node["subgraph_spec"], f"{where}/")
