"""In-memory ApiStore: for tests and the ``memory`` backend."""

from __future__ import annotations

import copy
import threading
from typing import Any

from stepwise.store.base import ApiStore, StoreConflict


class MemoryApiStore(ApiStore):
    """The API store in this process's memory (tests, ``STEPWISE_BACKEND=memory``)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _get(self, pk: str, sk: str) -> tuple[int, dict[str, Any]] | None:
        found = self._items.get((pk, sk))
        return (found[0], copy.deepcopy(found[1])) if found else None

    def _put(self, pk: str, sk: str, doc: dict[str, Any], expected: int | None) -> int:
        with self._lock:
            current = self._items.get((pk, sk))
            if (current[0] if current else None) != expected:
                raise StoreConflict(f"{pk}/{sk} changed")
            revision = (expected or 0) + 1
            self._items[(pk, sk)] = (revision, copy.deepcopy(doc))
            return revision

    def _query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        keys = sorted(k for k in self._items if k[0] == pk and k[1].startswith(prefix))
        return [copy.deepcopy(self._items[k][1]) for k in keys]
