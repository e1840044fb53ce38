"""The start-up graph's nodes (``bench/graphs/startup.yaml``): three small functions, as in a user's graph.

Nothing is built at import. The other workloads' nodes (``bench.nodes``) import ``bench.workload``, whose
message pool took 68-83 ms to generate on the bench machine; start-up measures what ``stepwise run`` itself
imports, so it must not be charged with a fixture of the benchmark's.
"""

from __future__ import annotations

from typing import Any


def _say(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "assistant", "content": text}]}


def a(state: dict[str, Any]) -> dict[str, Any]:
    return _say("looked it up")


def b(state: dict[str, Any]) -> dict[str, Any]:
    return _say("checked it")


def c(state: dict[str, Any]) -> dict[str, Any]:
    return _say("done")
