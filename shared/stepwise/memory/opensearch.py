"""Long-term memory on OpenSearch (Serverless vector collection on AWS) through ``opensearch-py``.

One index holds every tenant's records; every request carries a ``term`` filter on ``tenant`` (the
caller's, checked by the base class), so no query can reach another tenant's documents. Vectors live in
a ``knn_vector`` field (HNSW, ``cosinesimil``, faiss engine) and searches use *efficient k-NN filtering*
(the filter inside the ``knn`` clause), so ``k`` results come back even under a selective filter.

Endpoints used (and nothing else, so the data-access policy can be least-privilege): ``HEAD/PUT <index>``
(``aoss:DescribeIndex``/``aoss:CreateIndex``), ``POST _bulk`` (``aoss:WriteDocument``) and
``POST <index>/_search`` (``aoss:ReadDocument``). Documents are written without custom ``_id`` (vector
search collections generate ids); the record id is a keyword field, and updates and deletes address the
generated ``_id`` found by a ``terms`` query on it. Serverless has no ``refresh``: a write becomes
searchable within seconds.

Field encoding: open-ended times are stored as ``FOREVER`` (so "active" and "as of" are plain range
filters), metadata as ``meta`` keywords ``key=<json value>`` (equality filters without dynamic mappings).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from stepwise.memory.embedders import Embedder
from stepwise.memory.ltm import Filter, LongTermStore
from stepwise.memory.records import MemoryRecord

if TYPE_CHECKING:
    from stepwise.memory.settings import MemorySettings

FOREVER = 1e15
MAX_RESULTS = 10_000


def _meta_terms(metadata: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v, sort_keys=True)}" for k, v in metadata.items() if isinstance(v, str | int | float | bool)]


def mappings(dim: int) -> dict[str, Any]:
    keyword = {"type": "keyword"}
    return {
        "settings": {"index": {"knn": True}},
        "mappings": {
            "properties": {
                "id": keyword,
                "tenant": keyword,
                "namespace": keyword,
                "strategy": keyword,
                "key": keyword,
                "hash": keyword,
                "meta": keyword,
                "embedder": keyword,
                "valid_from": {"type": "double"},
                "valid_to": {"type": "double"},
                "expires_at": {"type": "double"},
                "doc": {"type": "object", "enabled": False},
                "vector": {
                    "type": "knn_vector",
                    "dimension": dim,
                    "method": {
                        "name": "hnsw",
                        "space_type": "cosinesimil",
                        "engine": "faiss",
                        "parameters": {"m": 16, "ef_construction": 128},
                    },
                },
            }
        },
    }


class OpenSearchLongTermStore(LongTermStore):
    """Long-term memory in an OpenSearch index (k-NN vectors)."""

    def __init__(self, client: Any, *, index: str = "stepwise-memory", embedder: Embedder | None = None) -> None:
        super().__init__(embedder)
        self.client, self.index = client, index
        self._ready = False

    @classmethod
    def from_url(
        cls, url: str, *, index: str = "stepwise-memory", embedder: Embedder | None = None, **kwargs: Any
    ) -> OpenSearchLongTermStore:
        """A client for any endpoint (``http(s)://host:port``), e.g. a self-hosted node or the test double."""
        from opensearchpy import OpenSearch

        client = OpenSearch(hosts=[url], timeout=10, max_retries=0, **kwargs)
        return cls(client, index=index, embedder=embedder)

    @classmethod
    def from_settings(cls, settings: MemorySettings, *, embedder: Embedder | None = None) -> OpenSearchLongTermStore:
        """``settings.opensearch_endpoint`` (``STEPWISE_OPENSEARCH_ENDPOINT``: a Serverless collection, SigV4 with the
        Lambda's role, service ``aoss``) or ``opensearch_url`` (``STEPWISE_OPENSEARCH_URL``, unsigned); index
        ``opensearch_index`` (``STEPWISE_OPENSEARCH_INDEX``, default stepwise-memory)."""
        index = settings.opensearch_index
        endpoint = settings.opensearch_endpoint
        if not endpoint:
            url = settings.opensearch_url
            if not url:
                raise RuntimeError(
                    "STEPWISE_MEMORY_BACKEND=opensearch needs STEPWISE_OPENSEARCH_ENDPOINT (Serverless) or STEPWISE_OPENSEARCH_URL"
                )
            return cls.from_url(url, index=index, embedder=embedder)
        import boto3

        session = boto3.Session()
        region = settings.aws_region or session.region_name or "us-east-1"
        return cls(sigv4_client(endpoint, session.get_credentials(), region), index=index, embedder=embedder)

    # -- helpers ---------------------------------------------------------------------------------
    def ensure_index(self) -> None:
        if self._ready:
            return
        if not self.client.indices.exists(index=self.index):
            self.client.indices.create(index=self.index, body=mappings(self.embedder.dim))
        self._ready = True

    def _query(self, f: Filter) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = [{"term": {"tenant": f.tenant}}, {"term": {"embedder": self.embedder.name}}]
        if f.namespaces:
            should: list[dict[str, Any]] = []
            for n in f.namespaces:
                should += [{"term": {"namespace": n}}, {"prefix": {"namespace": n + "/"}}]
            clauses.append({"bool": {"should": should, "minimum_should_match": 1}})
        if f.strategies:
            clauses.append({"terms": {"strategy": list(f.strategies)}})
        clauses += [{"term": {"meta": term}} for term in _meta_terms(f.metadata)]
        if f.key is not None:
            clauses.append({"term": {"key": f.key}})
        if f.hash is not None:
            clauses.append({"term": {"hash": f.hash}})
        if f.ids is not None:
            clauses.append({"terms": {"id": list(f.ids)}})
        clauses.append({"range": {"expires_at": {"gt": f.now}}})
        if f.as_of is not None:
            clauses += [{"range": {"valid_from": {"lte": f.as_of}}}, {"range": {"valid_to": {"gt": f.as_of}}}]
        elif f.active_only:
            clauses.append({"range": {"valid_to": {"gte": FOREVER}}})
        return {"bool": {"filter": clauses}}

    def _source(self, r: MemoryRecord, vector: np.ndarray | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": r.id,
            "tenant": r.tenant,
            "namespace": r.namespace,
            "strategy": r.strategy,
            "key": r.key,
            "hash": r.hash,
            "meta": _meta_terms(r.metadata),
            "embedder": self.embedder.name,
            "valid_from": r.valid_from,
            "valid_to": FOREVER if r.valid_to is None else r.valid_to,
            "expires_at": FOREVER if r.expires_at is None else r.expires_at,
            "doc": json.loads(r.model_dump_json()),
        }
        if vector is not None:
            body["vector"] = [float(x) for x in vector]
        return body

    def _doc_ids(self, tenant: str, ids: Sequence[str]) -> dict[str, str]:
        """record id → the document's ``_id`` (generated by the collection)."""
        if not ids:
            return {}
        body = {
            "size": len(ids),
            "_source": ["id"],
            "query": {"bool": {"filter": [{"term": {"tenant": tenant}}, {"terms": {"id": list(ids)}}]}},
        }
        found = self.client.search(index=self.index, body=body)
        return {h["_source"]["id"]: h["_id"] for h in found["hits"]["hits"]}

    def _bulk(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        result = self.client.bulk(body=lines)
        if result.get("errors"):
            failed = [i for i in result.get("items", []) if any(v.get("status", 200) >= 300 for v in i.values())]
            raise RuntimeError(f"OpenSearch bulk request failed for {len(failed)} item(s): {json.dumps(failed[:2])[:400]}")

    # -- primitives ------------------------------------------------------------------------------
    def _put(self, tenant: str, records: Sequence[MemoryRecord], vectors: np.ndarray | None) -> None:
        self.ensure_index()
        existing = self._doc_ids(tenant, [r.id for r in records])
        lines: list[dict[str, Any]] = []
        for i, r in enumerate(records):
            doc_id = existing.get(r.id)
            if vectors is None:
                if doc_id is None:
                    continue
                lines += [{"update": {"_index": self.index, "_id": doc_id}}, {"doc": self._source(r, None)}]
            else:
                action: dict[str, Any] = {"_index": self.index}
                if doc_id is not None:
                    action["_id"] = doc_id
                lines += [{"index": action}, self._source(r, vectors[i])]
        self._bulk(lines)

    def _find(self, where: Filter, limit: int) -> list[MemoryRecord]:
        self.ensure_index()
        body = {"size": min(limit, MAX_RESULTS), "_source": ["doc"], "query": self._query(where), "sort": [{"valid_from": "asc"}]}
        found = self.client.search(index=self.index, body=body)
        return [MemoryRecord.model_validate(h["_source"]["doc"]) for h in found["hits"]["hits"]]

    def _search(self, where: Filter, vector: np.ndarray, k: int) -> list[tuple[MemoryRecord, float]]:
        self.ensure_index()
        knn = {"vector": {"vector": [float(x) for x in vector], "k": k, "filter": self._query(where)}}
        body = {"size": k, "_source": ["doc"], "query": {"knn": knn}}
        found = self.client.search(index=self.index, body=body)
        # cosinesimil scores are (1 + cosine) / 2; report the cosine like the embedded store does
        return [(MemoryRecord.model_validate(h["_source"]["doc"]), 2.0 * float(h["_score"]) - 1.0) for h in found["hits"]["hits"]]

    def _delete(self, tenant: str, ids: Sequence[str]) -> None:
        self.ensure_index()
        found = self._doc_ids(tenant, ids)
        self._bulk([{"delete": {"_index": self.index, "_id": doc_id}} for doc_id in found.values()])

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


def sigv4_client(endpoint: str, credentials: Any, region: str, *, service: str = "aoss") -> Any:
    """An opensearch-py client that signs every request with SigV4 (``aoss`` for Serverless collections).
    ``endpoint`` is ``https://<id>.<region>.aoss.amazonaws.com`` (an ``http://`` URL only for tests)."""
    from urllib.parse import urlsplit

    from opensearchpy import AWSV4SignerAuth, OpenSearch, RequestsHttpConnection

    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    tls = parts.scheme == "https"
    return OpenSearch(
        hosts=[{"host": parts.hostname, "port": parts.port or (443 if tls else 80)}],
        http_auth=AWSV4SignerAuth(credentials, region, service),
        use_ssl=tls,
        verify_certs=tls,
        connection_class=RequestsHttpConnection,
        timeout=10,
        max_retries=0,  # the memory retry row (resilient.py) owns retries
    )
