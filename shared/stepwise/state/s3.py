"""S3 adapters: the AWS ``SnapshotStore`` and the blob store that large event payloads are offloaded to.

Bucket layout (one bucket, ``Settings.bucket``):

- ``snapshots/<sha256(thread_id)>.json.z`` — the latest main-scope snapshot of a thread, zlib-compressed
  JSON ``{"thread_id", "seq", "state"}``. Like the embedded file store, only the latest is kept, so stored
  bytes stay linear in the run; older states are rebuilt from the event log (a versioned bucket keeps
  the previous objects for recovery, the CDK stack sets the lifecycle).
- ``blobs/<sha256(thread_id)[:32]>/<sha256(content)>.json.z`` — event ``data`` too large for a DynamoDB
  item. Content-addressed, so writing the same payload twice (a retried step) is harmless and an object
  never changes once written; that makes reads safe to cache.

Thread ids are hashed into keys so any string is a valid thread id and keys never leak user text.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from stepwise import awsclients
from stepwise.state.ports import SnapshotStore


def _thread_key(thread_id: str) -> str:
    return hashlib.sha256(thread_id.encode()).hexdigest()


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code in ("NoSuchKey", "404", "NotFound")


class S3SnapshotStore(SnapshotStore):
    """State snapshots as S3 objects."""

    def __init__(self, bucket: str, *, client: Any = None, prefix: str = "snapshots/") -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.s3 = client or awsclients.client("s3")

    def _key(self, thread_id: str) -> str:
        return f"{self.prefix}{_thread_key(thread_id)}.json.z"

    def put(
        self,
        thread_id: str,
        seq: int,
        state: dict[str, Any],
        appends: frozenset[str] = frozenset(),
        *,
        reducers: Mapping[str, str] | None = None,
    ) -> None:
        body = json.dumps({"thread_id": thread_id, "seq": seq, "state": state}, separators=(",", ":"), default=str)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self._key(thread_id),
            Body=zlib.compress(body.encode(), 3),
            ContentType="application/json",
            Metadata={"seq": str(seq)},
        )

    def latest(self, thread_id: str, at_most: int | None = None) -> tuple[int, dict[str, Any]] | None:
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self._key(thread_id))
        except self.s3.exceptions.NoSuchKey:
            return None
        except Exception as exc:
            if _not_found(exc):
                return None
            raise
        data = json.loads(zlib.decompress(obj["Body"].read()))
        if data.get("thread_id") != thread_id:  # a hash collision: treat as no snapshot, the log is the truth
            return None
        if at_most is not None and data["seq"] > at_most:
            return None
        return int(data["seq"]), data["state"]


class S3Blobs:
    """Content-addressed, immutable JSON blobs (large event data), with a small read cache."""

    def __init__(self, bucket: str, *, client: Any = None, prefix: str = "blobs/", cache_size: int = 64) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.s3 = client or awsclients.client("s3")
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def put(self, thread_id: str, text: str) -> str:
        """Store ``text`` and return its key (the reference kept in the DynamoDB item)."""
        key = f"{self.prefix}{_thread_key(thread_id)[:32]}/{hashlib.sha256(text.encode()).hexdigest()}.json.z"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=zlib.compress(text.encode(), 3), ContentType="application/json")
        self._remember(key, text)
        return key

    def get(self, key: str) -> str:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        text = zlib.decompress(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()).decode()
        self._remember(key, text)
        return text

    def _remember(self, key: str, text: str) -> None:
        with self._lock:
            self._cache[key] = text
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
