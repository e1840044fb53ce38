"""Provider failures, normalised so the router can apply one retry table to any SDK.

``TransientError`` (5xx, connection reset, timeout): retry 3× exponential 1s/2s/4s, then fail over.
``RateLimitError`` (429): retry 3× honouring Retry-After, then fail clearly.
``ProviderUnavailable`` (auth, missing key, model not found): no retry; fail over to the next provider.
``InvalidRequestError`` (400): neither retry nor fail over; the request itself is wrong.
"""

from __future__ import annotations

from types import ModuleType

from stepwise.errors import TaskError


class LLMError(TaskError):
    """Base of every LLM-layer error. ``error_name`` is what Step Functions sees in a Catch."""

    error_name = "Stepwise.LLMError"

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider


class TransientError(LLMError):
    """A 5xx, reset or timeout: retried, then failed over."""


class RateLimitError(LLMError):
    """HTTP 429: retried honouring Retry-After."""

    error_name = "Stepwise.RateLimited"

    def __init__(self, message: str, *, provider: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class ProviderUnavailable(LLMError):
    """Auth, missing key or unknown model: not retried; the router fails over."""


class InvalidRequestError(LLMError):
    """HTTP 400: the request itself is wrong; neither retried nor failed over."""

    error_name = "Stepwise.InvalidLLMRequest"


class AllProvidersFailed(LLMError):
    """Every provider in the route failed; the message lists why."""

    error_name = "Stepwise.AllProvidersFailed"


class BudgetExceededError(LLMError):
    """A run or tenant spent its budget: the run stops with this message instead of spending more."""

    error_name = "Stepwise.BudgetExceeded"


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header (seconds; HTTP dates are treated as unknown)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def from_sdk_error(
    exc: Exception, sdk: ModuleType, label: str, *, transient_statuses: tuple[int, ...] = (408, 409), detail: str = ""
) -> LLMError:
    """Normalise an error of the ``openai`` or ``anthropic`` SDK: both are generated from the same template
    and share these exception classes, so one mapping serves both."""
    if isinstance(exc, sdk.RateLimitError):
        header = exc.response.headers.get("retry-after") if exc.response is not None else None
        return RateLimitError(f"{label} rate-limited the request (HTTP 429)", provider=label, retry_after=retry_after_seconds(header))
    if isinstance(exc, sdk.APITimeoutError):
        return TransientError(f"{label} timed out", provider=label)
    if isinstance(exc, sdk.APIConnectionError):
        return TransientError(f"{label} unreachable: {type(exc).__name__}", provider=label)
    if isinstance(exc, sdk.AuthenticationError | sdk.PermissionDeniedError | sdk.NotFoundError):
        return ProviderUnavailable(
            f"{label} refused the request (HTTP {exc.status_code}): check the API key and model name", provider=label
        )
    if isinstance(exc, sdk.APIStatusError):
        if exc.status_code >= 500 or exc.status_code in transient_statuses:
            return TransientError(f"{label} failed with HTTP {exc.status_code}", provider=label)
        return InvalidRequestError(f"{label} rejected the request (HTTP {exc.status_code}): {detail or str(exc)[:300]}", provider=label)
    return TransientError(f"{label} failed: {type(exc).__name__}", provider=label)
