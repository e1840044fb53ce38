"""The state at every seq of a thread, in one pass over its log (W3 "whole history").

The client offers ``state(thread, at=seq)`` for one point in time and ``history(thread)`` for the raw
events; listing every state through ``state(at=…)`` would re-fold the log once per seq. This folds the
log once, with the same pure ``apply_event`` the hydrator uses, keeping each intermediate state. The
reducers never mutate a state in place, so every yielded state is an independent value.
(Proposed to the lead as ``Stepwise.states(thread_id)``.)
"""

from __future__ import annotations

from typing import Any

from stepwise.client import Stepwise
from stepwise.runtime.step import reducers_of
from stepwise.state import fold


def states_at_every_seq(client: Stepwise, thread_id: str) -> list[tuple[int, dict[str, Any]]]:
    events = client.history(thread_id)
    runs = client.runs(thread_id=thread_id, limit=1)
    reducers = reducers_of(client.services.graph(runs[0].graph_ref)) if runs else {}
    by_seq = {e.seq: e for e in events}
    view = fold.levels(())  # the thread's main scope: branch events enter through their join
    state: dict[str, Any] = {}
    out: list[tuple[int, dict[str, Any]]] = []
    for event in events:
        if fold.is_visible(event, view):
            state = fold.apply_event(state, event, reducers, by_seq.__getitem__)
        out.append((event.seq, state))
    return out
