"""The model hub: what ``Services.models`` is. One call goes budget check → cache → router (with the cost
optimizer for ``auto``/``tier:X``) → price → ledger → cache, and returns the response plus what happened
(target, attempts, cache hit) for the ``llm_call`` event.

Scripted models skip all of it unless a node asks for caching: they are free, offline and deterministic.
Valkey is only started when a cache or budget actually needs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stepwise.clock import Clock, SystemClock
from stepwise.extras import needs
from stepwise.llm.base import ChatModel, ChatRequest, ChatResponse, complete
from stepwise.llm.budget import Budgets, Ledger, MemoryLedger, ValkeyLedger
from stepwise.llm.cache import CacheMode, ResponseCache
from stepwise.llm.cost import TIERS, PriceTable, choose_tier, classify
from stepwise.llm.router import CircuitBreaker, RetryPolicy, Router
from stepwise.llm.scripted import ScriptedModel
from stepwise.llm.secrets import api_key
from stepwise.llm.settings import LLMSettings
from stepwise.llm.targets import Target, chain, is_routed, parse

log = logging.getLogger(__name__)
_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


@dataclass
class CallInfo:
    """What the hub did for one call; merged into the ``llm_call`` event."""

    target: str
    attempts: list[dict[str, Any]] = field(default_factory=list)
    cache: str | None = None
    similarity: float | None = None
    complexity: str | None = None
    tier: str | None = None
    priced: bool = True
    ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "ms": round(self.ms, 2)}
        if self.attempts and (len(self.attempts) > 1 or self.attempts[0].get("outcome") != "ok"):
            out["attempts"] = self.attempts
            out["failover"] = len({a["target"] for a in self.attempts}) > 1
        for name in ("cache", "similarity", "complexity", "tier"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if not self.priced:
            out["priced"] = False
        return out


class ModelHub:
    """The model gateway: routes each call with retries, failover, cache, budgets and cost."""

    def __init__(
        self,
        settings: LLMSettings | None = None,
        *,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
        cache: ResponseCache | None = None,
        ledger: Ledger | None = None,
        valkey: Any = None,
        models: dict[str, ChatModel] | None = None,
    ) -> None:
        self.settings = settings or LLMSettings()
        #: Where provider credentials are looked up: ``environ`` (tests), else the settings' snapshot.
        self.environ: Mapping[str, str] = environ if environ is not None else self.settings.credentials
        self.prices = PriceTable.load(self.settings.prices_file)
        self.clock = clock or SystemClock()
        self.router = Router(
            self.provider,
            clock=self.clock,
            policy=RetryPolicy(),
            breaker=CircuitBreaker(self.clock, self.settings.breaker_failures, self.settings.breaker_cooldown_seconds),
        )
        self.budgets = Budgets(self.settings.run_budget_usd, self.settings.tenant_budget_usd, dict(self.settings.tenant_budgets))
        self._cache, self._ledger, self._valkey = cache, ledger, valkey
        self._models: dict[tuple[str, str, str | None], ChatModel] = {}
        self._custom = dict(models or {})
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, **kwargs: Any) -> ModelHub:
        return cls(LLMSettings.from_env(), **kwargs)

    # -- lazily built collaborators ---------------------------------------------------------------
    def valkey(self) -> Any:
        if self._valkey is None:
            from stepwise.memory.valkey import client

            no_url = not self.settings.valkey_url and not self.environ.get("STEPWISE_VALKEY_URL")
            if no_url and self.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
                raise RuntimeError("no STEPWISE_VALKEY_URL on Lambda: point it at ElastiCache to share caches and budgets")

            self._valkey = client(self.settings.valkey_url, secret=self.settings.valkey_secret)
        return self._valkey

    @property
    def cache(self) -> ResponseCache:
        if self._cache is None:
            from stepwise.llm.embeddings import make_embedder

            self._cache = ResponseCache(
                self.valkey(),
                ttl_seconds=self.settings.cache_ttl_seconds,
                threshold=self.settings.semantic_threshold,
                embedder=make_embedder(self.settings.embedder, threads=self.settings.embed_threads, credentials=self.environ),
            )
        return self._cache

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            try:
                self._ledger = ValkeyLedger(self.valkey())
            except Exception:  # noqa: BLE001 - no Valkey available: budgets still hold within this process
                self._ledger = MemoryLedger()
        return self._ledger

    def register(self, label: str, model: ChatModel) -> None:
        """Use ``model`` for a model string (tests, custom providers)."""
        self._custom[label] = model

    def provider(self, target: Target) -> ChatModel:
        """The ChatModel behind a target, built once (SDK clients hold connection pools)."""
        if target.label in self._custom:
            return self._custom[target.label]
        key = (target.provider, target.model, target.base_url)
        with self._lock:
            found = self._models.get(key)
            if found is None:
                found = self._models[key] = self._build(target)
            return found

    def _build(self, target: Target) -> ChatModel:
        conf = self.settings.providers.get(target.provider)
        timeout = (conf.timeout_seconds if conf and conf.timeout_seconds else None) or self.settings.timeout_seconds
        env = self.environ
        if target.provider in ("openai", "local"):
            with needs("llm", "OpenAI-compatible models"):
                from stepwise.llm.providers.openai import OpenAIChat

            if target.provider == "local":
                key = env.get("STEPWISE_LOCAL_API_KEY") or "local"
                return OpenAIChat(target.model, api_key=key, base_url=target.base_url, timeout=timeout, label=f"local:{target.base_url}")
            key = api_key((conf and conf.api_key_env) or "OPENAI_API_KEY", env) or ""
            return OpenAIChat(target.model, api_key=key, base_url=conf.base_url if conf else None, timeout=timeout)
        if target.provider == "anthropic":
            with needs("llm", "Anthropic models"):
                from stepwise.llm.providers.anthropic import AnthropicChat

            key = api_key((conf and conf.api_key_env) or "ANTHROPIC_API_KEY", env) or ""
            return AnthropicChat(target.model, api_key=key, base_url=conf.base_url if conf else None, timeout=timeout)
        if target.provider == "bedrock":
            with needs("aws", "Bedrock models"):
                from stepwise.llm.providers.bedrock import BedrockChat

            return BedrockChat(
                target.model, region=conf.region if conf else None, endpoint_url=conf.base_url if conf else None, timeout=timeout
            )
        return ScriptedModel([])

    def tiers(self) -> dict[str, list[str]]:
        """Configured tiers, else every priced model whose provider has credentials here."""
        if self.settings.tiers:
            return self.settings.tiers
        env = self.environ
        usable = {p for p, var in _KEY_ENV.items() if env.get(var) or env.get(f"STEPWISE_{var}_SECRET")}
        if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE") or env.get("AWS_LAMBDA_FUNCTION_NAME"):
            usable.add("bedrock")
        return {t: [m for m in self.prices.tier_models(t) if m.split(":", 1)[0] in usable] for t in TIERS}

    # -- ModelResolver (compatible with the spine's interface) ------------------------------------
    def resolve(self, model: str, script: list[Any] | None = None) -> ChatModel:
        hub = self

        class _Bound:
            def complete(self, request: ChatRequest) -> ChatResponse:
                return hub.call(request.model_copy(update={"model": model}), script=script)[0]

        return ScriptedModel(script or []) if parse_or_none(model) == "scripted" else _Bound()

    # -- the call ----------------------------------------------------------------------------------
    def call(
        self,
        request: ChatRequest,
        *,
        script: list[Any] | None = None,
        tenant: str = "default",
        run_id: str = "",
        cache_mode: CacheMode | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> tuple[ChatResponse, CallInfo]:
        started = time.perf_counter()
        model = self.settings.model_override or request.model
        request = request.model_copy(update={"model": model})
        if parse_or_none(model) == "scripted":
            return self._scripted(request, script, tenant, cache_mode, started, on_text)
        if self.budgets.active:
            self.budgets.check(self.ledger, tenant, run_id)
        mode: CacheMode = cache_mode or self.settings.cache
        info = CallInfo(target=model)
        if is_routed(model):
            info.complexity = classify(request)
            start = model.split(":", 1)[1] if model.startswith("tier:") else None
            info.tier, candidates = choose_tier(request, self.tiers(), self.prices, start=start)
            rotate = True
        else:
            candidates, rotate = chain(model), False
        hit = self._cached(tenant, model, request, mode)
        if hit is not None:
            info.cache, info.similarity, info.ms = hit.kind, hit.similarity, (time.perf_counter() - started) * 1000
            return hit.response, info
        routed = self.router.complete(candidates, request, rotate=rotate, on_text=on_text)
        response = routed.response
        cost, info.priced = self.prices.cost(routed.target.label, response.usage)
        response = response.model_copy(update={"cost_usd": cost})
        info.target = routed.target.label
        info.attempts = [a.to_json() for a in routed.attempts]
        if cost > 0 and self.budgets.active:
            self.ledger.add(tenant, run_id, cost)
        self._store(tenant, model, request, response, mode)
        info.ms = (time.perf_counter() - started) * 1000
        return response, info

    def _scripted(
        self,
        request: ChatRequest,
        script: list[Any] | None,
        tenant: str,
        cache_mode: CacheMode | None,
        started: float,
        on_text: Callable[[str], None] | None = None,
    ) -> tuple[ChatResponse, CallInfo]:
        info = CallInfo(target="scripted")
        mode: CacheMode = cache_mode or "off"  # a script answers by turn, so caching it is opt-in
        hit = self._cached(tenant, "scripted", request, mode)
        if hit is not None:
            info.cache, info.similarity = hit.kind, hit.similarity
            info.ms = (time.perf_counter() - started) * 1000
            return hit.response, info
        response = complete(ScriptedModel(script or []), request, on_text)  # streams word by word when asked
        self._store(tenant, "scripted", request, response, mode)
        info.ms = (time.perf_counter() - started) * 1000
        return response, info

    def _cached(self, tenant: str, model: str, request: ChatRequest, mode: CacheMode) -> Any:
        if mode == "off":
            return None
        try:
            return self.cache.get(tenant, model, request, mode)
        except Exception as exc:  # noqa: BLE001 - a cache outage degrades to a miss, never fails the call
            log.warning("LLM cache unavailable (%s); calling the model", type(exc).__name__)
            return None

    def _store(self, tenant: str, model: str, request: ChatRequest, response: ChatResponse, mode: CacheMode) -> None:
        if mode == "off" or response.cached:
            return
        try:
            self.cache.put(tenant, model, request, response, mode)
        except Exception as exc:  # noqa: BLE001
            log.warning("LLM cache unavailable (%s); reply not cached", type(exc).__name__)


def parse_or_none(model: str) -> str | None:
    """The provider of a plain model string, or None for routed/chained strings."""
    if is_routed(model) or "|" in model:
        return None
    return parse(model).provider
