"""The package's layering rules, checked over the import graph of ``shared/stepwise`` (docs/architecture.md).

Every ``import``/``from … import`` counts, also those inside functions and under ``TYPE_CHECKING``:
a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Leaf modules every layer may use; they import nothing else from the package.
FOUNDATION = frozenset({"errors", "clock", "settings", "awsclients", "extras", "aio"})
#: The user-facing top: nothing below may import these.
TOP = frozenset({"api", "cli", "client", "config", "executors", "remote"})

#: unit -> the units it may import (besides FOUNDATION and itself); units not listed may import anything but TOP.
ALLOWED: dict[str, frozenset[str]] = {
    "graph": frozenset(),
    "asl": frozenset({"graph"}),
    "state": frozenset({"graph"}),
    "store": frozenset(),  # the API's record store (keys, agents, roles): a leaf that tools/ reads roles from
}
#: unit -> units it must not import (on top of TOP for everything below the top).
FORBIDDEN: dict[str, frozenset[str]] = {
    # the layers below the API never reach up into it (roles come from store/, not api/)
    **{unit: frozenset({"api"}) for unit in ("tools", "memory", "runtime", "state", "llm")},
    "executors": frozenset({"api", "cli", "client", "config"}),
    "client": frozenset({"api", "cli", "config"}),
    "config": frozenset({"api", "cli"}),
    "api": frozenset({"runtime", "executors", "asl", "cli"}),  # the API goes through the client
    "cli": frozenset({"runtime", "executors"}),  # … and so does the CLI
    "remote": frozenset({"runtime", "executors", "asl", "state", "client", "config", "cli"}),  # speaks HTTP, shares api.models
}


@dataclass(frozen=True)
class Import:
    source: str  # unit doing the import (subpackage or top-level module name)
    target: str
    where: str  # path:line


def unit_of(module: str) -> str:
    """``stepwise.graph.spec`` -> ``graph``; ``stepwise.client`` -> ``client``; ``stepwise.cli_memory`` -> ``cli``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return "cli" if parts[1].startswith("cli_") else parts[1]  # cli_memory.py etc. are the CLI's own modules


def _module_name(package: Path, path: Path) -> tuple[str, bool]:
    """``.../stepwise/graph/spec.py`` -> (``stepwise.graph.spec``, False); a package's ``__init__`` -> (its name, True)."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_init else parts), is_init


def _statements(package: Path) -> Iterator[tuple[str, Path, int, str, list[str]]]:
    """Every import statement of the package: (importing module, its file, line, the module named, the names
    taken from it — empty for ``import x``)."""
    for path in sorted(package.rglob("*.py")):
        module, is_init = _module_name(package, path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield module, path, node.lineno, alias.name, []
            elif isinstance(node, ast.ImportFrom):
                stem = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    base = module.split(".") if is_init else module.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    stem = ".".join([*base, node.module] if node.module else base)
                yield module, path, node.lineno, stem, [alias.name for alias in node.names]


def imports(package: Path) -> list[Import]:
    """Every cross-unit import inside ``package`` (the ``stepwise`` directory)."""
    found: list[Import] = []
    for module, path, line, stem, names in _statements(package):
        source = unit_of(module)
        # `from stepwise import awsclients` imports the submodule
        targets = [f"{stem}.{name}" for name in names] if stem == "stepwise" and names else [stem]
        for target in targets:
            if target == "stepwise" or not target.startswith("stepwise."):
                continue
            unit = unit_of(target)
            if unit != source:
                found.append(Import(source, unit, f"{path.relative_to(package.parent)}:{line}"))
    return found


def module_cycles(package: Path) -> list[list[str]]:
    """Groups of modules of one unit that import each other, directly or through others: within a unit the
    modules must import one way too (``from pkg import name`` is an edge to module ``pkg.name`` when there
    is one, else to ``pkg`` itself, its ``__init__``)."""
    known = {_module_name(package, path)[0] for path in package.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for module, _, _, stem, names in _statements(package):
        targets = {f"{stem}.{n}" if f"{stem}.{n}" in known else stem for n in names} if names else {stem}
        for target in targets & known:
            if target != module and unit_of(target) == unit_of(module) != "__init__":
                edges.setdefault(module, set()).add(target)
    return cycles(edges)


def violations(package: Path) -> list[str]:
    """Each import that breaks a rule, and each import cycle between units, as one readable line."""
    problems: list[str] = []
    edges: dict[str, set[str]] = {}
    for imp in imports(package):
        edges.setdefault(imp.source, set()).add(imp.target)
        if imp.source == "__init__" or imp.target in FOUNDATION:  # foundation modules may also use each other
            continue
        if imp.source in FOUNDATION:
            problems.append(f"{imp.where}: {imp.source} is a foundation module and may not import stepwise.{imp.target}")
        elif imp.source in ALLOWED and imp.target not in ALLOWED[imp.source]:
            allowed = ", ".join(sorted(ALLOWED[imp.source])) or "nothing else"
            problems.append(f"{imp.where}: {imp.source}/ may import only {allowed} (and foundation modules), not {imp.target}")
        elif imp.target in FORBIDDEN.get(imp.source, frozenset()) or (imp.source not in TOP and imp.target in TOP):
            problems.append(f"{imp.where}: {imp.source} may not import {imp.target}")
    edges.pop("__init__", None)  # the front door re-exports lazily; it sits above everything
    problems += [f"import cycle between {' <-> '.join(cycle)}" for cycle in cycles(edges)]
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Groups of units that import each other, directly or through others (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups
