"""Retry and Catch rules of ASL as pure functions."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


def error_matches(patterns: Sequence[str], error: str) -> bool:
    """ASL matching: exact name, ``States.ALL`` (anything but a Runtime error), ``States.TaskFailed``."""
    for pattern in patterns:
        if pattern == error:
            return True
        if pattern == "States.ALL" and error != "States.Runtime":
            return True
        if pattern == "States.TaskFailed" and error not in ("States.Timeout", "States.Runtime"):
            return True
    return False


def delay(retrier: dict[str, Any], attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based) under one Retry rule."""
    seconds = float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** attempt
    if "MaxDelaySeconds" in retrier:
        seconds = min(seconds, float(retrier["MaxDelaySeconds"]))
    if retrier.get("JitterStrategy") == "FULL":
        seconds = (rng or random).uniform(0, seconds)
    return seconds


def pick_retrier(retriers: Sequence[dict[str, Any]], error: str) -> int | None:
    for index, retrier in enumerate(retriers):
        if error_matches(retrier.get("ErrorEquals", []), error):
            return index
    return None


def pick_catcher(catchers: Sequence[dict[str, Any]], error: str) -> dict[str, Any] | None:
    for catcher in catchers:
        if error_matches(catcher.get("ErrorEquals", []), error):
            return catcher
    return None
