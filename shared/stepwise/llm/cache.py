"""Response cache in Valkey: exact (hash of the normalised request) and semantic (embedding similarity over
a threshold). Every key sits under a hash of the tenant, so one tenant can never read another's answers.

Layout (``t`` = tenant hash, ``p`` = partition: model + system + tools + schema):
  ``{prefix}:{t}:x:{request hash}``  exact entry (JSON response), TTL
  ``{prefix}:{t}:v:{p}``             hash entry id → embedding (float32 bytes)
  ``{prefix}:{t}:z:{p}``             sorted set of entry ids by insertion time (bounds the partition)
  ``{prefix}:{t}:e:{id}``            semantic entry (JSON response), TTL
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from stepwise.llm.base import ChatRequest, ChatResponse, Usage
from stepwise.llm.embeddings import CACHE_DIM, Embedder, HashingEmbedder

CacheMode = Literal["off", "exact", "semantic"]


def _h(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass
class CacheHit:
    """A cached response and how it matched (exact or semantic)."""

    response: ChatResponse
    kind: Literal["exact", "semantic"]
    similarity: float = 1.0


class ResponseCache:
    """Caches responses by request hash and, optionally, by meaning (Valkey)."""

    def __init__(
        self,
        client: Any,
        *,
        ttl_seconds: int = 3600,
        threshold: float = 0.85,
        embedder: Embedder | None = None,
        max_entries: int = 1000,
        prefix: str = "stepwise:llm",
    ) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self.threshold = threshold
        self.embedder = embedder or HashingEmbedder(CACHE_DIM)
        self.max_entries = max_entries
        self.prefix = prefix

    def _keys(self, tenant: str, target: str, request: ChatRequest) -> tuple[str, str]:
        t = _h("tenant", tenant)[:24]
        exact = f"{self.prefix}:{t}:x:{_h(target, request.cache_key())}"
        tools = json.dumps([tool.model_dump() for tool in request.tools], sort_keys=True)
        partition = _h(target, request.system or "", tools, json.dumps(request.response_schema, sort_keys=True), self.embedder.name)[:24]
        return exact, f"{self.prefix}:{t}:{{}}:{partition}"

    @staticmethod
    def _semantic_text(request: ChatRequest) -> str:
        return ChatRequest(model="", messages=request.messages).prompt_text()

    def get(self, tenant: str, target: str, request: ChatRequest, mode: CacheMode) -> CacheHit | None:
        if mode == "off":
            return None
        exact, part = self._keys(tenant, target, request)
        raw = self.client.get(exact)
        if raw is not None:
            return CacheHit(_hit(raw), "exact", 1.0)
        if mode != "semantic":
            return None
        vectors = self.client.hgetall(part.format("v"))
        if not vectors:
            return None
        ids = list(vectors)
        matrix = np.stack([np.frombuffer(vectors[i], dtype=np.float32) for i in ids])
        query = self.embedder.embed([self._semantic_text(request)])[0]
        scores = matrix @ query
        best = int(np.argmax(scores))
        if float(scores[best]) < self.threshold:
            return None
        entry_id = ids[best].decode() if isinstance(ids[best], bytes) else str(ids[best])
        raw = self.client.get(f"{part.format('e')}:{entry_id}")
        if raw is None:  # expired: forget its vector
            self.client.hdel(part.format("v"), ids[best])
            self.client.zrem(part.format("z"), ids[best])
            return None
        return CacheHit(_hit(raw), "semantic", round(float(scores[best]), 4))

    def put(self, tenant: str, target: str, request: ChatRequest, response: ChatResponse, mode: CacheMode) -> None:
        if mode == "off" or response.stop_reason in ("max_tokens", "content_filter"):
            return
        exact, part = self._keys(tenant, target, request)
        blob = response.model_dump_json()
        pipe = self.client.pipeline()
        pipe.set(exact, blob, ex=self.ttl)
        if mode == "semantic":
            entry_id = _h(exact)[:24]
            vector = self.embedder.embed([self._semantic_text(request)])[0].astype(np.float32).tobytes()
            pipe.set(f"{part.format('e')}:{entry_id}", blob, ex=self.ttl)
            pipe.hset(part.format("v"), entry_id, vector)
            pipe.zadd(part.format("z"), {entry_id: time.time()})
            pipe.expire(part.format("v"), self.ttl)
            pipe.expire(part.format("z"), self.ttl)
        pipe.execute()
        if mode == "semantic":
            self._trim(part)

    def _trim(self, part: str) -> None:
        extra = int(self.client.zcard(part.format("z"))) - self.max_entries
        if extra > 0:
            old = self.client.zrange(part.format("z"), 0, extra - 1)
            self.client.zrem(part.format("z"), *old)
            self.client.hdel(part.format("v"), *old)


def _hit(raw: bytes | str) -> ChatResponse:
    """A cached answer: the original reply, but it cost nothing this time."""
    response = ChatResponse.model_validate_json(raw)
    return response.model_copy(update={"usage": Usage(), "cost_usd": 0.0, "cached": True})
