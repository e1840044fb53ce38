"""Event-sourced state: reducers, scoped folds, snapshots, time travel and conditional appends."""

from pathlib import Path

import pytest

from stepwise.errors import StateConflictError
from stepwise.state import reducers
from stepwise.state.events import JOIN, NODE_UPDATE, Event
from stepwise.state.files import FileSnapshotStore
from stepwise.state.fold import fold, join_refs
from stepwise.state.hydrate import Hydrator
from stepwise.state.memory import MemoryEventStore, MemorySnapshotStore
from stepwise.state.ports import DuplicateKeyError
from stepwise.state.sqlite import SqliteDatabase, SqliteEventStore


def upd(update, scope="", key=None):
    return Event(type=NODE_UPDATE, run_id="r", node="n", scope=scope, key=key, data={"update": update})


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path: Path):
    if request.param == "memory":
        return MemoryEventStore()
    return SqliteEventStore(SqliteDatabase(tmp_path / "db.sqlite"))


def test_builtin_and_custom_reducers():
    names = {"log": "append", "info": "merge", "count": "add", "best": "tests.unit.test_state:keep_max"}
    state = reducers.apply({}, {"log": "a", "info": {"x": 1}, "count": 2, "best": 3, "plain": 1}, names)
    state = reducers.apply(state, {"log": ["b", "c"], "info": {"y": 2}, "count": 3, "best": 1, "plain": 2}, names)
    assert state == {"log": ["a", "b", "c"], "info": {"x": 1, "y": 2}, "count": 5, "best": 3, "plain": 2}


def keep_max(old, new):
    return new if old is None else max(old, new)


def test_apply_never_mutates_its_input():
    before = {"log": ["a"]}
    reducers.apply(before, {"log": "b"}, {"log": "append"})
    assert before == {"log": ["a"]}


def test_conditional_append_rejects_a_stale_writer(store):
    store.append("t", 0, [upd({"a": 1})])
    with pytest.raises(StateConflictError):
        store.append("t", 0, [upd({"a": 2})])
    assert [e.data["update"] for e in store.read("t")] == [{"a": 1}]


def test_idempotency_keys_are_unique(store):
    store.append("t", 0, [upd({"a": 1}, key="k1")])
    with pytest.raises(DuplicateKeyError):
        store.append("t", 1, [upd({"a": 2}, key="k1")])
    assert store.by_key("t", "k1").data["update"] == {"a": 1}
    assert store.head("t") == 1


def test_branch_scopes_and_deterministic_join():
    names = {"log": "append"}
    store = MemoryEventStore()
    store.append("t", 0, [upd({"log": "main"})])
    # branches finish in the "wrong" order: branch 1 writes before branch 0
    store.append("t", 1, [upd({"log": "b1"}, scope="p:s/1"), upd({"log": "b0"}, scope="p:s/0"), upd({"log": "b0-again"}, scope="p:s/0")])
    events = store.read("t", after=1)
    refs = join_refs(events, "", "p:s")
    assert refs == [3, 4, 2]  # branch order, then seq
    store.append("t", 4, [Event(type=JOIN, data={"refs": refs})])
    hydrator = Hydrator(store, MemorySnapshotStore())
    assert hydrator.state("t", names)[1] == {"log": ["main", "b0", "b0-again", "b1"]}
    # a branch sees the main state at its fork plus only its own events
    assert hydrator.state("t", names, frames=[("p:s/1", 1)], at=4)[1] == {"log": ["main", "b1"]}


def test_snapshot_plus_tail_equals_full_replay(tmp_path: Path):
    names = {"log": "append"}
    store = MemoryEventStore()
    snaps = FileSnapshotStore(tmp_path)
    hydrator = Hydrator(store, snaps, snapshot_every=10)
    for i in range(35):
        seq, state = hydrator.state("t", names)
        store.append("t", seq, [upd({"log": i})])
        hydrator.remember("t", (), seq + 1, reducers.apply(state, {"log": i}, names))
    snap = snaps.latest("t")
    assert snap is not None and snap[0] == 30  # snapshots at 10, 20, 30, (45): intervals grow by half
    cold = Hydrator(store, snaps)  # a new process: no cache, uses the snapshot and the tail
    assert cold.state("t", names) == (35, {"log": list(range(35))})
    assert cold.state("t", names, at=7)[1] == {"log": list(range(7))}  # time travel below the snapshot replays the log


def test_snapshot_files_are_replaced_not_accumulated(tmp_path: Path):
    snaps = FileSnapshotStore(tmp_path)
    for seq in range(1, 6):
        snaps.put("t", seq, {"x": seq})
    assert len(list(tmp_path.iterdir())) == 1
    assert snaps.latest("t") == (5, {"x": 5})
    assert snaps.latest("t", at_most=4) is None


def test_stored_bytes_grow_linearly(tmp_path: Path):
    names = {"messages": "append"}
    sizes = {}
    for n in (100, 400):
        db = SqliteDatabase(tmp_path / f"{n}.db")
        store = SqliteEventStore(db)
        snaps = FileSnapshotStore(tmp_path / f"snaps{n}")
        hydrator = Hydrator(store, snaps, snapshot_every=50)
        for i in range(n):
            seq, state = hydrator.state("t", names)
            message = {"role": "assistant", "content": f"{i:04d} " + "x" * 500}
            store.append("t", seq, [upd({"messages": [message]})])
            hydrator.remember("t", (), seq + 1, reducers.apply(state, {"messages": [message]}, names))
        db.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes[n] = store.size_bytes() + snaps.size_bytes()
    ratio = sizes[400] / sizes[100]
    assert ratio < 4 * 1.25, sizes  # 4x the steps -> about 4x the bytes, far from the 16x of full-state checkpoints


def test_fold_ignores_invisible_branch_events():
    events = [upd({"a": 1}), upd({"a": 2}, scope="p:x/0")]
    for i, e in enumerate(events, 1):
        e.seq = i
    assert fold({}, events, {}, (), lambda s: events[s - 1]) == {"a": 1}
