"""The JSONPath subset ASL uses for InputPath/Parameters/ResultPath/OutputPath.

Supported: ``$``, ``$$`` (the context object), ``.name``, ``['name']`` and ``[index]`` steps. That is
all the reference paths ASL allows in ResultPath, and all our compiler emits; general JSONPath
libraries neither enforce nor support ASL's *write* semantics for ResultPath, hence this module.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any

from stepwise.errors import StepwiseError

_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


class PathError(StepwiseError, ValueError):
    """A reference path could not be parsed or resolved (ASL's States.Runtime)."""


def steps(path: str) -> list[str | int]:
    """The steps of ``path`` (a fresh list; parsed once per distinct path: a state machine has few)."""
    return list(_steps(path))


@lru_cache(maxsize=4096)
def _steps(path: str) -> tuple[str | int, ...]:
    if path.startswith("$$"):
        rest = path[2:]
    elif path.startswith("$"):
        rest = path[1:]
    else:
        raise PathError(f"path {path!r} must start with '$'")
    out: list[str | int] = []
    pos = 0
    while pos < len(rest):
        m = _STEP.match(rest, pos)
        if not m:
            raise PathError(f"unsupported path syntax at {rest[pos:]!r} in {path!r}")
        name, index, quoted, dquoted = m.groups()
        out.append(int(index) if index is not None else (name or quoted or dquoted or ""))
        pos = m.end()
    return tuple(out)


def get(data: Any, path: str, context: Any = None) -> Any:
    node = context if path.startswith("$$") else data
    for step in _steps(path):
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            raise PathError(f"path {path!r} does not exist in the input") from None
    return node


def exists(data: Any, path: str, context: Any = None) -> bool:
    try:
        get(data, path, context)
    except PathError:
        return False
    return True


def put(data: Any, path: str | None, value: Any) -> Any:
    """ASL ResultPath: ``None`` discards the result, ``$`` replaces the input, deeper paths insert."""
    if path is None:
        return data
    if path == "$":  # the default ResultPath: the result replaces the input
        return value
    parts = steps(path)
    if not parts:
        return value
    root = copy.copy(data) if isinstance(data, dict) else {}
    node = root
    for step in parts[:-1]:
        child = node.get(step) if isinstance(node, dict) else None
        child = copy.copy(child) if isinstance(child, dict) else {}
        node[step] = child
        node = child
    node[parts[-1]] = value
    return root
