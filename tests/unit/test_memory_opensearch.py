"""The OpenSearch adapter's wire use: only the documented endpoints, SigV4 for the ``aoss`` service, and an
outage that degrades to cached/empty. (Its behaviour is covered by the shared contract in test_memory_ltm.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.credentials import Credentials
from tests.support.opensearch_double import DoubleServer, serve_double

from stepwise.memory.embedders import HashingEmbedder
from stepwise.memory.opensearch import OpenSearchLongTermStore, sigv4_client
from stepwise.memory.records import MemoryQuery
from stepwise.memory.resilient import ResilientMemory


@pytest.fixture
def double() -> Iterator[DoubleServer]:
    server = serve_double()
    yield server
    server.shutdown()


def test_only_the_documented_endpoints_are_used(double: DoubleServer) -> None:
    store = OpenSearchLongTermStore.from_url(double.url, index="mem", embedder=HashingEmbedder())
    rec = store.remember("acme", "acme/a/u", "The user prefers tea.", strategy="preference", key="pref:drink")
    store.remember("acme", "acme/a/u", "The user prefers coffee.", strategy="preference", key="pref:drink")
    store.search("acme", MemoryQuery(text="drink", namespaces=["acme"]))
    store.forget("acme", rec.id)
    used = {(method, path.replace("mem", "<index>")) for method, path in double.requests}
    assert used <= {("HEAD", "<index>"), ("PUT", "<index>"), ("POST", "_bulk"), ("POST", "<index>/_search")}
    assert ("POST", "_bulk") in used and ("PUT", "<index>") in used


def test_requests_are_signed_with_sigv4_for_aoss(double: DoubleServer) -> None:
    creds = Credentials("AKIDEXAMPLE", "secret", "token")
    store = OpenSearchLongTermStore(sigv4_client(double.url, creds, "eu-west-1"), index="mem", embedder=HashingEmbedder())
    store.remember("acme", "acme/a/u", "The user prefers tea.")
    assert double.authorizations and all(a.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") for a in double.authorizations)
    assert all("/eu-west-1/aoss/aws4_request" in a for a in double.authorizations)


def test_endpoint_outage_degrades_to_cached_then_empty(double: DoubleServer) -> None:
    store = OpenSearchLongTermStore.from_url(double.url, index="mem", embedder=HashingEmbedder())
    store.remember("acme", "acme/a/u", "The user prefers tea.")
    waits: list[float] = []
    memory = ResilientMemory(store, sleep=waits.append)
    query = MemoryQuery(text="tea", namespaces=["acme"])
    live = memory.search("acme", query)
    double.shutdown()
    double.server_close()  # the endpoint is gone: connections are refused
    assert memory.search("acme", query) == live and memory.last is not None and memory.last.source == "cached"
    assert memory.search("acme", MemoryQuery(text="coffee", namespaces=["acme"])) == [] and memory.last.source == "empty"
    assert waits == [0.1] * 4
