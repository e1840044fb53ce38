"""Snapshots as one append-only file per thread (the embedded default's SnapshotStore).

A snapshot costs what changed since the last one, not the whole state: the file is a chain of records,
the first holding a whole state, each later one only the items appended to list channels since the
record before it and the other channels whose value changed. Restoring reads the file once and folds
the records (list extends and replacements, no reducers): one decode of about the state's size.
Because a record costs O(delta), snapshots can be frequent (every few dozen events), which bounds the
tail of events a cold reader must replay after the snapshot. Each record also costs a reader a little
beyond its bytes, so every ``merge_every``-th snapshot folds the deltas written since the last whole or
merged record into one record, written over them: the chain stays about 1/``merge_every`` as long, and
that write costs what those deltas held, never the whole state (no pause that grows with the run). A
merge also comes sooner, once the deltas since the merge point hold ``merge_bytes``: a merged record then
holds about that plus one delta (under 64 KB when a loop's steps are small), where packing it does not
grow ormsgpack's output buffer past the allocator's mmap threshold. Past it, every merge of a long loop
took 10-12 fresh-page faults (~0.35 ms a merge on the bench VM; ~0.22 ms and no faults under the cap).

Records are MessagePack (``ormsgpack``), uncompressed: decode speed over bytes (see docs/benchmarks.md,
W2 and W3). Each record is framed by its length and a 64-bit XXH3 checksum (format 2; CRC32 in format 1,
which cost as much as the decode itself: ~0.7 ms a megabyte against XXH3's ~0.05 ms). Files of format 1
still read; the next snapshot of such a thread rewrites its file whole in format 2. A torn, zeroed or
foreign record ends the chain, and
every record names the seq of the one it extends, so two writers racing on one file can never make a
reader fold a delta onto the wrong base: the reader stops where the chain breaks, and the event log
(the truth) fills in the rest. When the file holds much more than the state (values rewritten often),
the next snapshot rewrites it whole, to a temporary name and renamed, so a crash never tears it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ormsgpack
import xxhash

from stepwise.state.ports import SnapshotStore

_FRAME = struct.Struct("<IQ")  # payload length, xxh3_64(payload)
_MAGIC = b"SWSNAP2\n"
_FRAME_V1 = struct.Struct("<II")  # format 1: payload length, crc32(payload)
_MAGIC_V1 = b"SWSNAP1\n"
_checksum = xxhash.xxh3_64_intdigest


def _names(found: Any, before: dict[str, str] | None) -> dict[str, str] | None:
    """A record's reducer names if it holds well-formed ones (a record without them keeps the earlier ones)."""
    if isinstance(found, dict) and all(type(k) is str and type(v) is str for k, v in found.items()):
        return found
    return before


def _pack(record: dict[str, Any]) -> bytes:
    body = ormsgpack.packb(record, option=ormsgpack.OPT_NON_STR_KEYS)
    return _FRAME.pack(len(body), _checksum(body)) + body


@dataclass
class _Point:
    """The file as one of its records left it: enough to write only the difference from there."""

    seq: int
    size: int  # the file's size after that record: if it differs, someone else wrote, so start over
    lists: dict[str, tuple[int, Any]] = field(default_factory=dict)  # channel -> (length, last item object)
    values: dict[str, Any] = field(default_factory=dict)  # channel -> the value object written
    useful: int = 0  # bytes of whole-state and appended items: the file is compacted when it is much bigger
    deltas: int = 0  # records after the whole-state one: ``settle`` folds a long chain into one record

    def mark(self) -> _Point:
        """Where the file ends now (its lists and values shared, not copied): a base later records extend."""
        return _Point(self.seq, self.size, self.lists, self.values, self.useful, self.deltas)


@dataclass
class _Known(_Point):
    """What this process last wrote to (or read from) a thread's file, and where its recent deltas start."""

    reducers: dict[str, str] | None = None  # the reducer names the file last recorded
    path: str = ""  # the thread's file (its name hashes the thread id: computed once per thread)
    recent: int = 0  # delta records after ``merged``
    merged: _Point | None = None  # the end of the last whole or merged record: recent deltas get folded into one there


class FileSnapshotStore(SnapshotStore):
    """State snapshots as files, written incrementally."""

    incremental = True
    fresh_reads = True  # every read decodes the file anew

    def __init__(
        self,
        directory: str | Path,
        *,
        compact_ratio: float = 2.0,
        settle_chain: int = 8,
        merge_every: int = 8,
        merge_bytes: int = 48 * 1024,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._dirname = str(self.dir)
        self.compact_ratio = compact_ratio
        self.settle_chain = settle_chain
        self.merge_every = merge_every
        self.merge_bytes = merge_bytes
        self._known: dict[str, _Known] = {}
        self._lock = threading.Lock()

    def _path(self, thread_id: str) -> Path:
        return Path(self._file(thread_id))

    def _file(self, thread_id: str) -> str:
        return os.path.join(self._dirname, hashlib.sha256(thread_id.encode()).hexdigest()[:32] + ".snap")

    # -- writing -------------------------------------------------------------------------------
    def put(
        self,
        thread_id: str,
        seq: int,
        state: dict[str, Any],
        appends: frozenset[str] = frozenset(),
        *,
        reducers: Mapping[str, str] | None = None,
    ) -> None:
        """A delta record when this process knows the file as it is (else the whole state). ``reducers`` are
        recorded whenever they differ from the file's last ones: a cold reader folds its tail with them."""
        names = None if reducers is None else dict(reducers)
        with self._lock:
            known = self._known.get(thread_id)
            path = known.path if known is not None and known.path else self._file(thread_id)
            appendable = known is not None and seq > known.seq and self._size(path) == known.size
            if known is not None and appendable and known.size <= self.compact_ratio * known.useful + 65536:
                merged = known.merged
                if merged is not None and (known.recent + 1 >= self.merge_every or known.size - merged.size >= self.merge_bytes):
                    self._merge(path, known, merged, seq, state, appends, names)
                else:
                    self._append(path, known, seq, state, appends, names)
                return
            self._write_whole(thread_id, path, seq, state, names)

    def _append(
        self, path: str, known: _Known, seq: int, state: dict[str, Any], appends: frozenset[str], names: dict[str, str] | None
    ) -> None:
        record = self._delta(known, seq, state, appends)
        if names is not None and names != known.reducers:
            record["reducers"] = known.reducers = names
        blob = _pack(record)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)  # no buffered file object: this runs inside a loop's step
        try:
            rest = memoryview(blob)
            while rest:
                rest = rest[os.write(fd, rest) :]
        finally:
            os.close(fd)
        self._wrote(known, known, seq, state, record, len(blob))
        known.recent += 1

    def _merge(
        self,
        path: str,
        known: _Known,
        base: _Point,
        seq: int,
        state: dict[str, Any],
        appends: frozenset[str],
        names: dict[str, str] | None,
    ) -> None:
        """Fold the recent deltas and this one into one record, written over them: a cold reader then decodes
        about one record per ``merge_every`` snapshots instead of one per snapshot (each record costs a reader
        a few microseconds beyond its bytes), and the write costs what those deltas held, not the whole state.
        The record names the seq it extends, the end of the last whole or merged record: torn mid-write (a
        crash), it fails its checksum and the chain ends there; the event log fills in the rest."""
        record = self._delta(base, seq, state, appends)
        known.reducers = names if names is not None else known.reducers
        if known.reducers is not None:
            record["reducers"] = known.reducers
        blob = _pack(record)
        with open(path, "r+b") as f:
            # Written over the deltas, then the rest cut off. (Cutting them off first let the record land in new,
            # larger page-cache pages, which a cold read copies ~0.07 ms faster per MB; but the first such cut of a
            # thread's file took ~0.7 ms of CPU inside a step: a W7 pause of ~6x the median step.)
            f.seek(base.size)
            f.write(blob)
            f.truncate()
        self._wrote(known, base, seq, state, record, len(blob))
        known.recent = 0
        known.merged = known.mark()

    def _wrote(self, known: _Known, base: _Point, seq: int, state: dict[str, Any], record: dict[str, Any], size: int) -> None:
        """``known`` after a delta record of ``size`` bytes was written at the end of ``base``."""
        rewritten = len(_pack(record["set"])) if "set" in record else 0  # bytes that supersede older ones
        known.seq, known.size, known.useful = seq, base.size + size, base.useful + size - rewritten
        known.deltas = base.deltas + 1
        self._track(known, state)

    def settle(
        self,
        thread_id: str,
        seq: int,
        state: dict[str, Any],
        appends: frozenset[str] = frozenset(),
        *,
        reducers: Mapping[str, str] | None = None,
    ) -> None:
        """A stopped run's snapshot: a chain of ``settle_chain`` deltas or more is rewritten as one record. A cold
        read then decodes one record instead of dozens (at 1 MB, one record read ~20% faster than 62 deltas),
        and the whole-state write happens when the run has stopped, not inside a step of a long loop."""
        with self._lock:
            known = self._known.get(thread_id)
            if known is not None and seq > known.seq and known.deltas + 1 >= self.settle_chain:
                names = dict(reducers) if reducers is not None else known.reducers
                self._write_whole(thread_id, known.path or self._file(thread_id), seq, state, names)
                return
        self.put(thread_id, seq, state, appends, reducers=reducers)

    @staticmethod
    def _delta(known: _Point, seq: int, state: dict[str, Any], append_channels: frozenset[str]) -> dict[str, Any]:
        appends: dict[str, list[Any]] = {}
        sets: dict[str, Any] = {}
        for channel, value in state.items():
            seen = known.lists.get(channel)
            if seen is not None and channel in append_channels and isinstance(value, list):
                length, last = seen
                # the append reducer builds [*old, *new]: the new list starts with the very same item objects
                if len(value) >= length and (length == 0 or value[length - 1] is last):
                    if len(value) > length:
                        appends[channel] = value[length:]
                    continue
            if channel in known.values and known.values[channel] is value:
                continue
            sets[channel] = value
        gone = [c for c in (*known.lists, *known.values) if c not in state]
        record: dict[str, Any] = {"seq": seq, "base": known.seq}
        if appends:
            record["append"] = appends
        if sets:
            record["set"] = sets
        if gone:
            record["del"] = gone
        return record

    def _write_whole(self, thread_id: str, path: str, seq: int, state: dict[str, Any], reducers: dict[str, str] | None) -> None:
        record: dict[str, Any] = {"seq": seq, "set": state}
        if reducers is not None:
            record["reducers"] = reducers
        blob = _MAGIC + _pack(record)
        tmp = f"{path.removesuffix('.snap')}.tmp{os.getpid()}.{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
        known = _Known(seq=seq, size=len(blob), useful=len(blob), reducers=reducers, path=path)
        self._track(known, state)
        self._known[thread_id] = known
        known.merged = known.mark()

    @staticmethod
    def _track(known: _Point, state: dict[str, Any]) -> None:
        known.lists = {c: (len(v), v[-1] if v else None) for c, v in state.items() if isinstance(v, list)}
        known.values = {c: v for c, v in state.items() if not isinstance(v, list)}

    @staticmethod
    def _size(path: str) -> int:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return -1

    # -- reading -------------------------------------------------------------------------------
    def latest(self, thread_id: str, at_most: int | None = None) -> tuple[int, dict[str, Any]] | None:
        snap = self._read(thread_id, at_most)
        return None if snap is None else (snap[0], snap[1])

    def latest_written(self, thread_id: str) -> tuple[int, dict[str, Any], Mapping[str, str] | None] | None:
        return self._read(thread_id, None)

    def _read(self, thread_id: str, at_most: int | None) -> tuple[int, dict[str, Any], dict[str, str] | None] | None:
        path = self._file(thread_id)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        check: Callable[[memoryview], int]
        if data.startswith(_MAGIC):
            frame, check = _FRAME, _checksum
        elif data.startswith(_MAGIC_V1):
            frame, check = _FRAME_V1, zlib.crc32
        else:
            return None
        seq, end, records = -1, len(_MAGIC), 0
        state: dict[str, Any] = {}
        reducers: dict[str, str] | None = None
        offset = len(_MAGIC)
        view = memoryview(data)  # records are decoded in place, not copied out of the file's bytes first
        while offset + frame.size <= len(data):
            length, digest = frame.unpack_from(data, offset)
            body = view[offset + frame.size : offset + frame.size + length]
            if not length or len(body) != length or check(body) != digest:
                break  # a torn or zeroed last record (a crash mid-append): the records before it still hold
            try:
                record = ormsgpack.unpackb(body)
            except ormsgpack.MsgpackDecodeError:
                break  # a checksum collision on garbage: as torn
            if not isinstance(record, dict) or not isinstance(record.get("seq"), int):
                break
            if at_most is not None and record["seq"] > at_most:
                break
            if seq >= 0 and record.get("base") != seq:
                break  # another writer's record: not a delta of the state folded so far
            state = self._apply(state, record, whole=seq < 0)
            if "reducers" in record:
                reducers = _names(record["reducers"], reducers)
            seq = record["seq"]
            offset += frame.size + length
            end, records = offset, records + 1
        if seq < 0:
            return None
        if at_most is None and end == len(data) and frame is _FRAME:
            with self._lock:  # this process now knows the file: its next snapshot of the thread can append
                known = _Known(seq=seq, size=len(data), useful=len(data), deltas=records - 1, reducers=reducers, path=path)
                self._track(known, state)
                self._known[thread_id] = known
                known.merged = known.mark()
        return seq, state, reducers

    @staticmethod
    def _apply(state: dict[str, Any], record: dict[str, Any], *, whole: bool) -> dict[str, Any]:
        if whole:
            return dict(record.get("set") or {})
        for channel, items in (record.get("append") or {}).items():
            current = state.get(channel)
            if isinstance(current, list):
                current.extend(items)  # every list here was decoded by this read: it is ours to extend
            else:
                state[channel] = items
        state.update(record.get("set") or {})
        for channel in record.get("del") or ():
            state.pop(channel, None)
        return state

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("*.snap"))

    @staticmethod
    def _pack_for_test(thread_id: str, seq: int, state: dict[str, Any]) -> bytes:
        return _MAGIC + _pack({"seq": seq, "set": state})
