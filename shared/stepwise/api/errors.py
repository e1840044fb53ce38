"""The API's error answers: ``{"error": {"code", "message", "details"?}}`` with an HTTP status.

- ``ApiError`` is what a route raises; the resolver's exception handler (``stepwise.api.app``) answers
  it with ``error_response``;
- ``proxy_error`` is the same body as a proxy response built without the resolver (auth, size and
  rate-limit refusals, which happen before routing);
- ``documented_errors`` is the ``responses=`` table a route hands to Powertools for its OpenAPI entry;
- ``problem_details`` turns a graph ``Problem`` into one entry of ``details``.

This module imports nothing of the API but its models, so every route and the facade may import it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response

from stepwise.api import models as m
from stepwise.errors import StepwiseError


class ApiError(StepwiseError):
    """An error answered as ``{"error": {"code", "message", "details"?}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> Response[str]:
    body = m.ErrorBody(error=m.ErrorDetail(code=code, message=message, details=details))
    return Response(status_code=status, content_type="application/json", body=body.model_dump_json(exclude_none=True), headers=headers)


def proxy_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A proxy response built without the resolver (for auth, size and rate-limit failures)."""
    body = m.ErrorBody(error=m.ErrorDetail(code=code, message=message)).model_dump_json(exclude_none=True)
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": body,
        "isBase64Encoded": False,
    }


ERRORS: dict[int, Any] = {
    code: {"description": text, "content": {"application/json": {"model": m.ErrorBody}}}
    for code, text in (
        (401, "missing, unknown or revoked API key"),
        (404, "no such resource for this tenant"),
        (422, "invalid body or parameter"),
    )
}


def documented_errors(*extra: int) -> dict[int, Any]:
    """A route's documented error answers: 401, 404 and 422, plus the ``extra`` statuses it can answer."""
    out = dict(ERRORS)
    for code in extra:
        out[code] = {"description": HTTPStatus(code).phrase, "content": {"application/json": {"model": m.ErrorBody}}}
    return out


def problem_details(p: Any) -> dict[str, Any]:
    """One ``details`` entry for a graph problem (``stepwise.graph.errors.Problem``): its set fields."""
    return {k: v for k, v in {"message": p.message, "fix": p.fix, "node": p.node, "line": p.line}.items() if v is not None}
