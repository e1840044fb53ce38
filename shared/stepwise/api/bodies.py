"""Request bodies before routing: admitted as UTF-8 text within the JSON limits, and YAML wrapped for validation.

``admit_body`` runs before anything parses a body, so hostile input gets a 422 instead of a
RecursionError or ValueError 500; ``yaml_body`` lets a graph route take ``Content-Type:
application/yaml`` (and ``curl -d '{...}'`` without a content type) by rewriting the event the
resolver validates.
"""

from __future__ import annotations

import json
from typing import Any

from stepwise.graph import limits

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def admit_body(event: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """Bodies are UTF-8 text; a JSON body is measured (depth, integer size, lone surrogates) before any
    recursive parser sees it, so hostile input gets a 422 instead of a RecursionError or ValueError 500."""
    body = event.get("body")
    if not body:
        return event
    if event.get("isBase64Encoded"):
        import base64
        import binascii

        try:
            body = base64.b64decode(body).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise limits.LimitError("the request body is not UTF-8 text; send JSON (or YAML) encoded as UTF-8") from None
        event = {**event, "body": body, "isBase64Encoded": False}
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json") or (content_type == "" and _looks_like_json(body)):
        limits.check_json(str(body))
    return event


def yaml_body(event: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """``Content-Type: application/yaml`` on a graph route: wrap the text as ``{"yaml": ...}`` for validation."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("", "application/x-www-form-urlencoded") and _looks_like_json(event.get("body")):
        return _with_json_type(event, event.get("body"))  # `curl -d '{...}'` without a content type
    if content_type not in YAML_TYPES or event.get("httpMethod", "").upper() != "POST":
        return event
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        import base64

        body = base64.b64decode(body).decode("utf-8", errors="replace")
    return _with_json_type(event, json.dumps({"yaml": body}))


def _looks_like_json(body: Any) -> bool:
    return isinstance(body, str) and body.lstrip()[:1] in ("{", "[")


def _with_json_type(event: dict[str, Any], body: Any) -> dict[str, Any]:
    new_headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    new_headers["content-type"] = "application/json"
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    multi["content-type"] = ["application/json"]
    return {**event, "headers": new_headers, "multiValueHeaders": multi, "body": body, "isBase64Encoded": False}
