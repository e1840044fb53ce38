"""Snapshots as compressed JSON files, one per thread (the embedded default's SnapshotStore).

Only the latest snapshot of a thread is kept, so stored bytes stay linear in the run's length; older
states are rebuilt from the log. Files are written to a temporary name and renamed, so a crash never
leaves a torn snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any

from stepwise.state.ports import SnapshotStore


class FileSnapshotStore(SnapshotStore):
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, thread_id: str) -> Path:
        return self.dir / (hashlib.sha256(thread_id.encode()).hexdigest()[:32] + ".json.z")

    def put(self, thread_id: str, seq: int, state: dict[str, Any]) -> None:
        blob = zlib.compress(json.dumps({"thread_id": thread_id, "seq": seq, "state": state}, separators=(",", ":")).encode(), 3)
        path = self._path(thread_id)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(blob)
        os.replace(tmp, path)

    def latest(self, thread_id: str, at_most: int | None = None) -> tuple[int, dict[str, Any]] | None:
        path = self._path(thread_id)
        try:
            data = json.loads(zlib.decompress(path.read_bytes()))
        except FileNotFoundError:
            return None
        if at_most is not None and data["seq"] > at_most:
            return None
        return int(data["seq"]), data["state"]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("*.json.z"))
