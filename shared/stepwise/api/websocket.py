"""The WebSocket API's routes, thin until the gateway issue adds streaming.

``$connect`` authenticates like the REST API (``x-api-key`` / ``Authorization: Bearer`` header, or
``?api_key=`` for browsers, which cannot set headers on a WebSocket) and refuses the connection with
401 otherwise. ``$disconnect`` acknowledges. Messages get a JSON answer pointing at the REST API until
streaming lands (its seam: ``hooks.EventSink`` and the events table's DynamoDB stream).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from stepwise.api.auth import AuthError

if TYPE_CHECKING:
    from stepwise.api.app import StepwiseApi


def is_websocket(event: dict[str, Any]) -> bool:
    context = event.get("requestContext") or {}
    return "connectionId" in context and "eventType" in context


def handle(api: StepwiseApi, event: dict[str, Any]) -> dict[str, Any]:
    kind = event["requestContext"]["eventType"]
    if kind == "CONNECT":
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        key = (event.get("queryStringParameters") or {}).get("api_key")
        if key and "x-api-key" not in headers:
            headers["x-api-key"] = key
        try:
            principal = api.authenticate(headers, event)
        except AuthError:
            principal = None
        return {"statusCode": 200 if principal is not None else 401}
    if kind == "DISCONNECT":
        return {"statusCode": 200}
    message = {
        "error": {"code": "not_implemented", "message": "streaming comes with the gateway issue; poll GET /runs/{id}/events meanwhile"}
    }
    return {"statusCode": 200, "body": json.dumps(message)}
