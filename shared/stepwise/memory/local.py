"""The embedded long-term store: SQLite (WAL) for records and vectors, plus an HNSW index per tenant.

Files under ``<home>/memory/`` (``.stepwise/memory/`` by default): ``ltm.db`` and one
``<tenant hash>.<embedder>.usearch`` per tenant. Search is exact (numpy dot products over the rows that
pass the filters) while a tenant holds at most ``exact_threshold`` active records, and HNSW (``usearch``,
cosine) above it: the index returns candidates, SQL applies the filters, and the search widens until it
has ``k`` hits or falls back to exact search on the filtered rows. "As of" reads are always exact.

Several processes may share the directory: each write bumps a per-tenant version in SQLite, and an
index whose version is stale is rebuilt from the stored vectors before use.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stepwise.memory.embedders import Embedder
from stepwise.memory.ltm import Filter, LongTermStore, exact_top_k
from stepwise.memory.records import MemoryRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
  rowid INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT UNIQUE NOT NULL,
  tenant TEXT NOT NULL,
  namespace TEXT NOT NULL,
  strategy TEXT NOT NULL,
  key TEXT,
  hash TEXT NOT NULL,
  valid_to REAL,
  expires_at REAL,
  embedder TEXT NOT NULL,
  doc TEXT NOT NULL,
  vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_ns ON memories (tenant, namespace);
CREATE INDEX IF NOT EXISTS memories_key ON memories (tenant, key);
CREATE INDEX IF NOT EXISTS memories_hash ON memories (tenant, hash);
CREATE TABLE IF NOT EXISTS versions (tenant TEXT PRIMARY KEY, version INTEGER NOT NULL);
"""
_FIELDS = "rowid, doc"


def _th(tenant: str) -> str:
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


class _Hnsw:
    def __init__(self, dim: int, path: Path) -> None:
        from usearch.index import Index

        self.path, self.version = path, -1
        self.index = Index(ndim=dim, metric="cos", dtype="f32", connectivity=16, expansion_add=128, expansion_search=128)


class EmbeddedLongTermStore(LongTermStore):
    """Long-term memory in SQLite with a vector index, under the embedded home."""

    def __init__(self, home: str | Path, *, embedder: Embedder | None = None, exact_threshold: int = 5000) -> None:
        super().__init__(embedder)
        self.dir = Path(home) / "memory"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.exact_threshold = exact_threshold
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.dir / "ltm.db", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._indexes: dict[str, _Hnsw] = {}
        self._counts: dict[str, tuple[int, int]] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def _where(self, f: Filter) -> tuple[str, list[Any]]:
        sql = ["tenant = ?", "embedder = ?"]
        args: list[Any] = [f.tenant, self.embedder.name]
        if f.namespaces:  # the namespace itself, or anything below it: a range the (tenant, namespace) index serves
            clause = "(namespace >= ? AND namespace < ? AND (namespace = ? OR namespace >= ?))"
            sql.append("(" + " OR ".join(clause for _ in f.namespaces) + ")")
            for n in f.namespaces:
                args += [n, n + "0", n, n + "/"]  # "0" is the character after "/"
        if f.strategies:
            sql.append(f"strategy IN ({','.join('?' * len(f.strategies))})")
            args += f.strategies
        for k, v in f.metadata.items():
            sql.append("json_extract(doc, ?) = ?")
            args += [f"$.metadata.{json.dumps(k)}", v]
        for column, value in (("key", f.key), ("hash", f.hash)):
            if value is not None:
                sql.append(f"{column} = ?")
                args.append(value)
        if f.ids is not None:
            sql.append(f"id IN ({','.join('?' * len(f.ids)) or 'NULL'})")
            args += f.ids
        sql.append("(expires_at IS NULL OR expires_at > ?)")
        args.append(f.now)
        if f.as_of is not None:
            sql.append("json_extract(doc, '$.valid_from') <= ? AND (valid_to IS NULL OR valid_to > ?)")
            args += [f.as_of, f.as_of]
        elif f.active_only:
            sql.append("valid_to IS NULL")
        return " AND ".join(sql), args

    def _version(self, tenant: str) -> int:
        row = self._db.execute("SELECT version FROM versions WHERE tenant = ?", (tenant,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, tenant: str) -> int:
        self._db.execute(
            "INSERT INTO versions (tenant, version) VALUES (?, 1) ON CONFLICT(tenant) DO UPDATE SET version = version + 1", (tenant,)
        )
        return self._version(tenant)

    def _active_count(self, tenant: str) -> int:
        """Active records of the tenant, counted once per version (a count per query would scan the table)."""
        version = self._version(tenant)
        cached = self._counts.get(tenant)
        if cached is not None and cached[0] == version:
            return cached[1]
        row = self._db.execute(
            "SELECT count(*) FROM memories WHERE tenant = ? AND embedder = ? AND valid_to IS NULL", (tenant, self.embedder.name)
        ).fetchone()
        self._counts[tenant] = (version, int(row[0]))
        return int(row[0])

    def _hnsw(self, tenant: str) -> _Hnsw:
        """The tenant's HNSW index over its active records, rebuilt when another writer moved the version on."""
        version = self._version(tenant)
        found = self._indexes.get(tenant)
        if found is not None and found.version == version:
            return found
        path = self.dir / f"{_th(tenant)}.{self.embedder.name}.usearch"
        index = _Hnsw(self.embedder.dim, path)
        meta = path.with_suffix(".version")
        if path.exists() and meta.exists() and meta.read_text().strip() == str(version):
            index.index.load(str(path))
        else:
            rows = self._db.execute(
                "SELECT rowid, vector FROM memories WHERE tenant = ? AND embedder = ? AND valid_to IS NULL", (tenant, self.embedder.name)
            ).fetchall()
            if rows:
                keys = np.array([r[0] for r in rows], dtype=np.uint64)
                index.index.add(keys, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))
            index.index.save(str(path))
            meta.write_text(str(version))
        index.version = version
        self._indexes[tenant] = index
        return index

    # -- primitives ------------------------------------------------------------------------------
    def _put(self, tenant: str, records: Sequence[MemoryRecord], vectors: np.ndarray | None) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                touched: list[tuple[int, bool, np.ndarray | None]] = []
                for i, r in enumerate(records):
                    doc = r.model_dump_json()
                    if vectors is not None:
                        blob = np.ascontiguousarray(vectors[i], dtype=np.float32).tobytes()
                        cur = self._db.execute(
                            "INSERT INTO memories (id, tenant, namespace, strategy, key, hash, valid_to, expires_at, embedder, doc, vector)"
                            " VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET namespace=excluded.namespace,"
                            " strategy=excluded.strategy, key=excluded.key, hash=excluded.hash, valid_to=excluded.valid_to,"
                            " expires_at=excluded.expires_at, doc=excluded.doc, vector=excluded.vector RETURNING rowid",
                            (r.id, tenant, r.namespace, r.strategy, r.key, r.hash, r.valid_to, r.expires_at, self.embedder.name, doc, blob),
                        )
                        touched.append((int(cur.fetchone()[0]), r.valid_to is None, vectors[i]))
                    else:
                        cur = self._db.execute(
                            "UPDATE memories SET key=?, valid_to=?, expires_at=?, doc=? WHERE id=? AND tenant=? RETURNING rowid",
                            (r.key, r.valid_to, r.expires_at, doc, r.id, tenant),
                        )
                        row = cur.fetchone()
                        if row:
                            touched.append((int(row[0]), r.valid_to is None, None))
                version = self._bump(tenant)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            index = self._indexes.get(tenant)
            if index is not None and index.version == version - 1:
                for rowid, active, vector in touched:
                    if rowid in index.index:
                        index.index.remove(rowid)
                    if active and vector is not None:
                        index.index.add(rowid, np.asarray(vector, dtype=np.float32))
                index.version = version

    def _rows(self, f: Filter, limit: int | None = None, extra: str = "") -> list[tuple[Any, ...]]:
        where, args = self._where(f)
        # no ORDER BY when reading vectors: ordering by rowid would make SQLite scan the table instead of the namespace index
        sql = f"SELECT {_FIELDS}{extra} FROM memories WHERE {where}" + ("" if extra else " ORDER BY rowid")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _find(self, where: Filter, limit: int) -> list[MemoryRecord]:
        return [MemoryRecord.model_validate_json(row[1]) for row in self._rows(where, limit)]

    def _search(self, where: Filter, vector: np.ndarray, k: int) -> list[tuple[MemoryRecord, float]]:
        with self._lock:
            if where.as_of is None and self._active_count(where.tenant) > self.exact_threshold:
                return self._search_hnsw(where, vector, k)
            rows = self._rows(where, extra=", vector")
        matrix = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows]) if rows else np.zeros((0, 1), np.float32)
        return [(MemoryRecord.model_validate_json(rows[i][1]), s) for i, s in exact_top_k(matrix, vector, k)]

    def _search_hnsw(self, where: Filter, vector: np.ndarray, k: int) -> list[tuple[MemoryRecord, float]]:
        index = self._hnsw(where.tenant)
        size = len(index.index)
        want = k * 4
        while True:
            found = index.index.search(np.asarray(vector, dtype=np.float32), min(want, size))
            scores = {int(key): 1.0 - float(d) for key, d in zip(found.keys, found.distances, strict=False)}
            if not scores:
                return []
            # look the candidates up by rowid and filter them in Python with the reference semantics (Filter.matches):
            # with the filters in SQL, SQLite prefers a namespace range scan over the rowid lookups
            marks = ",".join("?" * len(scores))
            rows = self._db.execute(f"SELECT {_FIELDS} FROM memories WHERE rowid IN ({marks})", list(scores)).fetchall()
            parsed = ((MemoryRecord.model_validate_json(r[1]), scores[int(r[0])]) for r in rows)
            hits = sorted((h for h in parsed if where.matches(h[0])), key=lambda h: -h[1])
            if len(hits) >= k or want >= size:
                return hits[:k]
            if want >= 16 * k:  # a selective filter: exact search over the rows that pass it
                rows = self._rows(where, extra=", vector")
                matrix = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows]) if rows else np.zeros((0, 1), np.float32)
                return [(MemoryRecord.model_validate_json(rows[i][1]), s) for i, s in exact_top_k(matrix, vector, k)]
            want *= 4

    def _delete(self, tenant: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._lock:
            marks = ",".join("?" * len(ids))
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    f"DELETE FROM memories WHERE tenant = ? AND id IN ({marks}) RETURNING rowid", [tenant, *ids]
                ).fetchall()
                version = self._bump(tenant)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            index = self._indexes.get(tenant)
            if index is not None and index.version == version - 1:
                for (rowid,) in rows:
                    if int(rowid) in index.index:
                        index.index.remove(int(rowid))
                index.version = version

    def tenants(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT tenant FROM memories ORDER BY tenant")]

    def close(self) -> None:
        with self._lock:
            for tenant, index in self._indexes.items():
                if index.version == self._version(tenant):
                    index.index.save(str(index.path))
                    index.path.with_suffix(".version").write_text(str(index.version))
            self._indexes.clear()
            self._db.close()
