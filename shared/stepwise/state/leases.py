"""Run leases: which process owns a running run, and the heartbeat that keeps its lease fresh.

A running run's owner renews ``lease_until`` every third of the lease; a run whose lease ran out, or
whose owner was a process on this host that is gone, is dead and may be taken over.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from stepwise.state.ports import LEASE_SECONDS, RunRecord, RunStore, is_stale

_owner: tuple[int, str] | None = None


def process_owner() -> str:
    """host:pid:nonce of this process (recomputed after a fork)."""
    global _owner
    if _owner is None or _owner[0] != os.getpid():
        _owner = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    return _owner[1]


def owner_gone(run: RunRecord) -> bool:
    """The run's owner was a process on this host that no longer exists: dead now, no need to wait
    for its lease to run out."""
    if run.status != "running" or not run.owner:
        return False
    host, _, rest = run.owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or run.owner == process_owner():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def is_dead(run: RunRecord, now: float | None = None) -> bool:
    """Stale (lease ran out) or owned by a process of this host that is gone."""
    return is_stale(run, now) or owner_gone(run)


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
