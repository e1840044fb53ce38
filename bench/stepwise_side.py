"""Stepwise under test: the benchmark graphs as GraphSpecs, run through the public client.

Modes: (a) has no Stepwise equivalent — state is an event log by design, there is no "run without
storing" switch — so it is reported as not applicable; (b) ``Stepwise.in_memory()`` (in-memory event
store and snapshots); (c) ``Stepwise.embedded(dir)`` (SQLite in WAL mode, synchronous=NORMAL, plus
snapshot files). Graph registration (compiling to ASL) happens before the clock starts, like
LangGraph's ``compile()``; everything ``client.run`` does after that is timed.
"""

from __future__ import annotations

import bisect
import functools
import gc
import os
import resource
import time
import uuid
from pathlib import Path
from typing import Any

from bench import workload
from bench.history import states_at_every_seq
from bench.measure import dir_bytes, sqlite_bytes
from stepwise.client import RunResult, Stepwise
from stepwise.graph.loader import parse_dict
from stepwise.graph.spec import GraphSpec
from stepwise.graph.validate import validate

NAME = "stepwise"
LABEL = "Stepwise"
MODES = {
    "a": None,
    "b": "in-memory event store + in-memory snapshots",
    "c": "embedded: SQLite (WAL, synchronous=NORMAL) event log + snapshot files",
}
NOT_APPLICABLE_A = (
    "Stepwise has no run-without-persistence mode: state is event-sourced by design, every step appends its "
    "delta to the log. Its lightest mode is (b), the in-memory log."
)
MAX_ITERATIONS = 10_000  # the cycle bound; above the 501 agent visits of the largest run


def _spec(data: dict[str, Any]) -> GraphSpec:
    spec = parse_dict(data)
    validate(spec, check_imports=True)
    return spec


def react_spec() -> GraphSpec:
    """W1: agent → tool → agent …, the agent routes to the tool while its last message has tool calls."""
    return _spec(
        {
            "name": "bench-react",
            "state": {"messages": "append"},
            "graph": {
                "nodes": {
                    "agent": {"kind": "function", "fn": "bench.nodes:agent", "writes": ["messages"]},
                    "tool": {"kind": "function", "fn": "bench.nodes:tool", "writes": ["messages"]},
                },
                "edges": [{"from": "tool", "to": "agent"}],
                "conditional_edges": [
                    {"from": "agent", "conditions": [{"if": "state.messages[-1].tool_calls", "then": "tool"}, {"else": "__end__"}]},
                ],
                "entry": "agent",
                "max_iterations": MAX_ITERATIONS,
            },
        }
    )


def fanout_spec(workers: int = workload.FANOUT_WORKERS) -> GraphSpec:
    return _fanout_spec(workers)


@functools.lru_cache(maxsize=16)
def _fanout_spec(workers: int) -> GraphSpec:
    """W4: split → 50 workers in parallel → join (a Parallel state; the join folds the branches' events)."""
    names = [f"w{i}" for i in range(workers)]
    nodes: dict[str, Any] = {
        "split": {"kind": "function", "fn": "bench.nodes:split", "writes": ["tasks"]},
        "join": {"kind": "function", "fn": "bench.nodes:join", "writes": ["count", "workers"]},
    }
    nodes.update({n: {"kind": "function", "fn": "bench.nodes:worker", "writes": ["results"]} for n in names})
    return _spec(
        {
            "name": "bench-fanout",
            "state": {"results": "append"},
            "graph": {
                "nodes": nodes,
                "parallel_nodes": [{"from": "split", "to": names}, {"from": names, "to": "join"}],
                "entry": "split",
            },
        }
    )


def _client(mode: str, workdir: Path) -> tuple[Stepwise, Path | None]:
    if mode == "b":
        return Stepwise.in_memory(), None
    if mode == "c":
        home = workdir / f"stepwise-{uuid.uuid4().hex[:8]}"
        return Stepwise.embedded(home), home
    raise ValueError(f"Stepwise has no mode {mode!r}: {NOT_APPLICABLE_A}")


def _close(client: Stepwise) -> None:
    db = getattr(client.services.events, "db", None)
    if db is not None:
        db.connection().close()


MIDRUN = "stepwise-midrun"
MIDRUN_LABEL = "Stepwise, mid-run (no end-of-run snapshot)"


def _no_settle(thread_id: str, seq: int, state: dict[str, Any], appends: frozenset[str] = frozenset(), **_: Any) -> None:
    """No snapshot when the run stops: the file keeps the last cadence snapshot, up to CADENCE - 1 events behind."""


class React:
    """One W1 run, set up before the clock starts; ``run`` is what gets timed."""

    def __init__(self, mode: str, turns: int, workdir: Path, *, settle: bool = True) -> None:
        self.mode, self.turns = mode, turns
        self.client, self.home = _client(mode, workdir)
        if not settle:  # W3's mid-run reader: the store as it is during the run (or after a crash before its end)
            self.client.services.snapshots.settle = _no_settle  # type: ignore[method-assign]
        self.spec = react_spec()
        self.client.register(self.spec)
        self.input = workload.react_input(turns)
        self.thread_id: str | None = None

    def run(self) -> RunResult:
        result = self.client.run(self.spec, self.input)
        self.thread_id = result.thread_id
        return result

    def check(self, result: RunResult) -> None:
        got = len(result.state.get("messages", []))
        want = workload.react_steps(self.turns) + 1
        if result.status != "succeeded" or got != want:
            raise RuntimeError(f"Stepwise W1 run ended {result.status} with {got} messages, expected {want}: {result.error}")

    def stored(self) -> dict[str, Any]:
        """W2: the SQLite file (+ WAL after a checkpoint) and the snapshot files. The database holds
        everything a run leaves: the event log and its key index, the run record and the registered
        graph (spec + ASL)."""
        assert self.home is not None, "bytes are measured for the durable mode"
        db = sqlite_bytes(self.home / "stepwise.db")
        snapshots = dir_bytes(self.home / "snapshots", "*")
        return {**db, "snapshot_files": snapshots, "total": db["db_file"] + db["wal_file"] + snapshots}

    def handle(self) -> dict[str, Any]:
        return {"home": str(self.home), "thread_id": self.thread_id}

    def close(self) -> None:
        _close(self.client)


class Fanout:
    def __init__(self, mode: str, workdir: Path, width: int = workload.FANOUT_WORKERS) -> None:
        self.client, self.home = _client(mode, workdir)
        self.width = width
        self.spec = fanout_spec(width)
        self.client.register(self.spec)

    def run(self) -> RunResult:
        return self.client.run(self.spec, {})

    def check(self, result: RunResult) -> None:
        if result.status != "succeeded" or result.state.get("count") != self.width:
            raise RuntimeError(f"Stepwise W4 run ended {result.status} with count={result.state.get('count')}: {result.error}")

    def close(self) -> None:
        _close(self.client)


class Reader:
    """W3: a fresh client on an existing store, as a new process (or a cold Lambda) would open it."""

    def __init__(self, handle: dict[str, Any]) -> None:
        self.client = Stepwise.embedded(handle["home"])
        self.thread_id = str(handle["thread_id"])

    def current(self) -> int:
        _, state = self.client.state(self.thread_id)
        return len(state["messages"])

    def history(self) -> int:
        return len(states_at_every_seq(self.client, self.thread_id))

    def close(self) -> None:
        _close(self.client)


# -- W5: I/O-bound fan-out ---------------------------------------------------------------------------
IO_VARIANTS = {
    "sync": "blocking node (time.sleep, like a synchronous SDK call)",
    "async": "async def node (await asyncio.sleep, like an async SDK call)",
}


@functools.lru_cache(maxsize=16)
def io_fanout_spec(width: int, variant: str) -> GraphSpec:
    """W5: split → ``width`` branches that each wait on one call → join; every branch appends one result."""
    names = [f"io{i}" for i in range(width)]
    fn = "bench.nodes:io_worker_async" if variant == "async" else "bench.nodes:io_worker_sync"
    nodes: dict[str, Any] = {
        "split": {"kind": "function", "fn": "bench.nodes:split", "writes": ["tasks"]},
        "join": {"kind": "function", "fn": "bench.nodes:io_join", "writes": ["count"]},
    }
    nodes.update({n: {"kind": "function", "fn": fn, "writes": ["results"]} for n in names})
    return _spec(
        {
            "name": f"bench-io-{variant}-{width}",
            "state": {"results": "append"},
            "graph": {"nodes": nodes, "parallel_nodes": [{"from": "split", "to": names}, {"from": names, "to": "join"}], "entry": "split"},
        }
    )


class IOFanout:
    def __init__(self, variant: str, width: int, latency: float, workdir: Path) -> None:
        self.client, self.home = _client("c", workdir)
        self.width, self.latency = width, latency
        self.spec = io_fanout_spec(width, variant)
        self.client.register(self.spec)

    def run(self) -> RunResult:
        return self.client.run(self.spec, {"latency": self.latency})

    def check(self, result: RunResult) -> None:
        if result.status != "succeeded" or result.state.get("count") != self.width:
            raise RuntimeError(f"Stepwise W5 run ended {result.status} with count={result.state.get('count')}: {result.error}")

    def close(self) -> None:
        _close(self.client)


# -- W6: many short runs into one store ------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def short_spec() -> GraphSpec:
    nodes = {n: {"kind": "function", "fn": f"bench.nodes:short_{n}", "writes": ["messages"]} for n in ("a", "b", "c")}
    return _spec(
        {
            "name": "bench-short",
            "state": {"messages": "append"},
            "graph": {"nodes": nodes, "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}], "entry": "a"},
        }
    )


class Statements:
    """Counts the SQL statements a connection executes (sqlite3's trace callback: every statement, including
    BEGIN/COMMIT and the ones inside executemany) and its write transactions: each COMMIT, plus each write
    statement run outside BEGIN … COMMIT (SQLite then wraps it in a transaction of its own)."""

    _WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "WITH")

    def __init__(self) -> None:
        self.count = 0
        self.commits = 0
        self._in_transaction = False

    def __call__(self, sql: str) -> None:
        self.count += 1
        head = sql.lstrip()[:8].upper()
        if head.startswith("BEGIN"):
            self._in_transaction = True
        elif head.startswith(("COMMIT", "END")):
            self.commits += 1
            self._in_transaction = False
        elif head.startswith("ROLLBACK"):
            self._in_transaction = False
        elif not self._in_transaction and head.startswith(self._WRITES):
            self.commits += 1


class ShortRuns:
    """W6: ``runs`` three-node runs into one embedded store, one at a time (the statement counter sees this
    thread's connection only, which is every statement of a sequential run)."""

    def __init__(self, workdir: Path) -> None:
        self.client, self.home = _client("c", workdir)
        self.spec = short_spec()
        self.client.register(self.spec)
        self.statements = Statements()
        self.threads: list[str] = []

    def counting(self, on: bool) -> None:
        """Count statements (the trace callback) or not: off while timed, since sqlite3 builds each statement's text
        with its bound values for the callback (~60 µs of a ~700 µs run, billed to the harness, not the engine)."""
        self.client.services.events.db.connection().set_trace_callback(self.statements if on else None)  # type: ignore[attr-defined]

    def run_one(self) -> None:
        result = self.client.run(self.spec, {"messages": []})
        if result.status != "succeeded" or len(result.state["messages"]) != 3:
            raise RuntimeError(f"Stepwise W6 run ended {result.status}: {result.error}")
        self.threads.append(result.thread_id)

    def list_runs(self) -> int:
        reader = Stepwise.embedded(self.home)
        try:
            return len(reader.runs(limit=len(self.threads) + 10))
        finally:
            _close(reader)

    def read_all(self) -> int:
        reader = Stepwise.embedded(self.home)
        try:
            return sum(len(reader.state(t)[1]["messages"]) for t in self.threads)
        finally:
            _close(reader)

    def close(self) -> None:
        _close(self.client)


# -- W7: one long loop ---------------------------------------------------------------------------------
def _mark() -> tuple[float, float, int, int]:
    """Now: wall clock, this thread's CPU time, its page faults (minor and major) and involuntary context switches."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return time.perf_counter(), time.thread_time(), usage.ru_minflt + usage.ru_majflt, usage.ru_nivcsw


def _rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in KiB, from /proc."""
    now = peak = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                now = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    except OSError:
        pass
    return now, peak


def long_loop(turns: int, workdir: Path) -> dict[str, Any]:
    """W7: one durable ReAct run of 2·turns+1 steps; the time of every step (between two consecutive
    ``node_finished`` notifications: hydrate, node, append, snapshot, routing) as wall time and as this
    thread's CPU time (so a step that waited for a core, preempted by other processes, can be told from one
    that worked longer), and the process's RSS. A short run first warms up imports and caches.

    What else ran inside the loop is recorded with its time, so a slow step can be attributed: the garbage
    collector's passes (``gc.callbacks``: generation, duration), hand-overs to a continuation execution, and
    this thread's page faults and involuntary context switches in each step (``getrusage``, ~1 µs)."""
    marks: list[tuple[float, float, int, int]] = []  # wall, thread CPU, page faults, involuntary switches
    handovers: list[float] = []
    collections: list[tuple[float, float, int]] = []  # (start, seconds, generation)
    started_gc = [0.0]

    def observe(event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "node_finished":
            marks.append(_mark())
        elif kind == "continued":
            handovers.append(time.perf_counter())

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started_gc[0] = time.perf_counter()
        else:
            collections.append((started_gc[0], time.perf_counter() - started_gc[0], int(info["generation"])))

    home = workdir / f"stepwise-{uuid.uuid4().hex[:8]}"
    client = Stepwise.embedded(home, observer=observe)
    spec = react_spec()
    client.register(spec)
    client.run(spec, workload.react_input(2))  # warm-up (its own thread): imports, caches, the first snapshot file
    marks.clear()
    handovers.clear()
    rss_before, _ = _rss_kib()
    gc.callbacks.append(on_gc)
    start = _mark()
    cpu0 = time.process_time()
    result = client.run(spec, workload.react_input(turns))
    wall, cpu = time.perf_counter() - start[0], time.process_time() - cpu0
    gc.callbacks.remove(on_gc)
    rss_after, peak = _rss_kib()
    if result.status != "succeeded" or len(result.state["messages"]) != workload.react_steps(turns) + 1:
        raise RuntimeError(f"Stepwise W7 run ended {result.status}: {result.error}")
    _close(client)
    between = list(zip([start, *marks[:-1]], marks, strict=True))
    ends = [m[0] for m in marks]
    return {
        "steps": len(marks),
        "wall_s": wall,
        "cpu_s": cpu,
        "step_s": [b[0] - a[0] for a, b in between],
        "step_cpu_s": [b[1] - a[1] for a, b in between],
        "step_faults": [b[2] - a[2] for a, b in between],
        "step_preempted": [b[3] - a[3] for a, b in between],
        # the step each happened in: the first step that ended after it started
        "gc": [{"step": bisect.bisect_left(ends, at), "generation": gen, "s": took} for at, took, gen in collections],
        "handover_steps": [bisect.bisect_left(ends, at) for at in handovers],
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_peak_kib": peak,
        "pid": os.getpid(),
    }


def snapshot_position(handle: dict[str, Any]) -> dict[str, Any]:
    """Where the thread's latest snapshot sits: the tail a cold reader must replay after it (diagnostics)."""
    client = Stepwise.embedded(handle["home"])
    try:
        thread = str(handle["thread_id"])
        head = client.services.events.head(thread)
        snap = client.services.snapshots.latest(thread)
        at = snap[0] if snap else 0
        return {"head_seq": head, "snapshot_seq": at, "tail_events": head - at}
    finally:
        _close(client)
