"""Recall@5 on the shipped labelled set: the shipped embedder vs the hashing fallback, through the real store."""

from __future__ import annotations

import tempfile
import time
from typing import Any

from bench.memory.dataset import load
from stepwise.memory.embedders import Embedder, HashingEmbedder, MiniLMInt8Embedder
from stepwise.memory.local import EmbeddedLongTermStore
from stepwise.memory.records import MemoryQuery, MemoryRecord


def evaluate(embedder: Embedder, k: int = 5) -> dict[str, Any]:
    data = load()
    truths = {f["text"] for f in data["facts"]}
    docs = [(f["id"], f["text"], "fact") for f in data["facts"]]
    docs += [(d["id"], d["text"], d["kind"]) for d in data["distractors"] if d["text"] not in truths]
    with tempfile.TemporaryDirectory() as home:
        store = EmbeddedLongTermStore(home, embedder=embedder)
        started = time.perf_counter()
        records = [MemoryRecord(namespace="bench/facts", text=text, metadata={"doc": doc_id, "kind": kind}) for doc_id, text, kind in docs]
        store.remember_many("bench", records)
        build_s = time.perf_counter() - started
        hits5 = hits1 = distracted = in_top = 0
        started = time.perf_counter()
        for q in data["questions"]:
            found = store.search("bench", MemoryQuery(text=q["text"], namespaces=["bench"], top_k=k))
            ids = [h.record.metadata["doc"] for h in found]
            hits5 += q["answer"] in ids
            hits1 += bool(ids) and ids[0] == q["answer"]
            rank = ids.index(q["answer"]) if q["answer"] in ids else k
            in_top += any(i.startswith(("neg:", "swap:")) and i.endswith(q["answer"]) for i in ids)
            distracted += any(i in (f"neg:{q['answer']}", f"swap:{q['answer']}") for i in ids[:rank])
        query_s = time.perf_counter() - started
        store.close()
    n = len(data["questions"])
    return {
        "embedder": embedder.name,
        "corpus": len(docs),
        "questions": n,
        f"recall@{k}": round(hits5 / n, 3),
        "recall@1": round(hits1 / n, 3),
        "distractor_ranked_above_answer": round(distracted / n, 3),
        "own_distractor_in_top5": round(in_top / n, 3),
        "index_s": round(build_s, 2),
        "query_ms": round(query_s / n * 1000, 2),
    }


def run() -> dict[str, Any]:
    shipped = evaluate(MiniLMInt8Embedder())
    fallback = evaluate(HashingEmbedder())
    return {
        "shipped": shipped,
        "hashing": fallback,
        "recall_ratio": round(shipped["recall@5"] / max(fallback["recall@5"], 1e-9), 2),
    }
