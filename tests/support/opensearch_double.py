"""A local HTTP *double* of exactly the OpenSearch endpoints the memory adapter uses — not OpenSearch.

No OpenSearch node can run on this machine, so the adapter's contract suite runs against this server.
It implements, over plain dicts, the request shapes of the OpenSearch REST API (checked against the
OpenSearch docs for index creation with a ``knn_vector`` mapping, ``_bulk`` NDJSON, ``_search`` with
the query DSL's ``bool``/``term``/``terms``/``range``/``prefix`` and a ``knn`` query with an efficient
``filter``): ``HEAD /<index>``, ``PUT /<index>``, ``POST /_bulk``, ``POST /<index>/_search``. It
rejects anything else with 400/405, so an adapter change that starts using another endpoint fails the
suite. Scores follow ``cosinesimil``: ``(1 + cosine) / 2``; k-NN search here is exact. Documents get
generated ids as in a Serverless vector collection, which also refuses custom ``_id`` on create.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

REQUIRED_MAPPING = ("id", "tenant", "namespace", "vector")


class DoubleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.indexes: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def serve_double() -> DoubleServer:
    server = DoubleServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _field(doc: dict[str, Any], name: str) -> Any:
    return doc.get(name)


def matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    ((kind, body),) = query.items()
    if kind == "match_all":
        return True
    if kind == "bool":
        if not all(matches(doc, q) for q in body.get("filter", []) + body.get("must", [])):
            return False
        if any(matches(doc, q) for q in body.get("must_not", [])):
            return False
        should = body.get("should", [])
        need = body.get("minimum_should_match", 1 if should and not (body.get("filter") or body.get("must")) else 0)
        return sum(matches(doc, q) for q in should) >= int(need)
    ((field, arg),) = body.items()
    value = _field(doc, field)
    values = value if isinstance(value, list) else [value]
    if kind == "term":
        arg = arg["value"] if isinstance(arg, dict) else arg
        return arg in values
    if kind == "terms":
        return any(v in arg for v in values)
    if kind == "prefix":
        arg = arg["value"] if isinstance(arg, dict) else arg
        return any(isinstance(v, str) and v.startswith(arg) for v in values)
    if kind == "range":
        if value is None:
            return False
        ops = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
        return all(ops[op](value, bound) for op, bound in arg.items())
    raise ValueError(f"query clause {kind!r} is not implemented by the double")


class _Handler(BaseHTTPRequestHandler):
    server: DoubleServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self) -> None:
        path = self.path.split("?", 1)[0].strip("/")
        parts = path.split("/")
        self.server.requests.append((self.command, path))
        self.server.authorizations.append(self.headers.get("Authorization") or "")
        try:
            if self.command == "HEAD" and len(parts) == 1:
                return self._send(200 if parts[0] in self.server.indexes else 404)
            if self.command == "PUT" and len(parts) == 1:
                return self._create(parts[0], json.loads(self._body() or b"{}"))
            if self.command in ("POST", "PUT") and parts[-1] == "_bulk":
                return self._bulk(self._body())
            if self.command in ("POST", "GET") and len(parts) == 2 and parts[1] == "_search":
                return self._search(parts[0], json.loads(self._body() or b"{}"))
        except (ValueError, KeyError, TypeError) as exc:
            return self._send(400, {"error": {"type": "parsing_exception", "reason": str(exc)}, "status": 400})
        return self._send(405, {"error": {"type": "unsupported_by_double", "reason": f"{self.command} /{path}"}, "status": 405})

    do_HEAD = do_PUT = do_POST = do_GET = do_DELETE = _route

    def _create(self, index: str, body: dict[str, Any]) -> None:
        if index in self.server.indexes:
            return self._send(400, {"error": {"type": "resource_already_exists_exception"}, "status": 400})
        props = body["mappings"]["properties"]
        if not body["settings"]["index"]["knn"] or any(f not in props for f in REQUIRED_MAPPING):
            raise ValueError("a k-NN index needs settings.index.knn and the adapter's fields")
        vector = props["vector"]
        if vector["type"] != "knn_vector" or vector["method"]["space_type"] != "cosinesimil":
            raise ValueError("vector must be a knn_vector with space_type cosinesimil")
        self.server.indexes[index] = {"dim": int(vector["dimension"]), "docs": {}}
        self._send(200, {"acknowledged": True, "index": index})

    def _bulk(self, raw: bytes) -> None:
        lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        items, errors, i = [], False, 0
        with self.server.lock:
            while i < len(lines):
                ((op, meta),) = lines[i].items()
                index = self.server.indexes.get(meta["_index"])
                if index is None:
                    raise ValueError(f"no such index {meta['_index']!r}")
                docs = index["docs"]
                if op == "index":
                    source = lines[i + 1]
                    i += 2
                    doc_id = meta.get("_id")
                    if doc_id is not None and doc_id not in docs:  # vector collections generate ids
                        items.append({op: {"_id": doc_id, "status": 400, "error": {"type": "illegal_argument_exception"}}})
                        errors = True
                        continue
                    if len(source.get("vector") or []) != index["dim"]:
                        raise ValueError("vector dimension does not match the mapping")
                    doc_id = doc_id or uuid.uuid4().hex[:20]
                    docs[doc_id] = source
                    items.append({op: {"_id": doc_id, "status": 201, "result": "created"}})
                elif op == "update":
                    patch = lines[i + 1]["doc"]
                    i += 2
                    if meta["_id"] not in docs:
                        items.append({op: {"_id": meta["_id"], "status": 404}})
                        errors = True
                        continue
                    docs[meta["_id"]] = {**docs[meta["_id"]], **patch}
                    items.append({op: {"_id": meta["_id"], "status": 200, "result": "updated"}})
                elif op == "delete":
                    i += 1
                    found = docs.pop(meta["_id"], None)
                    items.append({op: {"_id": meta["_id"], "status": 200 if found else 404}})
                else:
                    raise ValueError(f"bulk action {op!r} is not implemented by the double")
        self._send(200, {"took": 1, "errors": errors, "items": items})

    def _search(self, index_name: str, body: dict[str, Any]) -> None:
        index = self.server.indexes.get(index_name)
        if index is None:
            return self._send(404, {"error": {"type": "index_not_found_exception"}, "status": 404})
        size = int(body.get("size", 10))
        query = body.get("query") or {"match_all": {}}
        with self.server.lock:
            docs = list(index["docs"].items())
        if "knn" in query:
            ((field, spec),) = query["knn"].items()
            flt = spec.get("filter") or {"match_all": {}}
            pool = [(i, d) for i, d in docs if matches(d, flt)]
            if pool:
                matrix = np.array([d[field] for _, d in pool], dtype=np.float32)
                vector = np.array(spec["vector"], dtype=np.float32)
                norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(vector) or 1.0)
                cos = (matrix @ vector) / np.where(norms == 0, 1.0, norms)
                order = np.argsort(-cos, kind="stable")[: min(int(spec["k"]), size)]
                hits = [(pool[j][0], pool[j][1], float((1 + cos[j]) / 2)) for j in order]
            else:
                hits = []
        else:
            hits = [(i, d, 0.0) for i, d in docs if matches(d, query)]
            for sort in reversed(body.get("sort", [])):
                ((field, order_name),) = sort.items()
                hits.sort(key=lambda h, f=field: h[1].get(f) or 0, reverse=order_name == "desc")
            hits = hits[:size]
        includes = body.get("_source")
        out = []
        for doc_id, doc, score in hits:
            source = {k: v for k, v in doc.items() if includes is None or k in includes}
            out.append({"_index": index_name, "_id": doc_id, "_score": score, "_source": source})
        self._send(200, {"took": 1, "timed_out": False, "hits": {"total": {"value": len(out), "relation": "eq"}, "hits": out}})
