"""rich, imported on first use: `stepwise run -o json` and the other plain-output paths never import it
(start-up time; see docs/benchmarks.md). Stand-ins for the few rich names the CLIs use."""

from __future__ import annotations

from typing import Any


class _Console:
    """A rich Console made on first use: `stepwise run -o json` and the other plain-output paths never
    import rich (start-up time; see docs/benchmarks.md)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def Table(*columns: str) -> Any:
    from rich.table import Table as RichTable

    return RichTable(*columns)


def Console(**options: Any) -> Any:
    from rich.console import Console as RichConsole

    return RichConsole(**options)
