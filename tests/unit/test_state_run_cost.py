"""The embedded store's per-run write path: a run start is one transaction, the engine's run-record writes are
single conditional statements, and a run costs a bounded number of SQL statements (counted with sqlite3's
trace callback, so a change that adds round trips fails here, without any timing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stepwise.client import Stepwise, ThreadBusyError
from stepwise.errors import StateConflictError
from stepwise.graph.loader import load_file, parse_dict
from stepwise.runtime.graph_cache import reducers_of, reducers_of_canonical
from stepwise.state.events import LLM_CALL, NODE_UPDATE, RUN_FINISHED, RUN_STARTED, Event
from stepwise.state.memory import MemoryEventStore, MemoryRunStore
from stepwise.state.ports import DuplicateKeyError, EventStore, RunRecord, RunStore, RunTransitionError
from stepwise.state.sqlite import _CANCELLED, SqliteDatabase, SqliteEventStore, SqliteRunStore

ROOT = Path(__file__).resolve().parents[2]
THREE = {
    "name": "three",
    "state": {"messages": "append"},
    "graph": {
        "nodes": {n: {"kind": "function", "fn": f"bench.nodes:short_{n}", "writes": ["messages"]} for n in ("a", "b", "c")},
        "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
        "entry": "a",
    },
}


class Counter:
    """Statements and write transactions seen by one connection (BEGIN … COMMIT, or a lone write)."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.transactions = 0
        self._open = False

    def __call__(self, sql: str) -> None:
        self.statements.append(sql)
        head = sql.lstrip()[:8].upper()
        if head.startswith("BEGIN"):
            self._open = True
        elif head.startswith("COMMIT"):
            self.transactions += 1
            self._open = False
        elif not self._open and head.startswith(("INSERT", "UPDATE", "DELETE", "REPLACE")):
            self.transactions += 1


def _stores(tmp_path: Path) -> tuple[SqliteDatabase, SqliteEventStore, SqliteRunStore]:
    db = SqliteDatabase(tmp_path / "s.db")
    return db, SqliteEventStore(db), SqliteRunStore(db)


def _backend(tmp_path: Path, backend: str) -> tuple[EventStore, RunStore]:
    """The stores a parametrized test compares: SQLite's single statements, or the memory stores' generic path."""
    if backend == "sqlite":
        _, events, runs = _stores(tmp_path)
        return events, runs
    return MemoryEventStore(), MemoryRunStore()


def test_a_three_node_run_costs_a_bounded_number_of_statements(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    spec = parse_dict(THREE)
    client.run(spec, {"topic": "warm-up"})  # registration and first-use work are not per-run cost
    counter = Counter()
    client.services.events.db.connection().set_trace_callback(counter)  # type: ignore[attr-defined]
    result = client.run(spec, {"topic": "x"})
    client.services.events.db.connection().set_trace_callback(None)  # type: ignore[attr-defined]
    assert result.status == "succeeded" and len(result.state["messages"]) == 3
    # start (a new thread: no rivals to look for): BEGIN, event at seq 1, record, COMMIT; first node: tail with
    # the run's status (the cancel check), insert (returning the cancel flag); next nodes: insert only (the
    # previous insert said the run was not cancelled, and this process wrote the head); finish: BEGIN, record
    # (compare-and-set, spend summed in), run_finished, COMMIT; result: record and tail in one SELECT. The
    # executor knows the head from the start. Was 43 statements and 8 transactions, then 22 and 6, then 20
    # and 5, then 17 and 5, then 15 and 5.
    assert len(counter.statements) <= 13, "\n".join(counter.statements)
    assert not any(s.startswith("SELECT json_extract(body, '$.status')") for s in counter.statements)
    assert counter.transactions == 5  # start, three node updates, the end (run_finished with the final status)
    assert not any(s.startswith("SELECT body FROM runs") for s in counter.statements)
    assert not any(s.startswith("SELECT max(seq)") for s in counter.statements)
    # a run on a thread the caller names still looks for rivals
    counter = Counter()
    client.services.events.db.connection().set_trace_callback(counter)  # type: ignore[attr-defined]
    again = client.run(spec, {"topic": "y"}, thread_id=result.thread_id)
    client.services.events.db.connection().set_trace_callback(None)  # type: ignore[attr-defined]
    assert again.status == "succeeded" and len(again.state["messages"]) == 6
    assert any("json_extract(body, '$.status')='running'" in s for s in counter.statements)


def test_a_made_up_thread_id_that_is_taken_is_refused_and_another_picked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new thread's run_started goes in at seq 1 with no rivals check: an id that exists already (48 random
    bits can repeat) must not continue that thread. The store refuses it with nothing written; the client
    picks another id."""
    _, events, runs = _stores(tmp_path)

    def begin(run_id: str) -> RunRecord:
        record = RunRecord(run_id=run_id, thread_id="T", graph_ref="g@1")
        return runs.begin(record, events, Event(type=RUN_STARTED, run_id=run_id), lambda seq: {"seq": seq}, new_thread=True)

    assert begin("r1").start_cursor == {"seq": 1}
    with pytest.raises(StateConflictError, match="thread id 'T' is taken"):
        begin("r2")
    assert runs.get("r2") is None and events.head("T") == 1

    client = Stepwise.embedded(tmp_path / "home")
    spec = parse_dict(THREE)
    first = client.run(spec, {"topic": "x"})
    ids = iter(["r0", first.thread_id[len("thread-") :], "r1", "0123456789ab"])  # (run id, thread id): the taken one first
    import stepwise.client as client_module

    monkeypatch.setattr(client_module.secrets, "token_hex", lambda n: next(ids))
    second = client.run(spec, {"topic": "y"})
    assert second.status == "succeeded" and second.thread_id == "thread-0123456789ab"
    assert client.state(first.thread_id)[1]["messages"] == first.state["messages"]  # the taken thread is untouched
    assert len(second.state["messages"]) == 3


@pytest.mark.parametrize("backend", ["sqlite", "generic"])
def test_the_result_read_gives_the_record_and_the_tail(tmp_path: Path, backend: str) -> None:
    """``RunStore.tail_and_record``: one SELECT on SQLite, two reads elsewhere; the same answer, the record
    first even when the tail is empty, None for an unknown run."""
    events, runs = _backend(tmp_path, backend)
    runs.put(RunRecord(run_id="r1", thread_id="T", graph_ref="g@1", status="succeeded"))
    events.append("T", 0, [Event(type=RUN_STARTED, run_id="r1"), Event(type=NODE_UPDATE, run_id="r1", node="a", data={"update": {"x": 1}})])
    events.append_at_head("T", [Event(type=NODE_UPDATE, run_id="r1", node="b", scope="p/0", data={"update": {"y": 2}})])
    tail, head, record = runs.tail_and_record(events, "T", 1, {""}, "r1")
    assert [(e.seq, e.node) for e in tail] == [(2, "a")] and head == 3  # the branch's row is not visible, but is the head
    assert record is not None and record.status == "succeeded" and record.thread_id == "T"
    assert runs.tail_and_record(events, "T", 3, {""}, "r1")[:2] == ([], 3)
    assert runs.tail_and_record(events, "T", 0, {""}, "nope")[2] is None
    assert [e.seq for e in runs.tail_and_record(events, "T", 0, {""}, "nope")[0]] == [1, 2]


@pytest.mark.parametrize("backend", ["sqlite", "generic"])
def test_a_run_ends_with_its_event_spend_and_status_or_not_at_all(tmp_path: Path, backend: str) -> None:
    """``RunStore.end``: the SQLite transaction and the generic sequence (memory stores) leave the same log and
    record: the final event once, the spend of this run's LLM calls only; a run not in the expected status
    (cancelled, or a replay's already succeeded) gets no event and keeps its record."""
    events, runs = _backend(tmp_path, backend)
    for run_id in ("r1", "r2"):
        runs.put(RunRecord(run_id=run_id, thread_id="T", graph_ref="g@1", start_cursor={"seq": 1}))
    events.append(
        "T",
        0,
        [
            Event(type=RUN_STARTED, run_id="r1"),
            Event(type=LLM_CALL, run_id="r1", data={"cost_usd": 0.125, "input_tokens": 10, "output_tokens": 5}),
            Event(type=LLM_CALL, run_id="r2", data={"cost_usd": 7.0, "input_tokens": 100}),
            Event(type=LLM_CALL, run_id="r1", data={"cost_usd": 0.25, "input_tokens": 3}),
        ],
    )

    def final(run_id: str) -> Event:
        return Event(type=RUN_FINISHED, run_id=run_id, key=f"{run_id}|end", data={"seq": 4})

    done = final("r1")
    runs.end(events, "T", done, expect=("running",), status="succeeded", steps=3, lease_until=None)
    record = runs.get("r1")
    assert record is not None and (record.status, record.steps, record.cost_usd, record.tokens) == ("succeeded", 3, 0.375, 18)
    assert done.seq == 5 and [e.type for e in events.read("T", after=4)] == [RUN_FINISHED]
    with pytest.raises(RunTransitionError) as replay:  # a replay of the end: already succeeded, nothing added
        runs.end(events, "T", final("r1"), expect=("running",), status="succeeded")
    assert replay.value.status == "succeeded" and events.head("T") == 5
    runs.transition("r2", expect=("running",), status="cancelled")
    with pytest.raises(RunTransitionError) as cancelled:
        runs.end(events, "T", final("r2"), expect=("running",), status="succeeded")
    assert cancelled.value.status == "cancelled" and events.head("T") == 5 and runs.status("r2") == "cancelled"
    with pytest.raises(KeyError):
        runs.end(events, "T", final("nope"), expect=("running",), status="succeeded")
    assert events.head("T") == 5


def test_a_run_on_a_busy_thread_leaves_nothing_behind(tmp_path: Path) -> None:
    _, events, runs = _stores(tmp_path)
    mine = RunRecord(run_id="r1", thread_id="T", graph_ref="g@1", owner=None)

    def cursor(seq: int) -> dict[str, Any]:
        return {"thread_id": "T", "run_id": "r1", "graph": "g@1", "seq": seq}

    first = runs.begin(mine, events, Event(type=RUN_STARTED, run_id="r1", data={"update": {}}), cursor)
    assert first.start_cursor["seq"] == 1 and runs.get("r1") == first  # record and event in one go
    live = RunRecord(run_id="r2", thread_id="T", graph_ref="g@1", owner="elsewhere:1:abc", lease_until=9e12)
    runs.put(live)  # a live run on T owned by another host
    with pytest.raises(ThreadBusyError, match=r"thread .T. is busy: run r[12]"):
        runs.begin(RunRecord(run_id="r3", thread_id="T", graph_ref="g@1"), events, Event(type=RUN_STARTED, run_id="r3"), cursor)
    assert runs.get("r3") is None and events.head("T") == 1  # no record, no event


def test_transitions_are_compare_and_set_without_reading_the_record(tmp_path: Path) -> None:
    _, _, runs = _stores(tmp_path)
    runs.put(RunRecord(run_id="r1", thread_id="T", graph_ref="g@1", interrupt_id="i1", status="waiting"))
    with pytest.raises(RunTransitionError, match="is waiting, not running"):
        runs.transition("r1", expect=("running",), status="succeeded")
    with pytest.raises(RunTransitionError):
        runs.transition("r1", expect=("waiting",), expect_interrupt="other", status="running")
    with pytest.raises(KeyError):
        runs.transition("nope", status="failed")
    with pytest.raises(ValueError, match="no field"):
        runs.transition("r1", colour="red")
    runs.transition("r1", expect=("waiting",), expect_interrupt="i1", status="running", waiting=None, error={"error": "E"})
    record = runs.get("r1")
    assert record is not None and (record.status, record.waiting, record.error) == ("running", None, {"error": "E"})
    assert runs.status("r1") == "running" and runs.status("nope") is None
    updated = runs.update("r1", expect=("running",), steps=3, finished_at=12.5)
    assert updated == runs.get("r1") and (updated.steps, updated.finished_at) == (3, 12.5)


def test_spend_is_summed_in_sql_as_the_generic_loop_sums_it(tmp_path: Path) -> None:
    _, sqlite_events, _ = _stores(tmp_path)
    memory_events = MemoryEventStore()
    batch = [
        Event(type=RUN_STARTED, run_id="r1"),
        Event(type=LLM_CALL, run_id="r1", data={"cost_usd": 0.25, "input_tokens": 10, "output_tokens": 5}),
        Event(type=NODE_UPDATE, run_id="r1", data={"update": {"cost_usd": 99}}),
        Event(type=LLM_CALL, run_id="r1", data={"cost_usd": None, "input_tokens": 3}),
        Event(type=LLM_CALL, run_id="r2", data={"cost_usd": 7.0, "input_tokens": 100, "output_tokens": 100}),
    ]
    for store in (sqlite_events, memory_events):
        store.append("T", 0, [Event(type=e.type, run_id=e.run_id, data=dict(e.data)) for e in batch])
        assert store.spend("T", "r1", lambda: 1) == (0.25, 18)
        assert store.spend("T", "r2", lambda: 1) == (7.0, 200)
        assert store.spend("T", "r9", lambda: 1) == (0.0, 0)


def test_reducers_read_from_the_canonical_json_match_the_graph_spec() -> None:
    spec = load_file(ROOT / "statemachines" / "examples" / "subgraph.yaml")
    assert reducers_of_canonical(spec.canonical()) == reducers_of(spec)
    assert reducers_of_canonical(parse_dict(THREE).canonical()) == {"messages": "append"}


def test_a_fresh_reader_gets_the_state_and_a_clear_error_for_an_unknown_thread(tmp_path: Path) -> None:
    writer = Stepwise.embedded(tmp_path / "home")
    result = writer.run(parse_dict(THREE), {"topic": "x"})
    reader = Stepwise.embedded(tmp_path / "home")
    seq, state = reader.state(result.thread_id)
    assert seq == writer.head(result.thread_id) and state == result.state
    assert reader.services.registry.spec(writer.runs()[0].graph_ref) == parse_dict(THREE).canonical()
    with pytest.raises(Exception, match="no thread 'nope'"):
        reader.state("nope")


def test_batches_beyond_one_statement_keep_the_append_contract(tmp_path: Path) -> None:
    _, events, _ = _stores(tmp_path)

    def batch(n: int, key: str | None = None) -> list[Event]:
        return [Event(type=NODE_UPDATE, key=f"{key}{i}" if key else None, data={"update": {"i": i}}) for i in range(n)]

    events.append("t", 0, batch(5))
    written = events.append("t", 5, batch(1500))  # over the one-statement size: a transaction instead
    assert (written[0].seq, written[-1].seq, events.head("t")) == (6, 1505, 1505)
    with pytest.raises(StateConflictError):
        events.append("t", 5, batch(1500))
    at_head = events.append_at_head("t", batch(1200, "k"))
    assert (at_head[0].seq, at_head[-1].seq) == (1506, 2705)
    with pytest.raises(DuplicateKeyError):
        events.append_at_head("t", batch(1200, "k"))
    assert events.head("t") == 2705 and [e.data["update"]["i"] for e in events.read("t", after=1504, upto=1507)] == [1499, 0, 1]


@pytest.mark.parametrize("backend", ["sqlite", "generic"])
def test_a_steps_tail_read_carries_its_runs_status(tmp_path: Path, backend: str) -> None:
    """``RunStore.tail_and_cancelled``: the SQLite single SELECT answers what ``read_visible`` plus ``status`` answer
    (memory stores: the generic two reads), for the main flow, a branch's scopes, an empty tail, and a cancel."""
    events, runs = _backend(tmp_path, backend)
    runs.put(RunRecord(run_id="r1", thread_id="T", graph_ref="g@1"))
    events.append(
        "T",
        0,
        [
            Event(type=RUN_STARTED, run_id="r1"),
            Event(type=NODE_UPDATE, run_id="r1", node="a", data={"update": {"m": 1}}),
            Event(type=NODE_UPDATE, run_id="r1", node="b", scope="p/0", data={"update": {"m": 2}}),
            Event(type=NODE_UPDATE, run_id="r1", node="c", scope="p/1", data={"update": {"m": 3}}),
        ],
    )
    for after, scopes in ((0, {""}), (1, {""}), (1, {"", "p/0"}), (2, {"p/1"}), (4, {""}), (4, {"p/0"})):
        tail, head, status = runs.tail_and_cancelled(events, "T", after, scopes, "r1")
        want_tail, want_head = events.read_visible("T", after, scopes)
        assert ([e.seq for e in tail], [e.node for e in tail]) == ([e.seq for e in want_tail], [e.node for e in want_tail])
        assert (head, status) == (want_head, False), (after, scopes)
    assert [e.data for e in runs.tail_and_cancelled(events, "T", 2, {"p/0"}, "r1")[0]] == [{"update": {"m": 2}}]
    assert runs.tail_and_cancelled(events, "T", 4, {"p/0"}, "r1")[1] == 4
    runs.transition("r1", expect=("running",), status="cancelled")
    assert runs.tail_and_cancelled(events, "T", 4, {""}, "r1")[2] is True
    assert runs.tail_and_cancelled(events, "T", 1, {"p/0"}, "r1")[2] is True
    assert runs.tail_and_cancelled(events, "T", 0, {""}, "nope")[2] is False
    assert runs.tail_and_cancelled(events, "other", 0, {""}, "r1") == ([], 0, True)


def test_the_cancel_check_reads_the_partial_index_also_on_an_older_database(tmp_path: Path) -> None:
    """A step's cancel check asks the partial index ``runs_cancelled`` (only cancelled runs are in it, so the
    record and its large ``input`` are not parsed). A database made before that index gains it when opened,
    and every write of the record keeps it right: the compare-and-set, a whole-record put."""
    import sqlite3

    old = sqlite3.connect(tmp_path / "s.db")
    old.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, created_at REAL NOT NULL, body TEXT NOT NULL)")
    record = RunRecord(run_id="r1", thread_id="T", graph_ref="g@1", input={"status": "cancelled", "blob": "x" * 100_000})
    old.execute("INSERT INTO runs VALUES (?,?,?,?)", ("r1", "T", 1.0, record.model_dump_json()))
    old.execute(
        "INSERT INTO runs VALUES (?,?,?,?)",
        ("r2", "T", 1.0, record.model_copy(update={"run_id": "r2", "status": "cancelled"}).model_dump_json()),
    )
    old.commit()
    old.close()
    db, events, runs = _stores(tmp_path)
    plan = db.connection().execute("EXPLAIN QUERY PLAN SELECT " + _CANCELLED, ("r1",)).fetchall()
    assert any("runs_cancelled" in str(step) for step in plan), plan
    assert [runs.tail_and_cancelled(events, "T", 0, {""}, r)[2] for r in ("r1", "r2")] == [False, True]
    runs.transition("r1", expect=("running",), status="cancelled")
    assert runs.tail_and_cancelled(events, "T", 0, {""}, "r1") == ([], 0, True)
    runs.put(record.model_copy(update={"status": "failed"}))
    assert runs.tail_and_cancelled(events, "T", 0, {""}, "r1")[2] is False and runs.status("r1") == "failed"


def seen(state: dict[str, Any]) -> dict[str, Any]:
    """A node that says how many messages it saw: which state each node ran on shows in the result."""
    return {"messages": [f"saw {len(state.get('messages', []))}"]}


SEEN = {
    "name": "seen",
    "state": {"messages": "append"},
    "graph": {
        "nodes": {n: {"kind": "function", "fn": "tests.unit.test_state_run_cost:seen", "writes": ["messages"]} for n in ("a", "b", "c")},
        "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
        "entry": "a",
    },
}


def test_the_next_node_reads_nothing_yet_sees_a_write_made_in_between(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a node's append (made here, the run not cancelled as it committed) the next node of the run skips
    its read: one tail read per 3-node run. A writer that appends in between makes that node's conditional
    append fail; the node runs again on the fresh state, so the write is never lost or overtaken."""
    client = Stepwise.embedded(tmp_path / "home")
    spec = parse_dict(SEEN)
    client.run(spec, {})
    counter = Counter()
    client.services.events.db.connection().set_trace_callback(counter)  # type: ignore[attr-defined]
    result = client.run(spec, {})
    client.services.events.db.connection().set_trace_callback(None)  # type: ignore[attr-defined]
    assert result.state["messages"] == ["saw 0", "saw 1", "saw 2"]
    assert sum(s.startswith("SELECT e.seq") for s in counter.statements) == 1, "\n".join(counter.statements)

    real = client.services.runs.append_and_cancelled
    written: list[list[Event]] = []

    def then_someone_writes(events: EventStore, thread_id: str, expected: int, new: Any, run_id: str) -> tuple[list[Event], bool | None]:
        out = real(events, thread_id, expected, new, run_id)
        if not written:  # right after node a's append: another writer's update on the thread
            other = Event(type=NODE_UPDATE, run_id="other", data={"update": {"messages": ["x"]}})
            written.append(events.append_at_head(thread_id, [other]))
        return out

    monkeypatch.setattr(client.services.runs, "append_and_cancelled", then_someone_writes)
    result = client.run(spec, {})
    assert result.status == "succeeded"
    assert result.state["messages"] == ["saw 0", "x", "saw 2", "saw 3"]  # b ran again on the state with "x" in it
    assert [e.node for e in client.history(result.thread_id) if e.type == NODE_UPDATE] == ["a", None, "b", "c"]


def test_a_cancel_made_here_right_after_a_node_commits_stops_the_next_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancel that lands between a node's append and the next node's start: that node must not run, as
    with a read before it (the cancel marks the run in ``Services.cancelling`` before it writes)."""
    client = Stepwise.embedded(tmp_path / "home")
    spec = parse_dict(SEEN)
    real = client.services.runs.append_and_cancelled
    cancelled: list[RunRecord] = []

    def then_cancel(events: EventStore, thread_id: str, expected: int, new: Any, run_id: str) -> tuple[list[Event], bool | None]:
        out = real(events, thread_id, expected, new, run_id)
        if not cancelled:
            cancelled.append(client.cancel(run_id))
        return out

    monkeypatch.setattr(client.services.runs, "append_and_cancelled", then_cancel)
    result = client.run(spec, {})
    assert cancelled[0].status == "cancelled"
    assert result.status == "cancelled" and result.state["messages"] == ["saw 0"]  # b and c never ran
