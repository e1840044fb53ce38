"""Stepwise under test: the benchmark graphs as GraphSpecs, run through the public client.

Modes: (a) has no Stepwise equivalent — state is an event log by design, there is no "run without
storing" switch — so it is reported as not applicable; (b) ``Stepwise.in_memory()`` (in-memory event
store and snapshots); (c) ``Stepwise.embedded(dir)`` (SQLite in WAL mode, synchronous=NORMAL, plus
snapshot files). Graph registration (compiling to ASL) happens before the clock starts, like
LangGraph's ``compile()``; everything ``client.run`` does after that is timed.
"""

from __future__ import annotations

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


class React:
    """One W1 run, set up before the clock starts; ``run`` is what gets timed."""

    def __init__(self, mode: str, turns: int, workdir: Path) -> None:
        self.mode, self.turns = mode, turns
        self.client, self.home = _client(mode, workdir)
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
        snapshots = dir_bytes(self.home / "snapshots", "*.json.z")
        return {**db, "snapshot_files": snapshots, "total": db["db_file"] + db["wal_file"] + snapshots}

    def handle(self) -> dict[str, Any]:
        return {"home": str(self.home), "thread_id": self.thread_id}

    def close(self) -> None:
        _close(self.client)


class Fanout:
    def __init__(self, mode: str, workdir: Path) -> None:
        self.client, self.home = _client(mode, workdir)
        self.spec = fanout_spec()
        self.client.register(self.spec)

    def run(self) -> RunResult:
        return self.client.run(self.spec, {})

    @staticmethod
    def check(result: RunResult) -> None:
        if result.status != "succeeded" or result.state.get("count") != workload.FANOUT_WORKERS:
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
