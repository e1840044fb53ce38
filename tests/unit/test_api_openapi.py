"""docs/openapi.json is what the code generates; the document describes every route and the auth."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stepwise.api.openapi import document, render

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "openapi.json"


def test_committed_document_matches_the_code() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "regenerate: python -m stepwise.api.openapi > docs/openapi.json"


def test_document_lists_routes_schemas_and_security() -> None:
    doc = document()
    routes = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert routes >= {
        ("POST", "/agents"),
        ("GET", "/agents"),
        ("GET", "/agents/{agent_id}"),
        ("POST", "/agents/{agent_id}/versions"),
        ("POST", "/agents/{agent_id}/execute"),
        ("GET", "/runs/{run_id}"),
        ("GET", "/runs/{run_id}/events"),
        ("POST", "/runs/{run_id}/resume"),
        ("POST", "/runs/{run_id}/cancel"),
        ("GET", "/threads/{thread_id}/state"),
        ("POST", "/threads/{thread_id}/fork"),
    }
    assert doc["components"]["securitySchemes"]["apiKey"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    schemas = doc["components"]["schemas"]
    assert {"ExecuteAgent", "Run", "ErrorBody", "RegisterAgent"} <= set(schemas)
    assert schemas["ExecuteAgent"]["additionalProperties"] is False
    assert "404" in doc["paths"]["/runs/{run_id}"]["get"]["responses"]
    json.dumps(doc)


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_every_operation_documents_its_success_with_its_model_and_the_common_errors() -> None:
    """With ``responses=`` given, Powertools listed no success response: only /health and the stream had a 2xx."""
    doc = document()
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for method, path, operation in _operations(doc):
        responses = operation["responses"]
        successes = {code: r for code, r in responses.items() if code.startswith("2")}
        assert successes, f"{method} {path} documents no success"
        if path != "/runs/{run_id}/stream":
            for code, response in successes.items():
                assert response["content"]["application/json"]["schema"]["$ref"].startswith("#/components/schemas/"), (method, path, code)
        if path == "/health":
            continue
        for code in ("401", "404", "422", "429"):
            assert responses[code]["content"]["application/json"]["schema"] == error, (method, path, code)
        if "requestBody" in operation:
            for code in ("413", "415"):
                assert responses[code]["content"]["application/json"]["schema"] == error, (method, path, code)


def test_created_accepted_and_forbidden_are_documented_where_the_routes_answer_them() -> None:
    paths = document()["paths"]

    def schemas(path: str, method: str) -> dict[str, str]:
        responses = paths[path][method]["responses"]
        return {code: r["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1] for code, r in responses.items()}

    assert schemas("/agents", "post").items() >= {"201": "VersionResult", "403": "ErrorBody", "409": "ErrorBody"}.items()
    assert "200" not in schemas("/agents", "post")
    assert schemas("/agents/{agent_id}/versions", "post").items() >= {"200": "VersionResult", "201": "VersionResult"}.items()
    assert schemas("/agents/{agent_id}/execute", "post").items() >= {"200": "Run", "202": "Run", "403": "ErrorBody"}.items()
    assert schemas("/threads/{thread_id}/fork", "post")["201"] == "Forked"
    assert schemas("/memories", "post")["201"] == "MemoryRecord"
    assert schemas("/runs", "get")["403"] == "ErrorBody"
    assert schemas("/tenants/{tenant_id}/roles/{role}", "put")["403"] == "ErrorBody"


def test_every_error_code_the_api_answers_is_in_the_docs_error_table() -> None:
    """A code added in the source without a row in docs/api.md's table would reach clients undocumented."""
    source = "\n".join(p.read_text() for p in (ROOT / "shared" / "stepwise" / "api").rglob("*.py"))
    codes = set(re.findall(r'(?:ApiError|proxy_error|error_response)\(\s*\d{3},\s*"([a-z_]+)"', source))
    codes |= set(re.findall(r'_error\(\s*"([a-z_]+)"', source))  # stepwise serve's own answers
    table = (ROOT / "docs" / "api.md").read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    assert len(codes) > 20
    assert sorted(c for c in codes if f"`{c}`" not in table) == []
