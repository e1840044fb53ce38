"""Query latency at 10k and 100k records: the embedded store (SQLite + usearch HNSW above its exact-search
threshold, filters applied) vs a brute-force numpy baseline over the same vectors.

Vectors are synthetic (clustered points on a 24-dimensional subspace, projected and normalised, seeded)
so building 100k records takes seconds instead of embedding 100k sentences; the query path is the store's
real one minus the embedding (a precomputed embedder returns the query's vector). Dimensions: 384 at 10k
(MiniLM's), 128 at 100k to keep the HNSW build within a few minutes on 2 cores — stated in the results.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np

from stepwise.memory.embedders import normalise
from stepwise.memory.local import EmbeddedLongTermStore
from stepwise.memory.ltm import exact_top_k
from stepwise.memory.records import MemoryQuery, MemoryRecord


class Precomputed:
    """Returns the vector registered for a text (the bench's stand-in for a model)."""

    def __init__(self, dim: int) -> None:
        self.dim, self.name, self.table = dim, f"precomputed-{dim}", {}  # type: ignore[var-annotated]

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


LATENT = 24  # sentence embeddings have a low intrinsic dimension; i.i.d. noise in 384-d would make every neighbour a tie


def vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Clustered points on a ``LATENT``-dimensional subspace, projected to ``dim`` with a fixed random map, plus small noise."""
    rng = np.random.default_rng(seed)
    projection = np.random.default_rng(0).normal(size=(LATENT, dim))
    centres = rng.normal(size=(max(8, n // 500), LATENT))
    latent = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, LATENT))
    return normalise(latent @ projection + 0.05 * rng.normal(size=(n, dim)))


def pct(samples: list[float], p: float) -> float:
    return round(float(np.percentile(np.array(samples), p)), 3)


def measure(n: int, dim: int, queries: int = 300) -> dict[str, Any]:
    data = vectors(n, dim, seed=n)
    probes = vectors(queries, dim, seed=n + 1)
    embedder = Precomputed(dim)
    texts = [f"r{i}" for i in range(n)]
    embedder.table.update(zip(texts, data, strict=True))
    embedder.table.update({f"q{i}": v for i, v in enumerate(probes)})
    with tempfile.TemporaryDirectory() as home:
        store = EmbeddedLongTermStore(home, embedder=embedder, exact_threshold=5000)  # type: ignore[arg-type]
        started = time.perf_counter()
        for start in range(0, n, 5000):  # bulk load through the adapter's write primitive (the insert path is not measured)
            stop = min(n, start + 5000)
            batch = [MemoryRecord(namespace=f"bench/u{i % 50}", text=texts[i]).with_hash() for i in range(start, stop)]
            store._put("bench", batch, data[start:stop])
        insert_s = time.perf_counter() - started
        started = time.perf_counter()
        store.search("bench", MemoryQuery(text="q0", namespaces=["bench"], top_k=10))  # builds the HNSW index
        index_s = time.perf_counter() - started
        ours, base, overlap, bare = [], [], [], []
        hnsw = store._hnsw("bench").index
        for i in range(queries):
            t0 = time.perf_counter()
            hnsw.search(probes[i], 10)
            bare.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            hits = store.search("bench", MemoryQuery(text=f"q{i}", namespaces=["bench"], top_k=10))
            t1 = time.perf_counter()
            exact = exact_top_k(data, probes[i], 10)
            t2 = time.perf_counter()
            ours.append((t1 - t0) * 1000)
            base.append((t2 - t1) * 1000)
            overlap.append(len({h.record.text for h in hits} & {texts[j] for j, _ in exact}) / 10)
        filtered = []
        for i in range(min(queries, 100)):
            t0 = time.perf_counter()
            store.search("bench", MemoryQuery(text=f"q{i}", namespaces=[f"bench/u{i % 50}"], top_k=10))
            filtered.append((time.perf_counter() - t0) * 1000)
        store.close()
    return {
        "records": n,
        "dim": dim,
        "insert_s": round(insert_s, 1),
        "hnsw_build_s": round(index_s, 1),
        "store_p50_ms": pct(ours, 50),
        "store_p99_ms": pct(ours, 99),
        "store_filtered_p50_ms": pct(filtered, 50),
        "usearch_only_p50_ms": pct(bare, 50),
        "numpy_p50_ms": pct(base, 50),
        "numpy_p99_ms": pct(base, 99),
        "p50_ratio_numpy_over_store": round(pct(base, 50) / max(pct(ours, 50), 1e-9), 2),
        "recall@10_vs_exact": round(float(np.mean(overlap)), 3),
    }


def run(sizes: tuple[tuple[int, int], ...] = ((10_000, 384), (100_000, 128))) -> list[dict[str, Any]]:
    return [measure(n, dim) for n, dim in sizes]
