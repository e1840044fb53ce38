"""The kill-point sweep's child: ``python -m tests.chaos.killed HOME EXAMPLE PHASE KILL_AT`` runs one phase of
an example on the embedded store at HOME and SIGKILLs itself right before its KILL_AT-th store write.

A fresh interpreter, not a fork of the test process: a fork inherits the parent's helper threads and its tool
sandbox's forkserver connection, and a forked react child could sit idle until the harness killed it (15 of the
full sweep's kill points did). Exit status: killed by SIGKILL, 0 (the phase ended before that write), or 1.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stepwise.client import Stepwise
from stepwise.graph.loader import load_file
from stepwise.state.sqlite import SqliteEventStore, SqliteRunStore

INPUT = {"question": "How should our payment client retry failed calls?", "amount": 3, "type": "A", "user_id": "dana"}
ANSWER = {"decision": "yes"}

_WRITES: list[tuple[type, str]] = [  # every write transaction the embedded store makes goes through one of these
    (SqliteEventStore, "_run"),  # event appends (one statement each)
    (SqliteRunStore, "begin"),  # run record + run_started event (one transaction)
    (SqliteRunStore, "put"),
    (SqliteRunStore, "_set"),  # run-record updates and transitions (one statement each)
    (SqliteRunStore, "end"),  # a run's final status, spend and final event (one transaction)
    (SqliteRunStore, "claim_queued"),  # double texting enqueue: rivals check + queued -> running + run_started (one transaction)
    (SqliteRunStore, "complete_token"),
]


@contextmanager
def writes(on_write: Callable[[int], None]) -> Iterator[list[int]]:
    """Call ``on_write(n)`` before the nth store write (n from 1)."""
    count = [0]
    saved = [(cls, name, getattr(cls, name)) for cls, name in _WRITES]

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            on_write(count[0])
            return original(*args, **kwargs)

        return wrapper

    for cls, name, original in saved:
        setattr(cls, name, wrap(original))
    try:
        yield count
    finally:
        for cls, name, original in saved:
            setattr(cls, name, original)


def run_phase(home: Path, example: Path, phase: str) -> None:
    """One phase in this process: ``run`` the example, or ``resume`` its waiting run."""
    client = Stepwise.embedded(home)
    if phase == "run":
        client.run(load_file(example), dict(INPUT))
        return
    waiting = [r for r in client.runs() if r.status == "waiting"]
    client.resume(waiting[0].run_id, dict(ANSWER))


def main(home: str, example: str, phase: str, kill_at: str) -> int:
    def die(n: int) -> None:
        if n == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)

    with writes(die):
        run_phase(Path(home), Path(example), phase)
    return 0


if __name__ == "__main__":  # also keeps the tool sandbox's forkserver from re-running the phase
    sys.exit(main(*sys.argv[1:]))
