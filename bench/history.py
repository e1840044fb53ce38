"""The state at every seq of a thread, in one pass over its log (W3 "whole history"): ``Stepwise.states``."""

from __future__ import annotations

from typing import Any

from stepwise.client import Stepwise


def states_at_every_seq(client: Stepwise, thread_id: str) -> list[tuple[int, dict[str, Any]]]:
    return list(client.states(thread_id))
