"""The API's error answers: ``{"error": {"code", "message", "details"?}}`` with an HTTP status.

- ``ApiError`` is what a route raises; the resolver's exception handler (``stepwise.api.app``) answers
  it with ``error_response``;
- ``proxy_error`` is the same body as a proxy response built without the resolver (auth, size and
  rate-limit refusals, which happen before routing);
- ``documented`` is the ``responses=`` table a route hands to Powertools for its OpenAPI entry (its
  success statuses and the errors it can answer);
- ``problem_details`` turns a graph ``Problem`` into one entry of ``details``.

This module imports nothing of the API but its models, so every route and the facade may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response

from stepwise.api import models as m
from stepwise.errors import StepwiseError
from stepwise.store import thread_names_in


class ApiError(StepwiseError):
    """An error answered as ``{"error": {"code", "message", "details"?}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> Response[str]:
    body = m.ErrorBody(error=m.ErrorDetail(code=code, message=thread_names_in(message), details=details))
    return Response(status_code=status, content_type="application/json", body=body.model_dump_json(exclude_none=True), headers=headers)


def proxy_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A proxy response built without the resolver (for auth, size and rate-limit failures)."""
    body = m.ErrorBody(error=m.ErrorDetail(code=code, message=thread_names_in(message))).model_dump_json(exclude_none=True)
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": body,
        "isBase64Encoded": False,
    }


#: What every authenticated route can answer, and what a route that reads a body can answer besides.
COMMON_ERRORS: dict[int, str] = {
    401: "missing, unknown or revoked API key",
    404: "no such resource for this tenant",
    422: "invalid body or parameter",
    429: "rate limited (a limiter plugged into the seam, or the usage plan on AWS); Retry-After says when to retry",
}
BODY_ERRORS: dict[int, str] = {
    413: "the body is over STEPWISE_API_MAX_BODY_BYTES",
    415: "the body is neither JSON (application/json) nor, to register a graph, YAML (application/yaml)",
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"model": m.ErrorBody}}}


def documented(*errors: int, ok: int | Mapping[int, str] = 200, body: bool = False) -> dict[int, Any]:
    """A route's documented answers (its ``responses=``): its success statuses, the common errors (and those
    of a route that reads a body, ``body``), and the other ``errors`` it can answer.

    Given ``responses=``, Powertools adds no success response of its own, so ``ok`` (a status, or statuses with
    what each means) lists them; without ``content`` Powertools describes each with the schema of the route's
    return annotation (``-> m.Run``, ``-> Response[m.Run]``)."""
    successes = {ok: HTTPStatus(ok).phrase} if isinstance(ok, int) else dict(ok)
    out: dict[int, Any] = {status: {"description": text} for status, text in successes.items()}
    for status, text in {**COMMON_ERRORS, **(BODY_ERRORS if body else {})}.items():
        out[status] = _error_response(text)
    for status in errors:
        out.setdefault(status, _error_response(HTTPStatus(status).phrase))
    return dict(sorted(out.items()))


def problem_details(p: Any) -> dict[str, Any]:
    """One ``details`` entry for a graph problem (``stepwise.graph.errors.Problem``): its set fields."""
    return {k: v for k, v in {"message": p.message, "fix": p.fix, "node": p.node, "line": p.line}.items() if v is not None}
