"""Concurrent cancel/resume/execute races through the API over the embedded store: every race has a
consistent outcome (a 200 or a 409 for each request, never a 500; the final run agrees with the winners).
Counts are printed at the end of the session."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from tests.chaos.counts import COUNTS
from tests.unit.test_api_routes import Harness, Reply, make

from stepwise.client import Stepwise

FULL = os.environ.get("STEPWISE_CHAOS") == "full"
TRIALS = 50 if FULL else 10


def _race(*calls: Callable[[], Reply]) -> list[Reply]:
    barrier = threading.Barrier(len(calls))
    out: list[Reply | None] = [None] * len(calls)

    def go(i: int) -> None:
        barrier.wait()
        out[i] = calls[i]()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in out if r is not None]


def _harness(tmp: Path) -> Harness:
    h = make(client=Stepwise.embedded(tmp / "home"))
    h.register("human_approval")
    h.register("sequential")
    return h


def _count(kind: str, ok: bool) -> None:
    COUNTS["races tried"] += 1
    COUNTS["races consistent"] += int(ok)
    if not ok:
        COUNTS[f"races inconsistent ({kind})"] += 1


def test_cancel_vs_resume(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    bad = []
    for _ in range(TRIALS):
        rid = h("POST", "/agents/human-approval/execute", {}).body["run_id"]
        cancel, resume = _race(
            lambda rid=rid: h("POST", f"/runs/{rid}/cancel"),
            lambda rid=rid: h("POST", f"/runs/{rid}/resume", {"input": {"decision": "yes"}}),
        )
        final = h("GET", f"/runs/{rid}").body
        ok = {cancel.status, resume.status} <= {200, 409} and 200 in (cancel.status, resume.status)
        if cancel.status == 200:
            ok = ok and final["status"] == "cancelled"  # a cancel that answered "cancelled" is never undone
        else:
            ok = ok and final["status"] == "succeeded" and final["state"].get("published") is True
        _count("cancel/resume", ok)
        if not ok:
            bad.append((cancel.status, resume.status, final["status"]))
    assert not bad, bad


def test_resume_vs_resume(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    bad = []
    for _ in range(TRIALS):
        started = h("POST", "/agents/human-approval/execute", {}).body
        rid, question = started["run_id"], started["waiting"]["interrupt_id"]
        replies = _race(
            *(
                lambda rid=rid, d=d, q=question: h("POST", f"/runs/{rid}/resume", {"input": {"decision": d}, "interrupt_id": q})
                for d in ("yes", "no")
            )
        )
        answers = [e for e in h.client.history(started["thread_id"]) if e.node == "approve" and e.type == "node_update"]
        ok = sorted(r.status for r in replies) == [200, 409] and len(answers) == 1
        _count("resume/resume", ok)
        if not ok:
            bad.append(([r.status for r in replies], len(answers)))
    assert not bad, bad


def test_execute_vs_execute_on_one_thread(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    bad = []
    for i in range(TRIALS):
        thread = f"thread-race-{i:04d}"
        replies = _race(*(lambda t=thread: h("POST", "/agents/sequential/execute", {"thread_id": t}) for _ in range(2)))
        statuses = sorted(r.status for r in replies)
        runs = h.client.runs(thread_id=thread)
        done = [r for r in runs if r.status == "succeeded"]
        updates = [e for e in h.client.history(thread) if e.type == "node_update"]
        # one 409 (thread busy) or two runs one after the other; every node update belongs to a finished run
        ok = statuses in ([200, 200], [200, 409]) and len(done) == statuses.count(200) and len(updates) == 3 * len(done)
        _count("execute/execute", ok)
        if not ok:
            bad.append((statuses, [r.status for r in runs], len(updates)))
    assert not bad, bad
