"""Text embeddings for the semantic cache.

The embedders themselves live in ``stepwise.memory.embedders`` (one implementation for the cache and
long-term memory); this module adds the OpenAI embeddings API and the cache's ``embedder`` setting:

``hashing`` (the default): hashed word and character n-gram counts, 1024 dimensions, L2-normalised —
offline, numpy only, good at near-duplicate phrasing. ``openai:text-embedding-3-small`` and
``bedrock:amazon.titan-embed-text-v2:0`` call the providers; ``minilm`` runs the int8 ONNX
all-MiniLM-L6-v2 offline (the ``memory`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from stepwise.memory.embedders import Embedder, HashingEmbedder, MiniLMInt8Embedder, TitanEmbedder, normalise

__all__ = ["CACHE_DIM", "Embedder", "HashingEmbedder", "MiniLMInt8Embedder", "OpenAIEmbedder", "TitanEmbedder", "make_embedder"]

#: The semantic cache's hashing dimension (more room than memory's 512: prompts are longer than memories).
CACHE_DIM = 1024


class OpenAIEmbedder:
    """Embeddings from the OpenAI API (``dim`` is known after the first call)."""

    def __init__(self, model: str = "text-embedding-3-small", client: Any = None, credentials: Mapping[str, str] | None = None) -> None:
        """``client``: an OpenAI client; else one keyed from ``credentials`` (``LLMSettings.credentials``)."""
        if client is None:
            import openai

            from stepwise.llm.secrets import api_key

            client = openai.OpenAI(api_key=api_key("OPENAI_API_KEY", credentials or {}), max_retries=2)
        self.client, self.model, self.name = client, model, f"openai:{model}"
        self.dim = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        resp = self.client.embeddings.create(model=self.model, input=texts)
        rows = normalise(np.array([d.embedding for d in resp.data], dtype=np.float32))
        self.dim = int(rows.shape[1]) if rows.size else self.dim
        return rows


def make_embedder(spec: str = "hashing", *, threads: int = 1, credentials: Mapping[str, str] | None = None) -> Embedder:
    """The semantic cache's embedder: ``hashing``, ``minilm``, ``openai:MODEL`` or ``bedrock:MODEL_ID``."""
    if spec in ("", "hashing"):
        return HashingEmbedder(CACHE_DIM)
    if spec == "minilm":
        MiniLMInt8Embedder.require()  # MissingExtra naming the 'memory' extra (one line in the CLI)
        return MiniLMInt8Embedder(threads)
    provider, _, model = spec.partition(":")
    if provider == "openai":
        return OpenAIEmbedder(model or "text-embedding-3-small", credentials=credentials)
    if provider == "bedrock":
        return TitanEmbedder(model or "amazon.titan-embed-text-v2:0", dimensions=None)
    raise ValueError(f"unknown embedder {spec!r}: use hashing, minilm, openai:MODEL or bedrock:MODEL_ID")
