"""Snapshot files: format 2 (XXH3-framed) and format 1 (CRC32) both read, torn or zeroed records end the
chain, a cold read folds its tail in place without touching shared states, and a stopped run's thread is
snapshotted at its head so its next cold reader replays nothing and needs no graph."""

import struct
import zlib
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
import xxhash

from stepwise.client import Stepwise
from stepwise.graph.loader import parse_dict
from stepwise.state import reducers
from stepwise.state.events import NODE_UPDATE, RUN_STARTED, Event
from stepwise.state.files import FileSnapshotStore
from stepwise.state.hydrate import Hydrator
from stepwise.state.memory import MemoryEventStore, MemorySnapshotStore

LOG = frozenset({"log"})


def upd(update: dict[str, Any]) -> Event:
    return Event(type=NODE_UPDATE, run_id="r", node="n", scope="", key=None, data={"update": update})


def format_1_file(records: list[dict[str, Any]]) -> bytes:
    """A file as the previous release wrote it: magic SWSNAP1, each record framed by length and CRC32."""
    out = b"SWSNAP1\n"
    for record in records:
        body = ormsgpack.packb(record)
        out += struct.pack("<II", len(body), zlib.crc32(body)) + body
    return out


def test_format_1_files_still_read_and_the_next_snapshot_rewrites_them(tmp_path: Path) -> None:
    snaps = FileSnapshotStore(tmp_path)
    path = snaps._path("t")
    path.write_bytes(format_1_file([{"seq": 4, "set": {"log": [1, 2], "n": 4}}, {"seq": 6, "base": 4, "append": {"log": [3]}}]))
    assert snaps.latest("t") == (6, {"log": [1, 2, 3], "n": 4})
    snaps.put("t", 9, {"log": [1, 2, 3, 4], "n": 9}, LOG)
    assert path.read_bytes().startswith(b"SWSNAP2\n")  # not a format-2 record appended to a format-1 file
    assert FileSnapshotStore(tmp_path).latest("t") == (9, {"log": [1, 2, 3, 4], "n": 9})


def test_a_torn_format_1_record_ends_its_chain(tmp_path: Path) -> None:
    path = FileSnapshotStore(tmp_path)._path("t")
    path.write_bytes(format_1_file([{"seq": 4, "set": {"log": [1]}}, {"seq": 6, "base": 4, "append": {"log": [2]}}])[:-2])
    assert FileSnapshotStore(tmp_path).latest("t") == (4, {"log": [1]})


@pytest.mark.parametrize(
    "tail",
    [
        bytes(4096),  # a crash after the file grew but before its blocks were written: zeros
        struct.pack("<IQ", 3, 12345) + b"abc",  # a record whose checksum does not match
        b"\x01\x00",  # a frame header cut short
    ],
)
def test_garbage_after_the_last_record_ends_the_chain(tmp_path: Path, tail: bytes) -> None:
    snaps = FileSnapshotStore(tmp_path)
    snaps.put("t", 10, {"log": list(range(10))}, LOG)
    snaps.put("t", 20, {"log": list(range(20))}, LOG)
    path = snaps._path("t")
    path.write_bytes(path.read_bytes() + tail)
    assert FileSnapshotStore(tmp_path).latest("t") == (20, {"log": list(range(20))})


def test_an_unknown_file_is_ignored_and_the_log_replayed(tmp_path: Path) -> None:
    store = MemoryEventStore()
    for i in range(5):
        store.append("t", i, [upd({"log": i})])
    snaps = FileSnapshotStore(tmp_path)
    snaps._path("t").write_bytes(b"SWSNAP9\n" + bytes(64))  # a future format, or anything else
    assert snaps.latest("t") is None
    assert Hydrator(store, snaps).state("t", {"log": "append"}) == (5, {"log": [0, 1, 2, 3, 4]})


def _log(store: MemoryEventStore, hydrator: Hydrator, n: int, names: dict[str, str], start: int = 0) -> None:
    for i in range(start, n):
        seq, state = hydrator.state("t", names)
        store.append("t", seq, [upd({"log": [i], "last": i})])
        hydrator.remember("t", (), seq + 1, reducers.apply(state, {"log": [i], "last": i}, names), names)


def test_a_cold_fold_in_place_equals_the_full_replay_and_leaves_the_events_alone(tmp_path: Path) -> None:
    names = {"log": "append"}
    store = MemoryEventStore()
    _log(store, Hydrator(store, FileSnapshotStore(tmp_path), incremental_every=10), 25, names)  # snapshot at 20, tail of 5
    snaps = FileSnapshotStore(tmp_path)
    decoded: list[Any] = []
    real_latest = snaps.latest_written
    snaps.latest_written = lambda *a: decoded.append(real_latest(*a)) or decoded[-1]  # type: ignore[method-assign]
    seq, state = Hydrator(store, snaps).state("t", names)
    assert (seq, state) == (25, {"log": list(range(25)), "last": 24})
    assert state["log"] is decoded[0][1]["log"]  # the decoded list was extended, not copied once per tail event
    assert [e.data["update"]["log"] for e in store.read("t")] == [[i] for i in range(25)]  # no event's list was extended
    assert Hydrator(store, FileSnapshotStore(tmp_path)).state("t", names) == (25, {"log": list(range(25)), "last": 24})


def test_a_cold_fold_never_extends_a_state_another_holder_shares() -> None:
    """The in-memory snapshot store hands out the very state it keeps: the fold must copy, not extend."""
    names = {"log": "append"}
    store, snaps = MemoryEventStore(), MemorySnapshotStore()
    kept = {"log": [0, 1]}
    for i in range(2):
        store.append("t", i, [upd({"log": i})])
    snaps.put("t", 2, kept, LOG)
    store.append("t", 2, [upd({"log": 2})])
    assert Hydrator(store, snaps).state("t", names) == (3, {"log": [0, 1, 2]})
    assert kept == {"log": [0, 1]} and snaps.latest("t") == (2, {"log": [0, 1]})


def test_a_cold_fold_in_place_applies_other_reducers_and_restatements(tmp_path: Path) -> None:
    names = {"log": "append", "info": "merge", "count": "add"}
    store, snaps = MemoryEventStore(), FileSnapshotStore(tmp_path)
    snaps.put("t", 1, {"log": ["a"], "info": {"x": 1}, "count": 1}, LOG)
    store.append("t", 0, [upd({"log": ["a"], "info": {"x": 1}, "count": 1})])
    store.append("t", 1, [upd({"log": "b", "info": {"y": 2}, "count": 2, "new": [1]})])
    store.append("t", 2, [upd({"log": ["c"], "more": ["m"]})])
    want = {"log": ["a", "b", "c"], "info": {"x": 1, "y": 2}, "count": 3, "new": [1], "more": ["m"]}
    assert Hydrator(store, snaps).state("t", names) == (3, want)


# -- a stopped run's thread is snapshotted at its head -------------------------------------------------
def tick(state: dict[str, Any]) -> dict[str, Any]:
    n = len(state.get("log") or [])
    return {"log": [{"i": n, "text": "x" * 40}], "more": n + 1 < state["turns"]}


def _loop_spec() -> Any:
    return parse_dict(
        {
            "name": "snapshot-loop",
            "state": {"log": "append"},
            "graph": {
                "nodes": {"tick": {"kind": "function", "fn": "tests.unit.test_snapshot_format:tick", "writes": ["log", "more"]}},
                "conditional_edges": [{"from": "tick", "conditions": [{"if": "state.more", "then": "tick"}, {"else": "__end__"}]}],
                "entry": "tick",
                "max_iterations": 1000,
            },
        }
    )


def test_a_stopped_run_leaves_its_thread_snapshotted_at_the_head(tmp_path: Path) -> None:
    client = Stepwise.embedded(tmp_path / "home")
    spec = _loop_spec()
    client.register(spec)
    long = client.run(spec, {"turns": 45})
    assert long.status == "succeeded" and len(long.state["log"]) == 45
    head = client.services.events.head(long.thread_id)
    assert head > 45 and head % client.services.hydrator.incremental_every != 0  # not a cadence point by luck
    snap = client.services.snapshots.latest(long.thread_id)
    assert snap is not None and snap[0] == head and snap[1] == long.state

    short = client.run(spec, {"turns": 3})  # shorter than the cadence: no snapshot file, its log is short
    assert short.status == "succeeded" and client.services.snapshots.latest(short.thread_id) is None


def test_a_cold_read_needs_the_graph_only_for_a_tail_that_starts_another_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    writer = Stepwise.embedded(home)
    spec = _loop_spec()
    writer.register(spec)
    result = writer.run(spec, {"turns": 40})

    def reader() -> Stepwise:
        client = Stepwise.embedded(home)
        real = client.services.reducers
        monkeypatch.setattr(client.services, "reducers", lambda ref: looked_up.append(ref) or real(ref))
        return client

    looked_up: list[str] = []
    seq, state = reader().state(result.thread_id)
    assert state == result.state and looked_up == []  # the snapshot is at the head: nothing to fold

    # The same run wrote on after the snapshot (a reader mid-run, or after a crash): the tail is folded with the
    # reducer names the snapshot recorded ("log" appends; folded as the default replace it would be [{"i": 99}]).
    head = writer.services.events.head(result.thread_id)
    writer.services.events.append(result.thread_id, head, [upd({"log": [{"i": 99}]})])
    seq, state = reader().state(result.thread_id)
    assert seq == head + 1 and state["log"] == [*result.state["log"], {"i": 99}] and looked_up == []

    # A tail that starts another run may belong to another graph: its reducers are looked up.
    started = Event(type=RUN_STARTED, run_id="r2", node=None, scope="", key=None, data={"update": {"log": [{"i": 100}]}})
    writer.services.events.append(result.thread_id, head + 1, [started])
    seq, state = reader().state(result.thread_id)
    assert state["log"] == [*result.state["log"], {"i": 99}, {"i": 100}] and looked_up == [spec.ref]


def test_snapshot_records_carry_the_reducer_names_they_were_written_with(tmp_path: Path) -> None:
    snaps = FileSnapshotStore(tmp_path)
    names = {"log": "append", "n": "replace"}
    snaps.put("t", 10, {"log": [1], "n": 1}, LOG, reducers=names)
    snaps.put("t", 20, {"log": [1, 2], "n": 2}, LOG, reducers=dict(names))  # unchanged: not written again
    records = _record_bodies(snaps._path("t"))
    assert records[0]["reducers"] == names and "reducers" not in records[1]
    snaps.put("t", 30, {"log": [1, 2, 3], "n": 3}, LOG, reducers={"log": "append", "n": "add"})
    assert _record_bodies(snaps._path("t"))[2]["reducers"] == {"log": "append", "n": "add"}
    assert FileSnapshotStore(tmp_path).latest_written("t") == (30, {"log": [1, 2, 3], "n": 3}, {"log": "append", "n": "add"})
    # a file that names none (format 1, or written without them) gives None: the reader looks the graph up
    (tmp_path / "old").mkdir()
    old = FileSnapshotStore(tmp_path / "old")
    old._path("t").write_bytes(format_1_file([{"seq": 5, "set": {"log": [1]}}]))
    assert old.latest_written("t") == (5, {"log": [1]}, None)
    # names that are not a str → str map are ignored, not trusted
    (tmp_path / "odd").mkdir()
    odd = FileSnapshotStore(tmp_path / "odd")
    odd._path("t").write_bytes(b"SWSNAP2\n" + _frame({"seq": 5, "set": {"log": [1]}, "reducers": {"log": 3}}))
    assert odd.latest_written("t") == (5, {"log": [1]}, None)


def _frame(record: dict[str, Any]) -> bytes:
    body = ormsgpack.packb(record)
    return struct.pack("<IQ", len(body), xxhash.xxh3_64_intdigest(body)) + body


def _record_bodies(path: Path) -> list[dict[str, Any]]:
    data, offset, out = path.read_bytes(), 8, []
    while offset < len(data):
        length, _ = struct.unpack_from("<IQ", data, offset)
        out.append(ormsgpack.unpackb(data[offset + 12 : offset + 12 + length]))
        offset += 12 + length
    return out


def _records(path: Path) -> int:
    data, offset, count = path.read_bytes(), 8, 0
    while offset < len(data):
        length, _ = struct.unpack_from("<IQ", data, offset)
        offset, count = offset + 12 + length, count + 1
    return count


def test_settling_a_long_chain_rewrites_it_as_one_record(tmp_path: Path) -> None:
    snaps = FileSnapshotStore(tmp_path, settle_chain=3)
    items: list[int] = []
    for seq in range(10, 40, 10):  # a whole record, then two deltas
        items = [*items, *range(seq - 10, seq)]
        snaps.put("t", seq, {"log": items}, LOG)
    path = snaps._path("t")
    assert _records(path) == 3
    items = [*items, 30, 31]
    snaps.settle("t", 32, {"log": items}, LOG)  # the third delta would reach the limit: one record instead
    assert _records(path) == 1 and FileSnapshotStore(tmp_path).latest("t") == (32, {"log": items})

    reader = FileSnapshotStore(tmp_path, settle_chain=3)  # another process picks up the file and the count
    assert reader.latest("t") == (32, {"log": items})
    reader.settle("t", 33, {"log": [*items, 32]}, LOG)  # a short chain: settling appends a delta as usual
    assert _records(path) == 2 and FileSnapshotStore(tmp_path).latest("t") == (33, {"log": [*items, 32]})


def test_every_merge_every_th_snapshot_folds_the_recent_deltas_into_one_record(tmp_path: Path) -> None:
    snaps = FileSnapshotStore(tmp_path, merge_every=4)
    items: list[int] = []
    counts = []
    for seq in range(1, 11):  # a whole record, then deltas; the 4th delta after a merge point merges
        items = [*items, seq]
        snaps.put("t", seq, {"log": items, "n": seq}, LOG)
        counts.append(_records(snaps._path("t")))
    assert counts == [1, 2, 3, 4, 2, 3, 4, 5, 3, 4]
    bodies = _record_bodies(snaps._path("t"))
    assert [(b["seq"], b.get("base")) for b in bodies] == [(1, None), (5, 1), (9, 5), (10, 9)]
    assert bodies[1]["append"] == {"log": [2, 3, 4, 5]} and bodies[1]["set"] == {"n": 5}  # the union, each item once
    assert FileSnapshotStore(tmp_path).latest("t") == (10, {"log": items, "n": 10})

    reader = FileSnapshotStore(tmp_path, merge_every=4)  # another process: merges from where it found the file
    assert reader.latest("t") == (10, {"log": items, "n": 10})
    for seq in range(11, 15):
        items = [*items, seq]
        reader.put("t", seq, {"log": items, "n": seq}, LOG)
    assert [b["seq"] for b in _record_bodies(snaps._path("t"))] == [1, 5, 9, 10, 14]
    assert FileSnapshotStore(tmp_path).latest("t") == (14, {"log": items, "n": 14})


def test_deltas_holding_merge_bytes_merge_before_the_merge_every_th(tmp_path: Path) -> None:
    """Big deltas merge sooner, so a merged record stays small (packing it allocates no fresh pages)."""
    snaps = FileSnapshotStore(tmp_path, merge_every=100, merge_bytes=2000)
    items: list[str] = []
    counts = []
    for seq in range(1, 8):  # a whole record, then deltas of ~1 KB each
        items = [*items, f"{seq}" * 1000]
        snaps.put("t", seq, {"log": items}, LOG)
        counts.append(_records(snaps._path("t")))
    assert counts == [1, 2, 3, 2, 3, 4, 3]  # the delta after ~2 KB of deltas merges them with itself
    bodies = _record_bodies(snaps._path("t"))
    assert [(b["seq"], b.get("base")) for b in bodies] == [(1, None), (4, 1), (7, 4)]
    assert FileSnapshotStore(tmp_path).latest("t") == (7, {"log": items})


def test_a_merge_torn_mid_write_ends_the_chain_at_the_last_whole_or_merged_record(tmp_path: Path) -> None:
    """A crash while a merged record is written over the deltas it replaces: the reader keeps what the file
    held up to the merge point, and the event log (the truth) gives the rest."""
    names = {"log": "append"}
    store = MemoryEventStore()
    writer = Hydrator(store, FileSnapshotStore(tmp_path, merge_every=3), incremental_every=2)
    _log(store, writer, 7, names)  # snapshots at 2 (whole), 4, 6 (deltas); the next one merges
    path = FileSnapshotStore(tmp_path)._path("t")
    before = path.read_bytes()
    _log(store, writer, 9, names, start=7)  # the snapshot at 8 is the merge of 4, 6 and 8, written from seq 2's end
    after = path.read_bytes()
    assert [b["seq"] for b in _record_bodies(path)] == [2, 8]
    merge_at = 8 + 12 + struct.unpack_from("<I", after, 8)[0]
    for torn in (after[:merge_at], *(after[:cut] + before[cut:] for cut in (merge_at + 5, merge_at + 20, len(after) - 3))):
        path.write_bytes(torn)  # the deltas cut off and nothing written yet, or the new record's first bytes only
        assert FileSnapshotStore(tmp_path).latest("t") == (2, {"log": [0, 1], "last": 1})
        assert Hydrator(store, FileSnapshotStore(tmp_path)).state("t", names) == (9, {"log": list(range(9)), "last": 8})
