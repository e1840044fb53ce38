"""SQLite (WAL) adapters: the embedded default's event log, run records, task tokens and registry.

One database file holds all of them. Each OS thread gets its own connection (Parallel branches run in
threads); the primary key (thread_id, seq) is the conditional write, so two writers can never both
append the same seq.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from stepwise.errors import StateConflictError
from stepwise.state.events import Event
from stepwise.state.ports import (
    ACTIVE,
    IN_LINE,
    DuplicateKeyError,
    EventStore,
    Registry,
    Row,
    RunPage,
    RunQuery,
    RunRecord,
    RunStatus,
    RunStore,
    RunTransitionError,
    check_expected,
    in_line,
    live_rivals,
    next_in_line,
    page_cursor,
    queued_start,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    thread_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, run_id TEXT NOT NULL,
    node TEXT, scope TEXT NOT NULL, key TEXT, ts REAL NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (thread_id, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events(thread_id, key) WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_llm ON events(thread_id, run_id) WHERE type = 'llm_call';
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, created_at REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_thread ON runs(thread_id, created_at);
CREATE INDEX IF NOT EXISTS runs_queued ON runs(thread_id, created_at) WHERE json_extract(body, '$.status') = 'queued';
CREATE INDEX IF NOT EXISTS runs_tenant ON runs(json_extract(body, '$.tenant'), created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_tenant_status ON runs(json_extract(body, '$.tenant'), json_extract(body, '$.status'), created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_cancelled ON runs(run_id) WHERE json_extract(body, '$.status') = 'cancelled';
CREATE INDEX IF NOT EXISTS runs_in_flight ON runs(created_at, run_id)
    WHERE json_extract(body, '$.status') IN ('running', 'waiting', 'queued');
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, output TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS registry (
    ref TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, asl TEXT NOT NULL, created_at REAL);
CREATE TABLE IF NOT EXISTS aliases (name TEXT PRIMARY KEY, ref TEXT NOT NULL);
"""


# Is the run cancelled? Answered by the partial index runs_cancelled alone (its condition is evaluated when a record
# is written, by any writer, and it holds only cancelled runs), so a step's check does not parse the record, whose
# ``input`` may be large (a 100 KB input: ~120 µs -> ~4 µs a check); other writes add no index entry.
_CANCELLED = "EXISTS (SELECT 1 FROM runs INDEXED BY runs_cancelled WHERE run_id = ? AND json_extract(body, '$.status') = 'cancelled')"
# Runs in flight (running, waiting, queued), oldest first, a page at a time: a range of the partial index runs_in_flight,
# which holds only such runs (its condition is repeated word for word, so SQLite can prove it and INDEXED BY holds).
_IN_FLIGHT = (
    "SELECT created_at, run_id, body FROM runs INDEXED BY runs_in_flight "
    "WHERE json_extract(body, '$.status') IN ('running', 'waiting', 'queued') AND json_extract(body, '$.status') IN ({marks}) "
    "AND (created_at, run_id) > (?, ?) ORDER BY created_at, run_id LIMIT ?"
)
_IN_FLIGHT_PAGE = 500
_COLUMNS = "seq, type, run_id, node, scope, key, ts, data, thread_id"
_ROW = "(?,?,?,?,?,?,?,?,?)"
_HEAD = "(SELECT coalesce(max(seq), 0) FROM events WHERE thread_id = ?)"
# one event after the thread's head, numbered in the statement (the columns after seq, then the thread id twice)
_AT_HEAD = f"INSERT INTO events ({_COLUMNS}) SELECT h.v + 1, ?, ?, ?, ?, ?, ?, ?, ? FROM (SELECT {_HEAD} AS v) AS h RETURNING seq"
_AT_HEAD_UNLESS_KEYED = _AT_HEAD.replace("INSERT", "INSERT OR IGNORE", 1)  # its key already logged: no row
_ONE_STATEMENT_ROWS = 1000  # 9 parameters a row: larger batches take a transaction (SQLite caps a statement's parameters)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


_RUN_FIELDS = frozenset(RunRecord.model_fields)


def _update_sql(
    run_id: str,
    expect: Collection[str] | None,
    expect_interrupt: str | None,
    fields: dict[str, Any],
    computed: dict[str, str] | None = None,
    computed_args: Sequence[Any] = (),
) -> tuple[str, list[Any]]:
    """``UPDATE runs SET body = json_set(body, …) WHERE run_id = ? [AND status IN (…)] [AND interrupt_id IS ?]``
    for ``fields`` (values bound as JSON) and ``computed`` (fields set from SQL expressions, e.g. a sum)."""
    fields = {**fields, "updated_at": time.time()}
    unknown = (set(fields) | set(computed or ())) - _RUN_FIELDS
    if unknown:
        raise ValueError(f"run records have no field(s) {sorted(unknown)}")
    paths = [f"'$.{name}', json(?)" for name in fields]
    args: list[Any] = [_json(value) for value in fields.values()]
    for name, expression in (computed or {}).items():
        paths.append(f"'$.{name}', {expression}")
    args.extend(computed_args)
    sql = f"UPDATE runs SET body = json_set(body, {', '.join(paths)}) WHERE run_id = ?"
    args.append(run_id)
    if expect is not None:
        sql += f" AND json_extract(body, '$.status') IN ({','.join('?' * len(expect))})"
        args.extend(expect)
    if expect_interrupt is not None:
        sql += " AND json_extract(body, '$.interrupt_id') IS ?"
        args.append(expect_interrupt)
    return sql, args


class _Lease:
    """Holds a connection for one thread; its finalizer returns the connection to the pool."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


class _Checkpointer:
    """Passive WAL checkpoints, kept off a running loop's steps.

    A checkpoint copies the WAL back into the database and fsyncs both files. On this kind of disk an fsync
    stalls every writer of the machine while it lasts (W7: 5–8 ms for a few MB, against a 0.13 ms step;
    a separate checkpointing process stalls it the same), so none runs beside a step if it can be helped:

    - a run stopped (``settle``: finished, failed or waits) with ``every`` writes or more since the last
      checkpoint: inline, after its last step;
    - a node is about to wait on an LLM or a tool (``quiet``) with ``every`` writes piled up: on a background
      thread, while that wait hides it;
    - a loop that never waits (function nodes only) checkpoints on the thread once its WAL passes
      ``limit_bytes`` (checked every ``every`` writes), and inline at twice that if the thread cannot keep up
      (or a fork left it behind), so the WAL stays bounded.

    ``journal_size_limit`` (each connection's pragma) cuts the WAL file back to ``SqliteDatabase.WAL_TRUNCATE_BYTES``
    after a checkpoint, and ``limit_bytes`` is never below that: a file past the limit holds that much WAL, so
    the size check needs no SQL."""

    def __init__(self, db: SqliteDatabase, limit_bytes: int, every: int = 256, idle_s: float = 5.0) -> None:
        self.db, self.limit_bytes, self.every, self.idle_s = db, limit_bytes, every, idle_s
        self.wal = db.path.with_name(db.path.name + "-wal")
        self._writes = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def wrote(self) -> None:
        self._writes += 1  # approximate under races; only a cadence
        if self._writes % self.every:
            return
        try:
            size = self.wal.stat().st_size
        except OSError:
            return
        if size >= 2 * self.limit_bytes:
            self._writes = 0
            self.db.connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
        elif size >= self.limit_bytes:
            self._background()

    def quiet(self) -> None:
        if self._writes >= self.every:
            self._background()

    def settle(self) -> None:
        if self._writes < self.every:
            return
        self._writes = 0
        with contextlib.suppress(sqlite3.Error):  # busy: the next stop (or the bound) catches up
            self.db.connection().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _background(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, name="stepwise-wal-checkpoint", daemon=True)
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        conn = self.db.connect()
        try:
            while self._wake.wait(self.idle_s):
                self._wake.clear()
                self._writes = 0
                with contextlib.suppress(sqlite3.Error):  # busy or closed: the next round (or an inline one) catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()


class SqliteDatabase:
    """A WAL-mode database file shared by the adapters below, with one connection per OS thread."""

    #: The WAL file is cut back to this after a checkpoint (``journal_size_limit``).
    WAL_TRUNCATE_BYTES = 16 * 2**20

    def __init__(self, path: str | Path, *, wal_limit_bytes: int = 256 * 2**20) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._idle: list[sqlite3.Connection] = []  # list.append/pop are atomic under the GIL
        self.write_lock = threading.Lock()
        self.connection().executescript(_SCHEMA)
        self._checkpoints = _Checkpointer(self, max(wal_limit_bytes, self.WAL_TRUNCATE_BYTES))

    def wrote(self) -> None:
        """A write transaction committed: counted towards the next WAL checkpoint."""
        self._checkpoints.wrote()

    def settle(self) -> None:
        """A run stopped: checkpoint the WAL now if it has grown (see ``_Checkpointer``)."""
        self._checkpoints.settle()

    def quiet(self) -> None:
        """A node is about to wait on I/O: checkpoint the WAL meanwhile, on a thread, if it has grown."""
        self._checkpoints.quiet()

    @contextlib.contextmanager
    def immediate(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE … COMMIT`` under this process's write lock, rolled back on any exception;
        counted towards the next checkpoint only if it changed something."""
        with self.write_lock:
            conn = self.connection()
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if conn.total_changes != before:
                self.wrote()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection. When a thread ends, its connection goes back to a pool for the next
        thread, so short-lived branch threads do not each pay for opening the database."""
        lease: _Lease | None = getattr(self._local, "lease", None)
        if lease is None:
            try:
                conn = self._idle.pop()
            except IndexError:
                conn = self.connect()
            lease = _Lease(conn)
            weakref.finalize(lease, self._idle.append, conn)
            self._local.lease = lease
        return lease.conn

    def connect(self) -> sqlite3.Connection:
        """A new connection with this database's settings (``connection()`` pools them per thread)."""
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA journal_size_limit={self.WAL_TRUNCATE_BYTES}")
        # No checkpoint inside a commit: copying the WAL back into the database (a few MB every ~1,000 pages)
        # would stall whichever step's commit crossed the threshold. _Checkpointer does it off that path.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())


class SqliteEventStore(EventStore):
    """The event log in SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    def settle(self) -> None:
        self.db.settle()

    def quiet(self) -> None:
        self.db.quiet()

    def head(self, thread_id: str) -> int:
        row = self.db.connection().execute("SELECT max(seq) FROM events WHERE thread_id=?", (thread_id,)).fetchone()
        return int(row[0] or 0)

    def _insert(self, thread_id: str, expected_seq: int, rows: list[Row]) -> None:
        """One conditional INSERT, its own (implicit) transaction: the rows go in only if the head is still
        ``expected_seq``, and the primary key (thread_id, seq) refuses a seq another writer took meanwhile."""
        if len(rows) > _ONE_STATEMENT_ROWS:
            self._write_many(thread_id, expected_seq, rows)
            return
        values = ",".join([_ROW] * len(rows))
        args = [a for row in rows for a in (*row, thread_id)]
        sql = f"INSERT INTO events ({_COLUMNS}) SELECT * FROM (VALUES {values}) WHERE {_HEAD} = ?"
        if self._run(thread_id, sql, (*args, thread_id, expected_seq)) != len(rows):
            raise StateConflictError(thread_id, expected_seq)

    def append_at_head(self, thread_id: str, events: Sequence[Event], attempts: int = 50) -> list[Event]:
        """One INSERT … SELECT that numbers the rows after the head it reads (atomic: one statement)."""
        rows = self._numbered(events, 0)  # seqs 1..n: offsets from the head
        if len(rows) > _ONE_STATEMENT_ROWS:
            head = self._write_many(thread_id, None, rows)
            for event in events:
                event.seq += head
            return list(events)
        values = ",".join([_ROW] * len(rows))
        args = [a for row in rows for a in (*row, thread_id)]
        cols = ", ".join(f"column{i}" for i in range(2, 10))
        sql = (
            f"INSERT INTO events ({_COLUMNS}) SELECT h.v + o.column1, {cols} FROM (SELECT {_HEAD} AS v) AS h, "
            f"(VALUES {values}) AS o ORDER BY o.column1 RETURNING seq"
        )
        head = self._run(thread_id, sql, (thread_id, *args), returning=True) - 1
        for event in events:
            event.seq += head
        return list(events)

    def _write_many(self, thread_id: str, expected_seq: int | None, rows: list[Row]) -> int:
        """A batch too large for one statement's parameters: read the head and insert in one IMMEDIATE
        transaction (rows numbered after the head when ``expected_seq`` is None). Returns the head it read."""
        with self.db.immediate() as conn:
            head = int(conn.execute(f"SELECT {_HEAD}", (thread_id,)).fetchone()[0])
            if expected_seq is not None and head != expected_seq:
                raise StateConflictError(thread_id, expected_seq)
            offset = 0 if expected_seq is not None else head
            try:
                conn.executemany(f"INSERT INTO events ({_COLUMNS}) VALUES {_ROW}", [(row[0] + offset, *row[1:], thread_id) for row in rows])
            except sqlite3.IntegrityError as exc:
                if "events.thread_id, events.key" in str(exc):
                    raise DuplicateKeyError(str(exc)) from None
                raise StateConflictError(thread_id, -1) from None
        return head

    def _run(self, thread_id: str, sql: str, args: Sequence[Any], *, returning: bool = False, into: list[Any] | None = None) -> int:
        """Execute one write statement under the in-process lock (this process's writers queue on a mutex
        instead of SQLite's sleeping busy handler); map constraint failures to the port's errors. Returns the
        rows written, or with ``returning`` the least returned value, or with ``into`` the number of rows
        returned, which go into that list (the statement ends, and commits, here)."""
        with self.db.write_lock:
            try:
                cursor = self.db.connection().execute(sql, args)
                if into is not None:
                    into.extend(cursor.fetchall())
                    written = len(into)
                elif returning:
                    written = min(r[0] for r in cursor.fetchall())
                else:
                    written = cursor.rowcount
                self.db.wrote()
                return written
            except sqlite3.IntegrityError as exc:
                if "events.thread_id, events.key" in str(exc):
                    raise DuplicateKeyError(str(exc)) from None
                raise StateConflictError(thread_id, -1) from None

    def _select(self, thread_id: str, after: int, upto: int | None) -> list[Row]:
        sql = "SELECT seq, type, run_id, node, scope, key, ts, data FROM events WHERE thread_id=? AND seq>?"
        args: tuple[Any, ...] = (thread_id, after)
        if upto is not None:
            sql += " AND seq<=?"
            args += (upto,)
        return self.db.connection().execute(sql + " ORDER BY seq", args).fetchall()

    def read_visible(self, thread_id: str, after: int, scopes: Collection[str]) -> tuple[list[Event], int]:
        if scopes == {""}:  # the main flow: its tail rarely holds other scopes, so one query is cheaper
            return super().read_visible(thread_id, after, scopes)
        # a branch: let SQLite skip the siblings' rows instead of shipping them to Python
        marks = ",".join("?" * len(scopes))
        rows = (
            self.db.connection()
            .execute(
                "SELECT seq, type, run_id, node, scope, key, ts, data FROM events "
                f"WHERE thread_id=? AND seq>? AND scope IN ({marks}) ORDER BY seq",
                (thread_id, after, *scopes),
            )
            .fetchall()
        )
        return [self._decode(r) for r in rows], max(self.head(thread_id), after)

    def spend(self, thread_id: str, run_id: str, start: Callable[[], int]) -> tuple[float, int]:
        """Summed in SQL over the partial index of ``llm_call`` rows: a run's end costs what its LLM calls
        number, not what its thread's log holds."""
        row = (
            self.db.connection()
            .execute(
                "SELECT sum(coalesce(json_extract(data, '$.cost_usd'), 0)), "
                "sum(coalesce(json_extract(data, '$.input_tokens'), 0) + coalesce(json_extract(data, '$.output_tokens'), 0)) "
                "FROM events WHERE thread_id=? AND run_id=? AND type='llm_call'",
                (thread_id, run_id),
            )
            .fetchone()
        )
        return float(row[0] or 0.0), int(row[1] or 0)

    def _select_key(self, thread_id: str, key: str) -> Row | None:
        row: Row | None = (
            self.db.connection()
            .execute("SELECT seq, type, run_id, node, scope, key, ts, data FROM events WHERE thread_id=? AND key=?", (thread_id, key))
            .fetchone()
        )
        return row

    def threads(self) -> list[str]:
        return [r[0] for r in self.db.connection().execute("SELECT DISTINCT thread_id FROM events ORDER BY thread_id")]

    def size_bytes(self) -> int:
        return self.db.size_bytes()


class SqliteRunStore(RunStore):
    """Run records in SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    def put(self, run: RunRecord) -> None:
        self.db.connection().execute(
            "INSERT OR REPLACE INTO runs (run_id, thread_id, created_at, body) VALUES (?,?,?,?)",
            (run.run_id, run.thread_id, run.created_at, run.model_dump_json()),
        )

    def get(self, run_id: str) -> RunRecord | None:
        row = self.db.connection().execute("SELECT body FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return RunRecord.model_validate_json(row[0]) if row else None

    def update(
        self, run_id: str, *, expect: Collection[str] | None = None, expect_interrupt: str | None = None, **fields: Any
    ) -> RunRecord:
        """A compare-and-set in one statement: the fields are set inside the stored JSON only if the status
        (and the interrupt) is the expected one; the record comes back from that same statement."""
        body = self._set(run_id, expect, expect_interrupt, fields, returning=True)
        assert body is not None
        return RunRecord.model_validate_json(body)

    def transition(self, run_id: str, *, expect: Collection[str] | None = None, expect_interrupt: str | None = None, **fields: Any) -> None:
        self._set(run_id, expect, expect_interrupt, fields, returning=False)

    def graph_of(self, thread_id: str) -> str | None:
        row = (
            self.db.connection()
            .execute("SELECT json_extract(body, '$.graph_ref') FROM runs WHERE thread_id=? ORDER BY created_at DESC LIMIT 1", (thread_id,))
            .fetchone()
        )
        return row[0] if row else None

    def status(self, run_id: str) -> RunStatus | None:
        row = self.db.connection().execute("SELECT json_extract(body, '$.status') FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return row[0] if row else None

    def _set(
        self, run_id: str, expect: Collection[str] | None, expect_interrupt: str | None, fields: dict[str, Any], *, returning: bool
    ) -> str | None:
        """``UPDATE … SET body = json_set(body, …) WHERE run_id = ? [AND status IN (…)] [AND interrupt_id = ?]``:
        SQLite runs one writer at a time, so the check and the write are atomic, across processes too. When
        no row matched, the record is read to say why (no such run: KeyError; else RunTransitionError)."""
        sql, args = _update_sql(run_id, expect, expect_interrupt, fields)
        with self.db.write_lock:
            cursor = self.db.connection().execute(sql + (" RETURNING body" if returning else ""), args)
            row = cursor.fetchone() if returning else None
            matched = row is not None if returning else cursor.rowcount == 1
            if returning:
                cursor.fetchall()  # ends the statement (and its transaction) here
            self.db.wrote()
        if matched:
            return row[0] if row else None
        run = self.get(run_id)
        if run is None:
            raise KeyError(run_id)
        check_expected(run, expect, expect_interrupt)
        raise RunTransitionError(run_id, run.status, expect or ())  # changed between the write and this read

    def end(self, events: EventStore, thread_id: str, final: Event, *, expect: Collection[str], **fields: Any) -> None:
        """One transaction: the compare-and-set of the record, with the run's LLM spend summed in SQL (over the
        partial index of ``llm_call`` rows), and its final event at the head (a replay's is already there:
        ``OR IGNORE`` on the key). A run whose status is not expected is left as it is, and no event is added."""
        if not (isinstance(events, SqliteEventStore) and events.db is self.db):
            super().end(events, thread_id, final, expect=expect, **fields)
            return
        spent = "FROM events WHERE thread_id = ? AND run_id = ? AND type = 'llm_call'"
        computed = {
            "cost_usd": f"(SELECT round(coalesce(sum(coalesce(json_extract(data, '$.cost_usd'), 0)), 0), 9) {spent})",
            "tokens": "(SELECT coalesce(sum(coalesce(json_extract(data, '$.input_tokens'), 0) + "
            f"coalesce(json_extract(data, '$.output_tokens'), 0)), 0) {spent})",
        }
        spend_args = [thread_id, final.run_id] * 2
        update, update_args = _update_sql(final.run_id, expect, None, fields, computed, spend_args)
        row = EventStore._numbered([final], 0)[0]
        with self.db.immediate() as conn:
            if conn.execute(update, update_args).rowcount != 1:
                found = conn.execute("SELECT json_extract(body, '$.status') FROM runs WHERE run_id=?", (final.run_id,)).fetchone()
                if found is None:
                    raise KeyError(final.run_id)
                raise RunTransitionError(final.run_id, found[0], expect)
            added = conn.execute(_AT_HEAD_UNLESS_KEYED, (*row[1:], thread_id, thread_id)).fetchall()
        if added:
            final.seq = int(added[0][0])

    def tail_and_cancelled(
        self, events: EventStore, thread_id: str, after: int, scopes: Collection[str], run_id: str
    ) -> tuple[list[Event], int, bool]:
        """One SELECT: the tail after ``after`` (a branch's scopes filtered in SQL), the thread's head and whether
        the run is cancelled; the LEFT JOIN from one row answers even when the tail is empty."""
        if not (isinstance(events, SqliteEventStore) and events.db is self.db):
            return super().tail_and_cancelled(events, thread_id, after, scopes, run_id)
        main = scopes == {""}  # the main flow: its tail rarely holds other scopes, filtered in Python
        marks = "" if main else f" AND e.scope IN ({','.join('?' * len(scopes))})"
        rows = (
            self.db.connection()
            .execute(
                "SELECT e.seq, e.type, e.run_id, e.node, e.scope, e.key, e.ts, e.data, "
                f"{_CANCELLED}, "
                f"{'NULL' if main else _HEAD} FROM (SELECT 1) LEFT JOIN events AS e "
                f"ON e.thread_id = ? AND e.seq > ?{marks} ORDER BY e.seq",
                (run_id, *(() if main else (thread_id,)), thread_id, after, *(() if main else scopes)),
            )
            .fetchall()
        )
        first = rows[0]
        if first[0] is None:  # no tail
            return [], after if main else max(int(first[9]), after), bool(first[8])
        decode = self._decode_row
        if main:
            return [decode(r) for r in rows if r[4] in scopes], rows[-1][0], bool(first[8])
        return [decode(r) for r in rows], max(int(first[9]), after), bool(first[8])

    def append_and_cancelled(
        self, events: EventStore, thread_id: str, expected_seq: int, new: Sequence[Event], run_id: str
    ) -> tuple[builtins.list[Event], bool | None]:
        """The event store's conditional INSERT (``SqliteEventStore._insert``), returning each row's seq and the
        run's cancel flag, read from ``runs_cancelled`` inside the same statement (so as of that commit)."""
        if not (isinstance(events, SqliteEventStore) and events.db is self.db) or len(new) > _ONE_STATEMENT_ROWS:
            return super().append_and_cancelled(events, thread_id, expected_seq, new, run_id)
        rows = EventStore._numbered(new, expected_seq)
        values = ",".join([_ROW] * len(rows))
        args = [a for row in rows for a in (*row, thread_id)]
        sql = f"INSERT INTO events ({_COLUMNS}) SELECT * FROM (VALUES {values}) WHERE {_HEAD} = ? RETURNING {_CANCELLED}"
        returned: list[tuple[int]] = []
        if events._run(thread_id, sql, (*args, thread_id, expected_seq, run_id), into=returned) != len(rows):
            raise StateConflictError(thread_id, expected_seq)
        return list(new), any(bool(r[0]) for r in returned)

    def tail_and_record(
        self, events: EventStore, thread_id: str, after: int, scopes: Collection[str], run_id: str
    ) -> tuple[list[Event], int, RunRecord | None]:
        """One SELECT: the run's record (first row, part 0) and the main flow's tail after ``after`` (part 1), each
        arm read in its key's order and merged; a branch's read (other scopes) makes the generic two reads."""
        if not (isinstance(events, SqliteEventStore) and events.db is self.db) or scopes != {""}:
            return super().tail_and_record(events, thread_id, after, scopes, run_id)
        rows = (
            self.db.connection()
            .execute(
                "SELECT 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, body FROM runs WHERE run_id = ? UNION ALL "
                "SELECT 1, seq, type, run_id, node, scope, key, ts, data FROM events WHERE thread_id = ? AND seq > ? ORDER BY 1, 2",
                (run_id, thread_id, after),
            )
            .fetchall()
        )
        record = RunRecord.model_validate_json(rows[0][8]) if rows and rows[0][0] == 0 else None
        tail = rows[1:] if record is not None else rows
        head = tail[-1][1] if tail else after
        return [EventStore._decode(r[1:]) for r in tail if r[5] in scopes], head, record

    @staticmethod
    def _decode_row(row: tuple[Any, ...]) -> Event:
        return EventStore._decode(row[:8])

    def begin(
        self, record: RunRecord, events: EventStore, started: Event, cursor: Callable[[int], dict[str, Any]], *, new_thread: bool = False
    ) -> RunRecord:
        """One transaction: the rivals check, the run record and its ``run_started`` event, so a second run on a
        busy thread leaves nothing behind, and no reader ever sees a run without its start cursor. A new thread
        (an id made up by the caller) has no rivals to look for: its event goes in at seq 1, and the primary
        key refuses it if the id was taken after all (StateConflictError, nothing written)."""
        if not (isinstance(events, SqliteEventStore) and events.db is self.db):
            return super().begin(record, events, started, cursor, new_thread=new_thread)
        thread_id = record.thread_id
        with self.db.immediate() as conn:
            row = EventStore._numbered([started], 0)[0]
            if new_thread:
                try:
                    conn.execute(f"INSERT INTO events ({_COLUMNS}) VALUES {_ROW}", (*row, thread_id))
                except sqlite3.IntegrityError:
                    raise StateConflictError(thread_id, 0, detail=f"thread id {thread_id!r} is taken; pick another") from None
            else:
                running = conn.execute(
                    "SELECT body FROM runs WHERE thread_id=? AND json_extract(body, '$.status')='running'", (thread_id,)
                ).fetchall()
                live_rivals((RunRecord.model_validate_json(r[0]) for r in running), None)
                started.seq = int(conn.execute(_AT_HEAD, (*row[1:], thread_id, thread_id)).fetchall()[0][0])
            record.start_cursor = cursor(started.seq)
            conn.execute(
                "INSERT INTO runs (run_id, thread_id, created_at, body) VALUES (?,?,?,?)",
                (record.run_id, thread_id, record.created_at, record.model_dump_json()),
            )
        return record

    def thread_runs(self, thread_id: str, statuses: Collection[str]) -> builtins.list[RunRecord]:
        marks = ",".join("?" * len(statuses))
        rows = (
            self.db.connection()
            .execute(
                f"SELECT body FROM runs WHERE thread_id=? AND json_extract(body, '$.status') IN ({marks}) ORDER BY created_at, run_id",
                (thread_id, *statuses),
            )
            .fetchall()
        )
        return [RunRecord.model_validate_json(r[0]) for r in rows]

    def queued_threads(self, limit: int = 1000) -> builtins.list[str]:
        """From the partial index of queued runs (only queued rows are in it)."""
        sql = "SELECT DISTINCT thread_id FROM runs WHERE json_extract(body, '$.status') = 'queued' ORDER BY thread_id LIMIT ?"
        return [r[0] for r in self.db.connection().execute(sql, (limit,)).fetchall()]

    def in_flight(self, statuses: Collection[RunStatus] = ACTIVE) -> Iterator[RunRecord]:
        """Pages of ``_IN_FLIGHT_PAGE`` runs read from the partial index ``runs_in_flight``, oldest first, each
        after the last one's (created_at, run_id): never a scan of finished runs, never truncated."""
        wanted = in_line(statuses)
        sql = _IN_FLIGHT.format(marks=",".join("?" * len(wanted)))
        after: tuple[float, str] = (float("-inf"), "")
        while True:
            rows = self.db.connection().execute(sql, (*wanted, *after, _IN_FLIGHT_PAGE)).fetchall()
            for row in rows:
                yield RunRecord.model_validate_json(row[2])
            if len(rows) < _IN_FLIGHT_PAGE:
                return
            after = (rows[-1][0], rows[-1][1])

    def claim_queued(
        self, events: EventStore, thread_id: str, cursor: Callable[[RunRecord, int], dict[str, Any]], **fields: Any
    ) -> RunRecord | None:
        """One ``BEGIN IMMEDIATE`` transaction: the rivals check, the compare-and-set of the oldest queued run
        and its ``run_started`` at the head. ``begin`` takes the same lock, so a run begun on the thread
        either comes first (and nothing is claimed) or finds the claimed run running (ThreadBusyError)."""
        if not (isinstance(events, SqliteEventStore) and events.db is self.db):
            return super().claim_queued(events, thread_id, cursor, **fields)
        with self.db.immediate() as conn:
            run = next_in_line(self.thread_runs(thread_id, IN_LINE))
            if run is None:
                return None  # nothing queued, or a rival in flight: the read-only transaction ends unchanged
            started = queued_start(run)
            row = EventStore._numbered([started], 0)[0]
            started.seq = int(conn.execute(_AT_HEAD, (*row[1:], thread_id, thread_id)).fetchall()[0][0])
            claimed = RunRecord.model_validate(
                {**run.model_dump(), **fields, "status": "running", "start_cursor": cursor(run, started.seq), "updated_at": time.time()}
            )
            conn.execute("UPDATE runs SET body=? WHERE run_id=?", (claimed.model_dump_json(), run.run_id))
        return claimed

    def list(self, *, thread_id: str | None = None, limit: int = 50) -> list[RunRecord]:
        sql, args = "SELECT body FROM runs", tuple[str, ...]()
        if thread_id is not None:
            sql, args = sql + " WHERE thread_id=?", (thread_id,)
        rows = self.db.connection().execute(sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
        return [RunRecord.model_validate_json(r[0]) for r in rows]

    def query(self, q: RunQuery) -> RunPage:
        """One indexed range scan: (tenant[, status], created_at, run_id) → the page, filters on the rest."""
        where, args = ["json_extract(body, '$.tenant') = ?"], list[Any]([q.tenant])
        if q.status is not None:
            where.append("json_extract(body, '$.status') = ?")
            args.append(q.status)
        if q.since is not None:
            where.append("created_at >= ?")
            args.append(q.since)
        if q.until is not None:
            where.append("created_at < ?")
            args.append(q.until)
        position = q.position()
        if position is not None:
            where.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            args += [position[0], position[0], position[1]]
        if q.agent is not None:
            where.append("substr(json_extract(body, '$.graph_ref'), 1, ?) = ?")
            args += [len(q.agent) + 1, q.agent + "@"]
        if q.min_cost is not None:
            where.append("coalesce(json_extract(body, '$.cost_usd'), 0) >= ?")
            args.append(q.min_cost)
        if q.max_cost is not None:
            where.append("coalesce(json_extract(body, '$.cost_usd'), 0) <= ?")
            args.append(q.max_cost)
        if q.thread_id is not None:
            where.append("thread_id = ?")
            args.append(q.thread_id)
        sql = f"SELECT body FROM runs WHERE {' AND '.join(where)} ORDER BY created_at DESC, run_id DESC LIMIT ?"
        rows = self.db.connection().execute(sql, (*args, q.limit + 1)).fetchall()
        runs = [RunRecord.model_validate_json(r[0]) for r in rows[: q.limit]]
        return RunPage(runs=runs, next_cursor=page_cursor(runs[-1]) if len(rows) > q.limit else None)

    def complete_token(self, token: str, output: dict[str, Any]) -> None:
        self.db.connection().execute("INSERT OR REPLACE INTO tokens (token, output) VALUES (?,?)", (token, json.dumps(output)))

    def token_output(self, token: str) -> dict[str, Any] | None:
        row = self.db.connection().execute("SELECT output FROM tokens WHERE token=?", (token,)).fetchone()
        return json.loads(row[0]) if row else None


class SqliteRegistry(Registry):
    """Graph versions and their ASL in SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    def put(self, ref: str, name: str, spec: dict[str, Any], asl: dict[str, Any]) -> None:
        conn = self.db.connection()
        conn.execute(
            "INSERT OR IGNORE INTO registry (ref, name, spec, asl, created_at) VALUES (?,?,?,?,?)",
            (ref, name, json.dumps(spec), json.dumps(asl), time.time()),
        )
        conn.execute("INSERT OR REPLACE INTO aliases (name, ref) VALUES (?,?)", (name, ref))

    def get(self, ref: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        row = self.db.connection().execute("SELECT spec, asl FROM registry WHERE ref=?", (ref,)).fetchone()
        return (json.loads(row[0]), json.loads(row[1])) if row else None

    def spec(self, ref: str) -> dict[str, Any] | None:
        row = self.db.connection().execute("SELECT spec FROM registry WHERE ref=?", (ref,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def latest(self, name: str) -> str | None:
        row = self.db.connection().execute("SELECT ref FROM aliases WHERE name=?", (name,)).fetchone()
        return row[0] if row else None
