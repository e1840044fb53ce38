"""Pure functions that turn a thread's events into state.

Scopes make parallel writes deterministic. Main-flow events have scope ``""``. A Parallel branch or a
Map item writes under its own scope (``"p:split/0"``, ``"m:plan/3"``, nested with ``/``) and only sees
its ancestors' events up to the fork plus its own. The join step appends one ``join`` event listing
the branch events in branch order; folding that event applies them in that order, whatever order the
branches actually finished in.

A *frame* is ``(scope, base)``: the scope a branch runs in and the seq of the log when it forked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from stepwise.state import reducers
from stepwise.state.events import FORKED, JOIN, ROLLED_BACK, STATE_CHANGING, Event

Frames = Sequence[Sequence[Any]]  # [(scope: str, base: int), ...], outermost first


def scope_of(frames: Frames) -> str:
    return str(frames[-1][0]) if frames else ""


def levels(frames: Frames) -> list[tuple[str, float, float]]:
    """(scope, lo, hi): an event at ``scope`` is visible when lo < seq <= hi."""
    out: list[tuple[str, float, float]] = []
    scope, lo = "", 0.0
    for name, base in frames:
        out.append((scope, lo, float(base)))
        scope, lo = str(name), float(base)
    out.append((scope, lo, math.inf))
    return out


def visible_scopes(frames: Frames) -> frozenset[str]:
    """Every scope whose events a reader at ``frames`` may see (before the seq ranges are applied)."""
    return frozenset(scope for scope, _, _ in levels(frames))


def is_visible(event: Event, view: list[tuple[str, float, float]]) -> bool:
    return any(event.scope == scope and lo < event.seq <= hi for scope, lo, hi in view)


def apply_event(
    state: dict[str, Any],
    event: Event,
    reducer_names: Mapping[str, str],
    lookup: Callable[[int], Event],
    owned: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    """``state`` after ``event``. With ``owned`` (see ``fold``), ``state`` is mutated in place."""
    if event.type in STATE_CHANGING:
        update = event.data.get("update")
        if not update:
            return state
        if owned is not None:
            return _apply_in_place(state, update, reducer_names, owned)
        return reducers.apply(state, update, reducer_names)
    if event.type == JOIN:
        for ref in event.data.get("refs", []):
            state = apply_event(state, lookup(ref), reducer_names, lookup, owned)
        return state
    if event.type in (FORKED, ROLLED_BACK):  # both restate the thread: a fork's origin, or the state before a discarded run
        if owned is not None:
            owned.clear()  # the restated values belong to the event, not to this fold
        return dict(event.data.get("state") or {})
    return state


def _apply_in_place(
    state: dict[str, Any], update: Mapping[str, Any], names: Mapping[str, str], owned: dict[str, list[Any]]
) -> dict[str, Any]:
    """``reducers.apply`` for a state this fold owns: an ``append`` onto a list the fold owns extends it
    (O(items) instead of copying the whole list per event); every other channel goes through its reducer."""
    for channel, value in update.items():
        name = names.get(channel, "replace")
        mine = owned.get(channel)
        extendable = name == "append" and state.get(channel) is mine
        if extendable and mine is not None:
            if isinstance(value, list):
                mine.extend(value)
            else:
                mine.append(value)
            continue
        current = state.get(channel)
        try:
            new = reducers.resolve(name)(current, value)
        except reducers.ReducerError:
            raise
        except Exception as exc:
            raise reducers.ReducerError(channel, name, exc) from exc
        state[channel] = new
        if name == "append" and type(new) is list:
            owned[channel] = new  # the built-in append returns a fresh list: the fold may extend it from now on
    return state


def fold(
    state: dict[str, Any],
    events: Iterable[Event],
    reducer_names: Mapping[str, str],
    frames: Frames,
    lookup: Callable[[int], Event],
    owned: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    """``state`` after ``events``. ``owned`` says the caller owns ``state`` (nobody else holds the dict, a
    snapshot decoded for this read): it is then updated in place, and ``owned`` maps each ``append``
    channel to the list object the fold may extend in place (the lists decoded with it, and those it built)."""
    view = levels(frames)
    discarded: set[str] = set()  # runs rolled back: a write of theirs that lands after the marker is skipped too
    for event in events:
        if event.type == ROLLED_BACK:
            discarded.add(str(event.data.get("run_id")))
        elif discarded and event.run_id in discarded:
            continue
        if is_visible(event, view):
            state = apply_event(state, event, reducer_names, lookup, owned)
    return state


def join_refs(events: Iterable[Event], parent_scope: str, block: str) -> list[int]:
    """Seqs of the events written directly inside ``block``'s branches, ordered by branch index then seq."""
    prefix = f"{parent_scope}/{block}/" if parent_scope else f"{block}/"
    found: list[tuple[int, int]] = []
    for event in events:
        if not event.scope.startswith(prefix):
            continue
        rest = event.scope[len(prefix) :]
        if rest.isdigit() and event.type in (*STATE_CHANGING, JOIN):
            found.append((int(rest), event.seq))
    return [seq for _, seq in sorted(found)]


def replace_conflicts(events: Sequence[Event], reducer_names: Mapping[str, str], prefix_len: int) -> list[tuple[str, str, str]]:
    """Channels with a replace reducer written by two different branches: (channel, branch a, branch b)."""
    writers: dict[str, str] = {}
    conflicts: list[tuple[str, str, str]] = []
    for event in events:
        branch = event.scope[prefix_len:]
        for channel in (event.data.get("update") or {}) if event.type in STATE_CHANGING else {}:
            if reducer_names.get(channel, "replace") != "replace":
                continue
            first = writers.setdefault(channel, branch)
            if first != branch:
                conflicts.append((channel, first, branch))
    return conflicts
