"""Stepwise: agent graphs compiled to Amazon States Language, run durably on Step Functions or locally.

The names a user needs live here::

    from stepwise import Stepwise, Graph, END, load_file

    client = Stepwise.embedded()                      # SQLite + files in ./.stepwise
    result = client.run(load_file("graph.yaml"), {"question": "..."})

Names load on first use (PEP 562), so ``import stepwise`` stays cheap for the CLI and for Lambdas.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Stepwise": "stepwise.client",
    "RunResult": "stepwise.client",
    "build_client": "stepwise.config",
    "Settings": "stepwise.settings",
    "Graph": "stepwise.graph.builder",
    "END": "stepwise.graph.spec",
    "GraphSpec": "stepwise.graph.spec",
    "load_file": "stepwise.graph.loader",
    "load_text": "stepwise.graph.loader",
    "GraphError": "stepwise.graph.errors",
    "NodeContext": "stepwise.runtime.context",
    "StepwiseError": "stepwise.errors",
    "TaskError": "stepwise.errors",
    "NodeError": "stepwise.errors",
    "StateConflictError": "stepwise.errors",
    "MaxIterationsError": "stepwise.errors",
}

__all__ = [
    "END",
    "Graph",
    "GraphError",
    "GraphSpec",
    "MaxIterationsError",
    "NodeContext",
    "NodeError",
    "RunResult",
    "Settings",
    "StateConflictError",
    "Stepwise",
    "StepwiseError",
    "TaskError",
    "__version__",
    "build_client",
    "load_file",
    "load_text",
]

if TYPE_CHECKING:
    from stepwise.client import RunResult, Stepwise
    from stepwise.config import build_client
    from stepwise.errors import MaxIterationsError, NodeError, StateConflictError, StepwiseError, TaskError
    from stepwise.graph.builder import Graph
    from stepwise.graph.errors import GraphError
    from stepwise.graph.loader import load_file, load_text
    from stepwise.graph.spec import END, GraphSpec
    from stepwise.runtime.context import NodeContext
    from stepwise.settings import Settings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # AttributeError lets `from stepwise import awsclients` fall back to the submodule
        raise AttributeError(f"module 'stepwise' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
