"""Did a node change the state it was given, in place, instead of returning the change?

A node's ``state`` is the step's hydrated state, shared with the in-process cache. A change made to it in place
(``state["messages"].append(m)``, ``state["x"] = 1``) is not in the update, so it is never logged: later steps in
this process would see it, a resumed run (another process, a Lambda) would not. The check is cheap on purpose
(a shallow copy of the channels and the sizes of the lists and dicts among them, ~2 µs a step): it catches
appends, pops, new keys and replaced or deleted channels, not an edit inside a value that keeps its size.
"""

from __future__ import annotations

from typing import Any

Shape = tuple[dict[str, Any], list[int]]


def shape(state: dict[str, Any]) -> Shape:
    """The channels as the node got them (a shallow copy) and each one's size."""
    return dict(state), _sizes(state)


def _sizes(state: dict[str, Any]) -> list[int]:
    """Each channel's size: its length for a list or dict, else -1."""
    return [len(v) if type(v) is list or type(v) is dict else -1 for v in state.values()]


def changed_in_place(state: dict[str, Any], before: Shape) -> str | None:
    """What the node changed in ``state`` since ``before`` (a phrase for the error), or None."""
    channels, sizes = before
    if state == channels and sizes == _sizes(state):
        return None  # the same objects (== is identity first), and none grew or shrank
    for (channel, value), size in zip(channels.items(), sizes, strict=True):
        if channel not in state:
            return f"deleted {channel!r} from it"
        if state[channel] is not value:
            return f"assigned {channel!r}"
        if size >= 0 and len(value) != size:
            return f"changed the size of {channel!r} ({size} → {len(value)} items)"
    added = sorted(set(state) - set(channels))
    return f"added {', '.join(map(repr, added))} to it" if added else "assigned a channel an equal value"
