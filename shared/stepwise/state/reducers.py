"""Channel reducers: how a node's update to a channel combines with the channel's current value."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

Reducer = Callable[[Any, Any], Any]


def replace(old: Any, new: Any) -> Any:
    return new


def append(old: Any, new: Any) -> list[Any]:
    items = new if isinstance(new, list) else [new]
    return [*(old or []), *items]


def merge(old: Any, new: Any) -> dict[str, Any]:
    if not isinstance(new, Mapping):
        raise TypeError(f"the merge reducer needs a mapping, got {type(new).__name__}")
    return {**(old or {}), **new}


def add(old: Any, new: Any) -> Any:
    return new if old is None else old + new


BUILTIN_REDUCERS: dict[str, Reducer] = {"replace": replace, "append": append, "merge": merge, "add": add}


@lru_cache(maxsize=256)
def resolve(name: str) -> Reducer:
    """A built-in reducer by name, or a custom one by import path 'pkg.module:function'."""
    if name in BUILTIN_REDUCERS:
        return BUILTIN_REDUCERS[name]
    module, _, attr = name.partition(":")
    fn = getattr(importlib.import_module(module), attr, None)
    if not callable(fn):
        raise ValueError(f"reducer {name!r}: {module} has no callable {attr!r}")
    return fn  # type: ignore[no-any-return]


class ReducerError(ValueError):
    """A reducer raised while folding an update: the thread's state cannot be computed past that event.
    Callers answer it as a clear error (the run fails; reads say why) instead of an internal error."""

    def __init__(self, channel: str, reducer: str, exc: BaseException) -> None:
        super().__init__(f"reducer {reducer!r} of channel {channel!r} raised {type(exc).__name__}: {exc}")
        self.channel, self.reducer = channel, reducer


def apply(state: dict[str, Any], update: Mapping[str, Any], reducers: Mapping[str, str]) -> dict[str, Any]:
    """Return a new state with ``update`` folded in; ``state`` itself is never mutated."""
    out = dict(state)
    for channel, value in update.items():
        name = reducers.get(channel, "replace")
        try:
            out[channel] = resolve(name)(out.get(channel), value)
        except ReducerError:
            raise
        except Exception as exc:
            raise ReducerError(channel, name, exc) from exc
    return out


class LazyReducers(Mapping[str, str]):
    """Channel → reducer name, looked up on first use. A cold read whose snapshot is already at the head
    folds nothing, so it never needs the thread's graph (two statements and a spec decode saved)."""

    __slots__ = ("_load", "_names")

    def __init__(self, load: Callable[[], Mapping[str, str]]) -> None:
        self._load: Callable[[], Mapping[str, str]] | None = load
        self._names: Mapping[str, str] = {}

    def _get(self) -> Mapping[str, str]:
        if self._load is not None:
            self._names, self._load = self._load(), None
        return self._names

    def __getitem__(self, channel: str) -> str:
        return self._get()[channel]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())
