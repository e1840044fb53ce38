"""LangGraph under test: the same graphs as ``StateGraph``s, with its own checkpointers, at their best.

Two configurations of the message channel, both idiomatic:
- ``langgraph``: ``Annotated[list, add_messages]`` (what LangGraph's docs and prebuilt agents use; dict
  messages become LangChain message objects) — the configuration of the issue's reference run;
- ``langgraph-add``: ``Annotated[list, operator.add]``, a plain append of dicts — exactly the semantics of
  Stepwise's ``append`` reducer, and the faster of the two.
Modes: (a) no checkpointer, (b) ``InMemorySaver``, (c) ``SqliteSaver``. The SQLite connection is given
``synchronous=NORMAL``, the same durability level Stepwise's embedded store uses (it only makes
LangGraph faster: the default FULL syncs the WAL on every commit). LangGraph's default durability
("async": a checkpoint is written while the next step runs) is kept. Nothing is slowed down.
"""

from __future__ import annotations

import asyncio
import operator
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from bench import workload
from bench.measure import sqlite_bytes

VARIANTS = {"langgraph": "LangGraph (add_messages)", "langgraph-add": "LangGraph (operator.add)"}
MODES = {"a": "no checkpointer", "b": "InMemorySaver", "c": "SqliteSaver (WAL, synchronous=NORMAL)"}


class AddMessagesState(TypedDict):
    messages: Annotated[list, add_messages]
    turns: int


class AppendState(TypedDict):
    messages: Annotated[list, operator.add]
    turns: int


def _has_tool_calls(message: Any) -> bool:
    return bool(message.get("tool_calls") if isinstance(message, dict) else getattr(message, "tool_calls", None))


def react_graph(variant: str, checkpointer: Any) -> Any:
    builder = StateGraph(AddMessagesState if variant == "langgraph" else AppendState)
    builder.add_node("agent", lambda s: workload.agent_update(s["messages"], s["turns"]))
    builder.add_node("tool", lambda s: workload.tool_update(s["messages"]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", lambda s: "tool" if _has_tool_calls(s["messages"][-1]) else END, ["tool", END])
    builder.add_edge("tool", "agent")
    return builder.compile(checkpointer=checkpointer)


class FanoutState(TypedDict, total=False):
    tasks: list
    results: Annotated[list, operator.add]
    count: int
    workers: list


def _worker(index: int) -> Any:  # a node function (typed loosely: StateGraph wants its own protocols)
    return lambda state: workload.worker_update(index)


def fanout_graph(checkpointer: Any, workers: int = workload.FANOUT_WORKERS) -> Any:
    names = [f"w{i}" for i in range(workers)]
    builder = StateGraph(FanoutState)
    builder.add_node("split", lambda s: workload.split_update(workers))
    for i, name in enumerate(names):
        builder.add_node(name, _worker(i))
        builder.add_edge("split", name)
    builder.add_node("join", lambda s: workload.join_update(s["results"]))
    builder.add_edge(START, "split")
    builder.add_edge(names, "join")  # waits for every worker
    builder.add_edge("join", END)
    return builder.compile(checkpointer=checkpointer)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _saver(mode: str, workdir: Path) -> tuple[Any, sqlite3.Connection | None, Path | None]:
    if mode == "a":
        return None, None, None
    if mode == "b":
        return InMemorySaver(), None, None
    path = workdir / f"langgraph-{uuid.uuid4().hex[:8]}.db"
    conn = _connect(path)
    saver = SqliteSaver(conn)
    saver.setup()  # create the tables (WAL mode) before the clock starts
    return saver, conn, path


def _config(thread_id: str, steps: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": steps + 10}


class React:
    def __init__(self, variant: str, mode: str, turns: int, workdir: Path) -> None:
        self.variant, self.mode, self.turns = variant, mode, turns
        self.saver, self.conn, self.path = _saver(mode, workdir)
        self.graph = react_graph(variant, self.saver)
        self.thread_id = f"thread-{uuid.uuid4().hex[:12]}"
        self.config = _config(self.thread_id, workload.react_steps(turns))
        self.input = workload.react_input(turns)

    def run(self) -> dict[str, Any]:
        return self.graph.invoke(self.input, self.config)  # type: ignore[no-any-return]

    def check(self, result: dict[str, Any]) -> None:
        got, want = len(result["messages"]), workload.react_steps(self.turns) + 1
        if got != want:
            raise RuntimeError(f"LangGraph W1 run ended with {got} messages, expected {want}")

    def stored(self) -> dict[str, Any]:
        """W2: the checkpoint database (+ WAL after a checkpoint): tables ``checkpoints`` and ``writes``."""
        assert self.path is not None and self.conn is not None, "bytes are measured for the durable mode"
        self.conn.commit()
        db = sqlite_bytes(self.path)
        return {**db, "total": db["db_file"] + db["wal_file"]}

    def handle(self) -> dict[str, Any]:
        return {"path": str(self.path), "thread_id": self.thread_id, "variant": self.variant, "steps": workload.react_steps(self.turns)}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class Fanout:
    def __init__(self, mode: str, workdir: Path, width: int = workload.FANOUT_WORKERS) -> None:
        self.saver, self.conn, self.path = _saver(mode, workdir)
        self.width = width
        self.graph = fanout_graph(self.saver, width)

    def run(self) -> dict[str, Any]:
        return self.graph.invoke({}, _config(f"thread-{uuid.uuid4().hex[:12]}", 10))  # type: ignore[no-any-return]

    def check(self, result: dict[str, Any]) -> None:
        if result.get("count") != self.width:
            raise RuntimeError(f"LangGraph W4 run ended with count={result.get('count')}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class Reader:
    """W3: a fresh connection, saver and compiled graph on the database a W1(c) run left."""

    def __init__(self, handle: dict[str, Any]) -> None:
        self.conn = _connect(Path(handle["path"]))
        saver = SqliteSaver(self.conn)
        saver.setup()  # its lazy CREATE TABLE IF NOT EXISTS runs before the clock, like Stepwise's
        self.graph = react_graph(handle["variant"], saver)
        self.config = _config(handle["thread_id"], handle["steps"])

    def current(self) -> int:
        return len(self.graph.get_state(self.config).values["messages"])

    def history(self) -> int:
        return len(list(self.graph.get_state_history(self.config)))

    def close(self) -> None:
        self.conn.close()


# -- W5: I/O-bound fan-out ---------------------------------------------------------------------------
IO_VARIANTS = {
    "sync": "blocking node on LangGraph's thread pool (invoke + SqliteSaver)",
    "async": "async node on the event loop (ainvoke + AsyncSqliteSaver)",
}


class IOState(TypedDict, total=False):
    tasks: list
    results: Annotated[list, operator.add]
    count: int
    latency: float


def io_graph(width: int, variant: str, checkpointer: Any) -> Any:
    names = [f"io{i}" for i in range(width)]
    builder = StateGraph(IOState)
    builder.add_node("split", lambda s: workload.split_update(width))
    for i, name in enumerate(names):
        builder.add_node(name, _io_async(i) if variant == "async" else _io_sync(i))
        builder.add_edge("split", name)
    builder.add_node("join", lambda s: {"count": len(s["results"])})
    builder.add_edge(START, "split")
    builder.add_edge(names, "join")
    builder.add_edge("join", END)
    return builder.compile(checkpointer=checkpointer)


def _io_sync(index: int) -> Any:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        time.sleep(state["latency"])
        return workload.io_update(index)

    return node


def _io_async(index: int) -> Any:
    async def node(state: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(state["latency"])
        return workload.io_update(index)

    return node


class IOFanout:
    """W5 with durable checkpoints: the blocking variant through ``invoke`` + ``SqliteSaver``; the async one
    through ``ainvoke`` + ``AsyncSqliteSaver`` (aiosqlite), on an event loop created before the clock."""

    def __init__(self, variant: str, width: int, latency: float, workdir: Path) -> None:
        self.variant, self.width, self.latency = variant, width, latency
        self.path = workdir / f"langgraph-{uuid.uuid4().hex[:8]}.db"
        self.conn: Any = None
        if variant == "async":
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            self.loop = asyncio.new_event_loop()

            async def open_saver() -> Any:
                import aiosqlite

                self.conn = await aiosqlite.connect(self.path)
                await self.conn.execute("PRAGMA synchronous=NORMAL")
                saver = AsyncSqliteSaver(self.conn)
                await saver.setup()
                return saver

            saver = self.loop.run_until_complete(open_saver())
        else:
            self.conn = _connect(self.path)
            saver = SqliteSaver(self.conn)
            saver.setup()
        self.graph = io_graph(width, variant, saver)

    def run(self) -> dict[str, Any]:
        config = _config(f"thread-{uuid.uuid4().hex[:12]}", 10)
        if self.variant == "async":
            return self.loop.run_until_complete(self.graph.ainvoke({"latency": self.latency}, config))  # type: ignore[no-any-return]
        return self.graph.invoke({"latency": self.latency}, config)  # type: ignore[no-any-return]

    def check(self, result: dict[str, Any]) -> None:
        if result.get("count") != self.width:
            raise RuntimeError(f"LangGraph W5 run ended with count={result.get('count')}")

    def close(self) -> None:
        if self.variant == "async":
            self.loop.run_until_complete(self.conn.close())
            self.loop.close()
        else:
            self.conn.close()


# -- W6: many short runs into one store ------------------------------------------------------------
class ShortState(TypedDict):
    messages: Annotated[list, operator.add]


def short_graph(checkpointer: Any) -> Any:
    builder = StateGraph(ShortState)
    for step, name in enumerate(("a", "b", "c"), start=1):
        builder.add_node(name, lambda s, step=step: workload.short_update(step))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder.compile(checkpointer=checkpointer)


class ShortRuns:
    def __init__(self, workdir: Path) -> None:
        from bench.stepwise_side import Statements

        self.path = workdir / f"langgraph-{uuid.uuid4().hex[:8]}.db"
        self.conn = _connect(self.path)
        saver = SqliteSaver(self.conn)
        saver.setup()
        self.graph = short_graph(saver)
        self.statements = Statements()
        self.threads: list[str] = []

    def counting(self, on: bool) -> None:
        """Count statements or not (off while timed, as for Stepwise)."""
        self.conn.set_trace_callback(self.statements if on else None)

    def run_one(self) -> None:
        thread = f"thread-{uuid.uuid4().hex[:12]}"
        result = self.graph.invoke({"messages": []}, _config(thread, 10))
        if len(result["messages"]) != 3:
            raise RuntimeError("LangGraph W6 run did not produce three messages")
        self.threads.append(thread)

    def list_runs(self) -> int:
        """The threads in the store, from their checkpoints (LangGraph has no run records)."""
        conn = _connect(self.path)
        try:
            saver = SqliteSaver(conn)
            return len({c.config["configurable"]["thread_id"] for c in saver.list(None)})
        finally:
            conn.close()

    def read_all(self) -> int:
        conn = _connect(self.path)
        try:
            graph = short_graph(SqliteSaver(conn))
            return sum(len(graph.get_state(_config(t, 10)).values["messages"]) for t in self.threads)
        finally:
            conn.close()

    def close(self) -> None:
        self.conn.close()
