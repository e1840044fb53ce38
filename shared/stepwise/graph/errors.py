"""Load-time errors that name the file, the node (or line) and the fix."""

from __future__ import annotations

from dataclasses import dataclass

from stepwise.errors import StepwiseError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph: what, how to fix it, and where."""

    message: str
    fix: str
    node: str | None = None
    line: int | None = None
    at: tuple[str | int, ...] | None = None  # where in the document (graph.edges.3), for the loader to find the line

    def render(self, source: str | None) -> str:
        where = source or "<graph>"
        if self.line is not None:
            where += f":{self.line}"
        if self.node is not None:
            where += f": node '{self.node}'"
        return f"{where}: {self.message}. Fix: {self.fix}"


class GraphError(StepwiseError, ValueError):
    """One or more problems with a graph definition."""

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        super().__init__("\n".join(p.render(source) for p in problems))
