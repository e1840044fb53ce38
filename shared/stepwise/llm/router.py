"""The router: health, a circuit breaker per provider, round-robin within a tier, retries, failover.

Retry table: an LLM error is retried 3× with exponential waits 1s/2s/4s, then the next
provider is tried; a rate limit is retried 3× honouring Retry-After, then the call fails clearly. The
clock is injectable (``now``/``sleep``) so tests never really wait.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stepwise.clock import Clock, SystemClock
from stepwise.llm.base import ChatModel, ChatRequest, ChatResponse, complete
from stepwise.llm.errors import (
    AllProvidersFailed,
    InvalidRequestError,
    LLMError,
    ProviderUnavailable,
    RateLimitError,
    TransientError,
)
from stepwise.llm.targets import Target, parse


@dataclass
class RetryPolicy:
    """How long to wait between retries of errors and of rate limits."""

    llm_delays: tuple[float, ...] = (1.0, 2.0, 4.0)
    rate_limit_delays: tuple[float, ...] = (1.0, 2.0, 4.0)  # used when no Retry-After header came back
    max_retry_after: float = 60.0


@dataclass
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    """Per provider: ``threshold`` consecutive failures open the circuit for ``cooldown`` seconds; then one
    probe call is let through (half-open) and its outcome closes or re-opens it."""

    def __init__(self, clock: Clock, threshold: int = 5, cooldown: float = 30.0) -> None:
        self.clock, self.threshold, self.cooldown = clock, threshold, cooldown
        self._state: dict[str, _Breaker] = {}
        self._lock = threading.Lock()

    def status(self, key: str) -> str:
        b = self._state.get(key)
        if b is None or b.opened_at is None:
            return "closed"
        return "half_open" if self.clock.now() - b.opened_at >= self.cooldown else "open"

    def allow(self, key: str) -> bool:
        with self._lock:
            b = self._state.setdefault(key, _Breaker())
            if b.opened_at is None:
                return True
            if self.clock.now() - b.opened_at < self.cooldown or b.probing:
                return False
            b.probing = True  # half-open: exactly one probe
            return True

    def success(self, key: str) -> None:
        with self._lock:
            self._state[key] = _Breaker()

    def failure(self, key: str, *, trip: bool = False) -> None:
        with self._lock:
            b = self._state.setdefault(key, _Breaker())
            b.failures += 1
            if trip or b.failures >= self.threshold or b.probing:
                b.opened_at, b.probing = self.clock.now(), False


@dataclass
class Attempt:
    """One try of one target, and how it ended."""

    target: str
    outcome: str  # ok | error | rate_limited | unavailable | skipped
    error: str | None = None
    waited: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "outcome": self.outcome}
        if self.error:
            out["error"] = self.error
        if self.waited:
            out["waited"] = self.waited
        return out


@dataclass
class Routed:
    """A response and the target and attempts that produced it."""

    response: ChatResponse
    target: Target
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def failover(self) -> bool:
        return len({a.target for a in self.attempts}) > 1


class Router:
    """Tries a request's targets in order, with retries, until one answers."""

    def __init__(
        self,
        factory: Callable[[Target], ChatModel],
        *,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.factory = factory
        self.clock = clock or SystemClock()
        self.policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(self.clock)
        self._rr: dict[tuple[str, ...], itertools.count[int]] = {}
        self._lock = threading.Lock()

    def order(self, candidates: list[str], *, rotate: bool) -> list[str]:
        """Round-robin start among the candidates (a tier); a failover chain keeps its order."""
        if not rotate or len(candidates) < 2:
            return list(candidates)
        with self._lock:
            n = next(self._rr.setdefault(tuple(candidates), itertools.count()))
        k = n % len(candidates)
        return candidates[k:] + candidates[:k]

    def complete(
        self, candidates: list[str], request: ChatRequest, *, rotate: bool = False, on_text: Callable[[str], None] | None = None
    ) -> Routed:
        attempts: list[Attempt] = []
        for model in self.order(candidates, rotate=rotate):
            target = parse(model)
            if not self.breaker.allow(target.breaker_key):
                attempts.append(Attempt(target.label, "skipped", f"circuit open for {target.breaker_key}"))
                continue
            response = self._try(target, request, attempts, on_text)
            if response is not None:
                return Routed(response, target, attempts)
        summary = "; ".join(f"{a.target}: {a.outcome}{' (' + a.error + ')' if a.error else ''}" for a in attempts)
        raise AllProvidersFailed(f"every provider failed for {request.model!r}: {summary}")

    def _try(
        self, target: Target, request: ChatRequest, attempts: list[Attempt], on_text: Callable[[str], None] | None
    ) -> ChatResponse | None:
        """Retries on one provider; None means "fail over"."""
        model = self.factory(target)
        errors = limited = 0
        waited = 0.0
        while True:
            try:
                response = complete(model, request, on_text)
            except RateLimitError as exc:
                limited += 1
                attempts.append(Attempt(target.label, "rate_limited", str(exc), waited))
                if limited > len(self.policy.rate_limit_delays):
                    raise RateLimitError(
                        f"{target.label} is still rate-limiting after {limited - 1} retries honouring Retry-After; "
                        "wait and resume the run, lower concurrency, or add a fallback model (a|b)",
                        provider=target.label,
                        retry_after=exc.retry_after,
                    ) from exc
                waited = min(
                    exc.retry_after if exc.retry_after is not None else self.policy.rate_limit_delays[limited - 1],
                    self.policy.max_retry_after,
                )
                self.clock.sleep(waited)
                continue
            except ProviderUnavailable as exc:
                self.breaker.failure(target.breaker_key, trip=True)
                attempts.append(Attempt(target.label, "unavailable", str(exc), waited))
                return None
            except InvalidRequestError:
                raise
            except (TransientError, LLMError) as exc:
                self.breaker.failure(target.breaker_key)
                errors += 1
                attempts.append(Attempt(target.label, "error", str(exc), waited))
                if errors > len(self.policy.llm_delays) or self.breaker.status(target.breaker_key) != "closed":
                    return None
                waited = self.policy.llm_delays[errors - 1]
                self.clock.sleep(waited)
                continue
            self.breaker.success(target.breaker_key)
            attempts.append(Attempt(target.label, "ok", None, waited))
            return response

    def check_health(self, models: list[str]) -> dict[str, bool]:
        """Active health check: providers that offer ``health()`` are probed; a failed probe opens the circuit."""
        out: dict[str, bool] = {}
        for model in models:
            target = parse(model)
            probe = getattr(self.factory(target), "health", None)
            ok = bool(probe()) if callable(probe) else self.breaker.status(target.breaker_key) == "closed"
            if callable(probe):
                if ok:
                    self.breaker.success(target.breaker_key)
                else:
                    self.breaker.failure(target.breaker_key, trip=True)
            out[target.label] = ok
        return out
