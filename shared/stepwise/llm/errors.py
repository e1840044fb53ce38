"""Provider failures, normalised so the router can apply the seed's retry table to any SDK.

``TransientError`` (5xx, connection reset, timeout): retry 3× exponential 1s/2s/4s, then fail over.
``RateLimitError`` (429): retry 3× honouring Retry-After, then fail clearly.
``ProviderUnavailable`` (auth, missing key, model not found): no retry; fail over to the next provider.
``InvalidRequestError`` (400): neither retry nor fail over; the request itself is wrong.
"""

from __future__ import annotations


class LLMError(Exception):
    """Base of every LLM-layer error. ``error_name`` is what Step Functions sees in a Catch."""

    error_name = "Stepwise.LLMError"

    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider


class TransientError(LLMError):
    pass


class RateLimitError(LLMError):
    error_name = "Stepwise.RateLimited"

    def __init__(self, message: str, *, provider: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class ProviderUnavailable(LLMError):
    pass


class InvalidRequestError(LLMError):
    error_name = "Stepwise.InvalidLLMRequest"


class AllProvidersFailed(LLMError):
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
