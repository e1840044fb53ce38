"""Function nodes of the ``acme-triage`` example graph: plain ``def node(state) -> dict`` functions."""

from __future__ import annotations

from typing import Any

URGENT_WORDS = ("outage", "down", "breach")


def classify(state: dict[str, Any]) -> dict[str, Any]:
    """Tag the ticket urgent when it mentions an outage word."""
    text = str(state.get("ticket", "")).lower()
    return {"priority": "urgent" if any(word in text for word in URGENT_WORDS) else "normal"}


def route(state: dict[str, Any]) -> dict[str, Any]:
    """Pick the queue from the priority."""
    return {"queue": "on-call" if state.get("priority") == "urgent" else "support"}
