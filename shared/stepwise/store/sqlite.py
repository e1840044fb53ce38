"""SQLite ApiStore: the embedded default, a table in its own file (``<home>/api.db``) beside stepwise.db.

A separate file keeps the API's records (key hashes, tenants) apart from the engine's state, so the
engine schema stays the engine's.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from stepwise.store.base import ApiStore, StoreConflict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_items (
    pk TEXT NOT NULL, sk TEXT NOT NULL, rev INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (pk, sk)) WITHOUT ROWID;
"""


class SqliteApiStore(ApiStore):
    """The API store in a SQLite file beside the embedded backend's database."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _get(self, pk: str, sk: str) -> tuple[int, dict[str, Any]] | None:
        row = self._conn().execute("SELECT rev, body FROM api_items WHERE pk=? AND sk=?", (pk, sk)).fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    def _put(self, pk: str, sk: str, doc: dict[str, Any], expected: int | None) -> int:
        conn = self._conn()
        body = json.dumps(doc)
        if expected is None:
            try:
                conn.execute("INSERT INTO api_items (pk, sk, rev, body) VALUES (?,?,1,?)", (pk, sk, body))
            except sqlite3.IntegrityError:
                raise StoreConflict(f"{pk}/{sk} exists") from None
            return 1
        cur = conn.execute("UPDATE api_items SET rev=?, body=? WHERE pk=? AND sk=? AND rev=?", (expected + 1, body, pk, sk, expected))
        if cur.rowcount != 1:
            raise StoreConflict(f"{pk}/{sk} changed")
        return expected + 1

    def _query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        rows = (
            self._conn()
            .execute("SELECT body FROM api_items WHERE pk=? AND substr(sk, 1, ?)=? ORDER BY sk", (pk, len(prefix), prefix))
            .fetchall()
        )
        return [json.loads(r[0]) for r in rows]
