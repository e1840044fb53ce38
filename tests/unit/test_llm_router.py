"""Router: the seed's retry table, circuit breaker with cooldown, round-robin within a tier, failover."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stepwise.asl.interpreter import FakeClock
from stepwise.llm.base import ChatRequest, ChatResponse, StreamEvent
from stepwise.llm.errors import AllProvidersFailed, InvalidRequestError, ProviderUnavailable, RateLimitError, TransientError
from stepwise.llm.router import CircuitBreaker, Router
from stepwise.llm.targets import ModelStringError, Target, chain, is_routed, parse

REQ = ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}])


class Flaky:
    """Fails with the queued errors, then answers with its own name."""

    def __init__(self, name: str, errors: list[Exception] | None = None) -> None:
        self.name, self.errors, self.calls = name, list(errors or []), 0

    def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ChatResponse(content=self.name, model=self.name)


def router_for(models: dict[str, Flaky], clock: FakeClock, **kw: Any) -> Router:
    return Router(lambda t: models[t.label], clock=clock, breaker=CircuitBreaker(clock, **kw) if kw else None)


def test_model_strings_parse_to_targets() -> None:
    assert parse("openai:gpt-4o-mini") == Target("openai", "gpt-4o-mini")
    assert parse("bedrock:anthropic.claude-3-haiku-20240307-v1:0").model == "anthropic.claude-3-haiku-20240307-v1:0"
    local = parse("local:http://127.0.0.1:11434/v1#llama3")
    assert (local.provider, local.base_url, local.model, local.breaker_key) == (
        "local",
        "http://127.0.0.1:11434/v1",
        "llama3",
        "local:http://127.0.0.1:11434/v1",
    )
    assert parse("scripted").provider == "scripted"
    assert chain("openai:a | anthropic:b") == ["openai:a", "anthropic:b"]
    assert is_routed("auto") and is_routed("tier:large") and not is_routed("openai:x")
    with pytest.raises(ModelStringError, match=r"local:http://127\.0\.0\.1:11434/v1#llama3"):
        parse("local:llama3")
    with pytest.raises(ModelStringError, match="unknown model string"):
        parse("gpt4")


def test_llm_errors_retry_3x_exponential_then_fail_over() -> None:
    clock = FakeClock()
    a = Flaky("openai:a", [TransientError("500")] * 4)
    b = Flaky("anthropic:b")
    routed = router_for({"openai:a": a, "anthropic:b": b}, clock).complete(["openai:a", "anthropic:b"], REQ)
    assert routed.response.content == "anthropic:b"
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert a.calls == 4 and b.calls == 1
    assert [x.outcome for x in routed.attempts] == ["error"] * 4 + ["ok"]
    assert routed.failover and routed.target.label == "anthropic:b"


def test_transient_error_recovers_on_the_same_provider() -> None:
    clock = FakeClock()
    a = Flaky("openai:a", [TransientError("timeout")])
    routed = router_for({"openai:a": a}, clock).complete(["openai:a"], REQ)
    assert routed.response.content == "openai:a" and clock.sleeps == [1.0] and not routed.failover


def test_rate_limit_honours_retry_after_three_times_then_fails_clearly() -> None:
    clock = FakeClock()
    a = Flaky(
        "openai:a",
        [
            RateLimitError("429", retry_after=7.0),
            RateLimitError("429", retry_after=None),
            RateLimitError("429", retry_after=3.0),
            RateLimitError("429", retry_after=3.0),
        ],
    )
    b = Flaky("anthropic:b")
    with pytest.raises(RateLimitError, match="still rate-limiting after 3 retries honouring Retry-After"):
        router_for({"openai:a": a, "anthropic:b": b}, clock).complete(["openai:a", "anthropic:b"], REQ)
    assert clock.sleeps == [7.0, 2.0, 3.0]  # Retry-After when given, else the 1/2/4 schedule
    assert b.calls == 0


def test_invalid_request_is_neither_retried_nor_failed_over() -> None:
    clock = FakeClock()
    a, b = Flaky("openai:a", [InvalidRequestError("400 bad schema")]), Flaky("anthropic:b")
    with pytest.raises(InvalidRequestError):
        router_for({"openai:a": a, "anthropic:b": b}, clock).complete(["openai:a", "anthropic:b"], REQ)
    assert a.calls == 1 and b.calls == 0 and clock.sleeps == []


def test_unavailable_provider_trips_its_breaker_and_fails_over_without_waiting() -> None:
    clock = FakeClock()
    a, b = Flaky("openai:a", [ProviderUnavailable("401")]), Flaky("anthropic:b")
    router = router_for({"openai:a": a, "anthropic:b": b}, clock)
    assert router.complete(["openai:a", "anthropic:b"], REQ).response.content == "anthropic:b"
    assert clock.sleeps == [] and router.breaker.status("openai") == "open"
    # while open, the provider is skipped outright
    routed = router.complete(["openai:a", "anthropic:b"], REQ)
    assert a.calls == 1 and routed.attempts[0].outcome == "skipped"


def test_breaker_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock, threshold=3, cooldown=30)
    for _ in range(3):
        assert breaker.allow("openai")
        breaker.failure("openai")
    assert breaker.status("openai") == "open" and not breaker.allow("openai")
    clock.t += 29
    assert not breaker.allow("openai")
    clock.t += 1
    assert breaker.status("openai") == "half_open"
    assert breaker.allow("openai")  # one probe...
    assert not breaker.allow("openai")  # ...only one
    breaker.failure("openai")  # the probe failed: open again for a full cooldown
    assert breaker.status("openai") == "open"
    clock.t += 30
    assert breaker.allow("openai")
    breaker.success("openai")
    assert breaker.status("openai") == "closed" and breaker.allow("openai")


def test_breaker_cuts_retries_short_when_it_opens_mid_way() -> None:
    clock = FakeClock()
    a, b = Flaky("openai:a", [TransientError("500")] * 10), Flaky("anthropic:b")
    router = router_for({"openai:a": a, "anthropic:b": b}, clock, threshold=2, cooldown=60)
    assert router.complete(["openai:a", "anthropic:b"], REQ).response.content == "anthropic:b"
    assert a.calls == 2 and clock.sleeps == [1.0]


def test_all_circuits_open_fails_with_every_reason() -> None:
    clock = FakeClock()
    a = Flaky("openai:a", [TransientError("boom")] * 4)
    with pytest.raises(AllProvidersFailed, match=r"openai:a: error \(boom\)"):
        router_for({"openai:a": a}, clock).complete(["openai:a"], REQ)


def test_round_robin_among_the_healthy_providers_of_a_tier() -> None:
    clock = FakeClock()
    models = {k: Flaky(k) for k in ("openai:a", "anthropic:b", "bedrock:c")}
    router = router_for(models, clock)
    tier = ["openai:a", "anthropic:b", "bedrock:c"]
    served = [router.complete(tier, REQ, rotate=True).response.content for _ in range(6)]
    assert served == tier * 2
    router.breaker.failure("anthropic", trip=True)
    served = [router.complete(tier, REQ, rotate=True).response.content for _ in range(4)]
    assert "anthropic:b" not in served and set(served) == {"openai:a", "bedrock:c"}


def test_streaming_models_stream_through_the_router() -> None:
    class Streamer(Flaky):
        def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
            yield StreamEvent(type="text", text="he")
            yield StreamEvent(type="text", text="llo")
            yield StreamEvent(type="done", response=ChatResponse(content="hello"))

    clock = FakeClock()
    deltas: list[str] = []
    routed = router_for({"openai:s": Streamer("openai:s")}, clock).complete(["openai:s"], REQ, on_text=deltas.append)
    assert routed.response.content == "hello" and deltas == ["he", "llo"]


def test_health_checks_open_or_close_circuits() -> None:
    class Probe(Flaky):
        ok = False

        def health(self) -> bool:
            return self.ok

    clock = FakeClock()
    probe = Probe("openai:p")
    router = router_for({"openai:p": probe}, clock)
    assert router.check_health(["openai:p"]) == {"openai:p": False}
    assert router.breaker.status("openai") == "open"
    probe.ok = True
    assert router.check_health(["openai:p"]) == {"openai:p": True}
    assert router.breaker.status("openai") == "closed"
