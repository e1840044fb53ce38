"""docs/openapi.json is what the code generates; the document describes every route and the auth."""

from __future__ import annotations

import json
from pathlib import Path

from stepwise.api.openapi import document, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


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
