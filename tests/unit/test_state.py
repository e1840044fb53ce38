"""Event-sourced state: reducers, scoped folds, snapshots, time travel and conditional appends."""

import time
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


def _run_log(store, hydrator, n, names=None):
    names = names or {"log": "append"}
    for i in range(n):
        seq, state = hydrator.state("t", names)
        store.append("t", seq, [upd({"log": i, "last": i})])
        hydrator.remember("t", (), seq + 1, reducers.apply(state, {"log": i, "last": i}, names), names)


def test_snapshot_plus_tail_equals_full_replay(tmp_path: Path):
    names = {"log": "append"}
    store = MemoryEventStore()
    snaps = FileSnapshotStore(tmp_path)
    hydrator = Hydrator(store, snaps, incremental_every=10)
    _run_log(store, hydrator, 35)
    snap = snaps.latest("t")
    assert snap is not None and snap[0] == 30  # incremental snapshots every 10 events: the tail stays short
    cold = Hydrator(store, snaps)  # a new process: no cache, uses the snapshot and the tail
    assert cold.state("t", names) == (35, {"log": list(range(35)), "last": 34})
    assert cold.state("t", names, at=7)[1] == {"log": list(range(7)), "last": 6}  # below the first snapshot: the log


class WholeSnapshots(FileSnapshotStore):
    """A store whose snapshots cost O(state) (like S3): the hydrator spaces them out geometrically."""

    incremental = False


def test_whole_state_snapshots_are_spaced_out_geometrically(tmp_path: Path):
    store, snaps = MemoryEventStore(), WholeSnapshots(tmp_path)
    _run_log(store, Hydrator(store, snaps, snapshot_every=10), 35)
    assert snaps.latest("t")[0] == 30  # at 10, 20, 30, (45): intervals grow by half


def test_a_snapshot_appends_only_the_new_items(tmp_path: Path):
    snaps = FileSnapshotStore(tmp_path)
    items: list[str] = []
    for seq in range(10, 101, 10):
        items = [*items, *(f"{i:03d}" * 60 for i in range(seq - 10, seq))]  # what the append reducer builds
        snaps.put("t", seq, {"log": items, "n": seq}, frozenset({"log"}))
    (path,) = tmp_path.iterdir()
    whole = len(FileSnapshotStore._pack_for_test("t", 100, {"log": items, "n": 100}))
    assert path.stat().st_size < 1.2 * whole  # ten records that add up to one state, not ten whole states
    assert snaps.latest("t") == (100, {"log": items, "n": 100})
    # an earlier record: 20..80 were folded into the merged record at 90 (every 8th), so the one before 55 is 10
    assert FileSnapshotStore(tmp_path).latest("t", at_most=55) == (10, {"log": items[:10], "n": 10})
    assert FileSnapshotStore(tmp_path).latest("t", at_most=95) == (90, {"log": items[:90], "n": 90})
    assert snaps.latest("t", at_most=5) is None


def test_a_torn_snapshot_record_loses_nothing(tmp_path: Path):
    """A crash in the middle of writing a snapshot: the records before it stand, the log fills in the rest."""
    names = {"log": "append"}
    store, snaps = MemoryEventStore(), FileSnapshotStore(tmp_path)
    _run_log(store, Hydrator(store, snaps, incremental_every=10), 40)
    (path,) = tmp_path.iterdir()
    path.write_bytes(path.read_bytes()[:-7])  # the last record (seq 40) is cut short
    assert FileSnapshotStore(tmp_path).latest("t")[0] == 30
    assert Hydrator(store, FileSnapshotStore(tmp_path)).state("t", names) == (40, {"log": list(range(40)), "last": 39})


def test_a_crash_between_the_step_and_its_snapshot_loses_nothing(tmp_path: Path):
    """The event is the step's commit point; the snapshot is only a cache of the fold."""
    names = {"log": "append"}
    store, snaps = MemoryEventStore(), FileSnapshotStore(tmp_path)
    hydrator = Hydrator(store, snaps, incremental_every=10)
    _run_log(store, hydrator, 19)
    seq, _ = hydrator.state("t", names)
    store.append("t", seq, [upd({"log": 19, "last": 19})])  # the step's event is written… and the process dies
    cold = Hydrator(store, FileSnapshotStore(tmp_path))
    assert cold.state("t", names) == (20, {"log": list(range(20)), "last": 19})


def test_a_foreign_writers_record_never_folds_onto_the_wrong_base(tmp_path: Path):
    """Two processes snapshotting one thread: each appends only onto a file it knows, else rewrites it whole."""
    names = frozenset({"log"})
    a, b = FileSnapshotStore(tmp_path), FileSnapshotStore(tmp_path)
    a.put("t", 10, {"log": list(range(10))}, names)
    assert b.latest("t") == (10, {"log": list(range(10))})  # b now knows the file
    state = {"log": list(range(20))}
    a.put("t", 20, state, names)  # a appends a delta
    b.put("t", 15, {"log": list(range(15))}, names)  # b's view is stale: the file changed, so b rewrites it whole
    assert FileSnapshotStore(tmp_path).latest("t") == (15, {"log": list(range(15))})


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
        for _ in range(500):  # the store's own checkpoint thread may hold the WAL a moment: then TRUNCATE says busy
            if db.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                break
            time.sleep(0.01)
        sizes[n] = store.size_bytes() + snaps.size_bytes()
    ratio = sizes[400] / sizes[100]
    assert ratio < 4 * 1.25, sizes  # 4x the steps -> about 4x the bytes, far from the 16x of full-state checkpoints


def test_fold_ignores_invisible_branch_events():
    events = [upd({"a": 1}), upd({"a": 2}, scope="p:x/0")]
    for i, e in enumerate(events, 1):
        e.seq = i
    assert fold({}, events, {}, (), lambda s: events[s - 1]) == {"a": 1}
