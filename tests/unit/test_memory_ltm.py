"""Long-term memory contract: one suite for every adapter (embedded store on both embedders; the
OpenSearch adapter against its local HTTP double, and a real endpoint with STEPWISE_TEST_OPENSEARCH_URL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepwise.memory.embedders import HashingEmbedder, make_embedder
from stepwise.memory.local import EmbeddedLongTermStore
from stepwise.memory.ltm import LongTermStore
from stepwise.memory.records import MemoryError_, MemoryQuery

ADAPTERS = ["embedded-minilm", "embedded-hashing", "embedded-hnsw", "opensearch-double"]
if os.environ.get("STEPWISE_TEST_OPENSEARCH_URL"):
    ADAPTERS.append("opensearch-real")


@pytest.fixture(params=ADAPTERS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LongTermStore]:
    kind = request.param
    made: LongTermStore
    if kind == "embedded-minilm":
        made = EmbeddedLongTermStore(tmp_path, embedder=make_embedder("minilm-int8"))
    elif kind == "embedded-hashing":
        made = EmbeddedLongTermStore(tmp_path, embedder=HashingEmbedder())
    elif kind == "embedded-hnsw":  # threshold 0: every search goes through the usearch index
        made = EmbeddedLongTermStore(tmp_path, embedder=make_embedder("minilm-int8"), exact_threshold=0)
    else:
        from stepwise.memory.opensearch import OpenSearchLongTermStore

        if kind == "opensearch-double":
            from tests.support.opensearch_double import serve_double

            server = serve_double()
            request.addfinalizer(server.shutdown)
            url = server.url
        else:
            url = os.environ["STEPWISE_TEST_OPENSEARCH_URL"]
        made = OpenSearchLongTermStore.from_url(url, index=f"stepwise-test-{uuid.uuid4().hex[:8]}", embedder=make_embedder("minilm-int8"))
    yield made
    made.close()


FACTS = [
    ("acme/assistant/u1", "The user prefers window seats on flights.", "preference", "seat"),
    ("acme/assistant/u1", "The user is vegetarian.", "preference", "diet"),
    ("acme/assistant/u1", "The user's dog is called Biscuit.", "semantic", None),
    ("acme/assistant/u2", "The user prefers aisle seats.", "preference", "seat"),
    ("globex/assistant/u1", "The user prefers window seats and lives in Oslo.", "preference", "seat"),
]


def seed(store: LongTermStore) -> None:
    for ns, text, strategy, key in FACTS:
        store.remember(ns.split("/")[0], ns, text, strategy=strategy, key=key, metadata={"source": "test"})  # type: ignore[arg-type]


def test_search_finds_the_relevant_memory(store: LongTermStore) -> None:
    seed(store)
    hits = store.search("acme", MemoryQuery(text="the user prefers window seats", namespaces=["acme/assistant/u1"], top_k=2))
    assert hits and hits[0].record.text == "The user prefers window seats on flights."
    assert all(h.record.namespace == "acme/assistant/u1" for h in hits)


def test_tenant_isolation(store: LongTermStore) -> None:
    seed(store)
    hits = store.search("acme", MemoryQuery(text="window seats Oslo", namespaces=["acme"], top_k=10))
    assert hits and all(h.record.tenant == "acme" for h in hits)
    assert "Oslo" not in " ".join(h.record.text for h in hits)
    with pytest.raises(MemoryError_):
        store.search("acme", MemoryQuery(text="Oslo", namespaces=["globex/assistant"], top_k=10))
    with pytest.raises(MemoryError_):
        store.remember("acme", "globex/x", "sneaky")
    assert all(r.tenant == "globex" for r in store.list("globex"))
    found = store.list("acme")
    with pytest.raises(MemoryError_):
        store.get("globex", found[0].id)  # another tenant's id reads as missing


def test_namespace_prefix_and_strategy_and_metadata_filters(store: LongTermStore) -> None:
    seed(store)
    store.remember("acme", "acme/assistant/u10", "The user prefers tea.", strategy="preference", metadata={"source": "other"})
    store.remember("acme", "acme/assistant/u1-b", "The user prefers middle seats.", strategy="preference")
    hits = store.search("acme", MemoryQuery(text="seats", namespaces=["acme/assistant/u1"], top_k=10))
    assert {h.record.namespace for h in hits} == {"acme/assistant/u1"}  # u1 does not match u10
    prefs = store.search("acme", MemoryQuery(text="food", namespaces=["acme"], strategies=["semantic"], top_k=10))
    assert [h.record.text for h in prefs] == ["The user's dog is called Biscuit."]
    meta = store.search("acme", MemoryQuery(text="drink", namespaces=["acme"], metadata={"source": "other"}, top_k=10))
    assert [h.record.text for h in meta] == ["The user prefers tea."]


def test_supersede_keeps_history_and_as_of(store: LongTermStore) -> None:
    first = store.remember("acme", "acme/a/u", "The user prefers window seats.", strategy="preference", key="seat", now=1000.0)
    second = store.remember("acme", "acme/a/u", "The user now prefers aisle seats.", strategy="preference", key="seat", now=2000.0)
    current = store.search("acme", MemoryQuery(text="seat preference", namespaces=["acme/a/u"], top_k=5))
    assert [h.record.id for h in current] == [second.id]
    then = store.search("acme", MemoryQuery(text="seat preference", namespaces=["acme/a/u"], top_k=5, as_of=1500.0))
    assert [h.record.id for h in then] == [first.id]
    chain = store.history("acme", second.id)
    assert [r.id for r in chain] == [first.id, second.id]
    assert chain[0].valid_to == 2000.0 and chain[0].superseded_by == second.id
    assert len(store.list("acme", "acme/a/u", include_history=True)) == 2 and len(store.list("acme", "acme/a/u")) == 1


def test_idempotent_remember(store: LongTermStore) -> None:
    a = store.remember("acme", "acme/a/u", "The user likes jazz.", strategy="semantic")
    b = store.remember("acme", "acme/a/u", "the user  likes jazz.", strategy="semantic")
    assert a.id == b.id and len(store.list("acme")) == 1


def test_edit_and_forget(store: LongTermStore) -> None:
    rec = store.remember("acme", "acme/a/u", "The user's name is Jon.", strategy="semantic")
    fixed = store.edit("acme", rec.id, "The user's name is John.")
    assert [r.text for r in store.history("acme", fixed.id)] == ["The user's name is Jon.", "The user's name is John."]
    assert [r.text for r in store.list("acme")] == ["The user's name is John."]
    assert store.forget("acme", fixed.id) == 2
    assert store.list("acme", include_history=True) == []
    assert store.search("acme", MemoryQuery(text="name", namespaces=["acme"])) == []


def test_ttl_expiry(store: LongTermStore) -> None:
    store.remember("acme", "acme/a/u", "Temporary code is 4411.", ttl_seconds=10, now=1000.0)
    store.remember("acme", "acme/a/u", "Permanent fact.", now=1000.0)
    assert len(store.search("acme", MemoryQuery(text="code", namespaces=["acme"], top_k=5))) == 1  # now is far past 1010
    assert store.expire("acme") == 1
    assert [r.text for r in store.list("acme", include_history=True)] == ["Permanent fact."]


def test_one_hashing_embedder_and_vectors_are_kept_per_embedder_name(tmp_path: Path) -> None:
    """The cache and memory share one embedder implementation; a store never compares vectors of two embedder
    versions: records written under an earlier algorithm's name stay out of reach of the current one."""
    from stepwise.llm import embeddings as cache_embeddings
    from stepwise.memory.records import MemoryRecord

    assert cache_embeddings.HashingEmbedder is HashingEmbedder and cache_embeddings.make_embedder("hashing").name == "hashing-v2-1024"
    assert make_embedder("hashing").name == "hashing-v2-512" and make_embedder("hashing-v2-256").dim == 256

    class EarlierHashing(HashingEmbedder):  # stands in for the pre-v2 algorithm: same dimension, other name
        def __init__(self) -> None:
            super().__init__(512)
            self.name = "hashing-512"

    old = EmbeddedLongTermStore(tmp_path, embedder=EarlierHashing())
    old.remember_many("acme", [MemoryRecord(namespace="acme/u", text="The user prefers window seats.")])
    old.close()
    current = EmbeddedLongTermStore(tmp_path, embedder=HashingEmbedder(512))
    assert current.search("acme", MemoryQuery(text="window seats", namespaces=["acme/u"])) == []
    assert current.list("acme", "acme/u") == []
    current.remember_many("acme", [MemoryRecord(namespace="acme/u", text="The user prefers window seats.")])
    (hit,) = current.search("acme", MemoryQuery(text="window seats", namespaces=["acme/u"]))
    assert hit.record.text == "The user prefers window seats."
    current.close()
