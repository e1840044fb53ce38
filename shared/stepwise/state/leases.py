"""Run leases: the heartbeat that keeps the leases of this process's running runs fresh.

A running run's owner (``process_owner``) renews ``lease_until`` every third of the lease; a run whose
lease ran out, or whose owner was a process on this host that is gone, is dead (``is_dead``, beside
``is_stale`` in ``ports.py``) and may be taken over.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from stepwise.state.ports import LEASE_SECONDS, RunStore, process_owner


class Heartbeat:
    """One daemon thread per process renewing the leases of the runs this process executes, every third
    of the lease. A run whose process dies stops being renewed and becomes stale (``is_stale``)."""

    _lock = threading.Lock()
    _runs: ClassVar[dict[tuple[int, str], tuple[RunStore, int, float]]] = {}
    _thread: ClassVar[threading.Thread | None] = None
    _wake = threading.Event()

    @classmethod
    @contextmanager
    def track(cls, runs: RunStore, run_id: str, lease_seconds: float = LEASE_SECONDS) -> Iterator[None]:
        """Renew ``run_id``'s lease (``lease_seconds`` long) every third of it while the block runs."""
        key = (id(runs), run_id)
        with cls._lock:
            store, count, _ = cls._runs.get(key, (runs, 0, lease_seconds))
            cls._runs[key] = (store, count + 1, lease_seconds)
            if cls._thread is None or not cls._thread.is_alive():
                cls._thread = threading.Thread(target=cls._loop, name="stepwise-heartbeat", daemon=True)
                cls._thread.start()
        try:
            yield
        finally:
            with cls._lock:
                store, count, lease = cls._runs[key]
                if count <= 1:
                    del cls._runs[key]
                else:
                    cls._runs[key] = (store, count - 1, lease)

    @classmethod
    def _loop(cls) -> None:
        while True:
            with cls._lock:
                period = min((lease for _, _, lease in cls._runs.values()), default=LEASE_SECONDS) / 3
            cls._wake.wait(period)  # a new, shorter lease takes effect after the current wait
            with cls._lock:
                items = [(store, key[1], lease) for key, (store, _, lease) in cls._runs.items()]
            for store, run_id, lease in items:
                with contextlib.suppress(Exception):  # finished or cancelled meanwhile, or a store hiccup
                    store.transition(run_id, expect=("running",), owner=process_owner(), lease_until=time.time() + lease)
