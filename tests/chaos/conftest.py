"""Prints the chaos counts at the end of the session (kills survived, races consistent, requests fuzzed)."""

from __future__ import annotations

from typing import Any

from tests.chaos.counts import COUNTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if COUNTS:
        terminalreporter.section("chaos counts")
        for name in sorted(COUNTS):
            terminalreporter.write_line(f"{name}: {COUNTS[name]}")
