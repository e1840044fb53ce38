"""Cost optimizer: price every call from a price table (data, not code), classify a task's complexity,
and pick the cheapest tier that fits. Budgets live in ``budget.py``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from stepwise.llm.base import ChatRequest, Usage

PRICES_FILE = Path(__file__).with_name("prices.yaml")
TIERS = ("small", "medium", "large")
_HARD = re.compile(
    r"\b(analy[sz]e|architect\w*|design|prove|proof|derive|refactor|optimi[sz]e|trade-?offs?|debug|step[- ]by[- ]step|"
    r"plan|compare|evaluate|reason|synthesi[sz]e|multi-?step|algorithm)\b",
    re.I,
)


@dataclass(frozen=True)
class Price:
    """A model's price per million input and output tokens."""

    input: float  # USD per million input tokens
    output: float
    tier: str = "small"
    context: int = 128_000
    tools: bool = True


class PriceTable:
    """Prices per model, for the cost of each call."""

    def __init__(self, models: dict[str, Price]) -> None:
        self.models = models

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        """The table in ``path`` (``LLMSettings.prices_file``, ``STEPWISE_LLM_PRICES``), else the packaged one."""
        return _load(str(path or PRICES_FILE))

    def lookup(self, label: str) -> Price | None:
        """Exact label, else the longest priced prefix (``openai:gpt-4o-mini-2024-07-18`` → ``openai:gpt-4o-mini``)."""
        if label in self.models:
            return self.models[label]
        best = max((k for k in self.models if label.startswith(k)), key=len, default=None)
        return self.models[best] if best else None

    def cost(self, label: str, usage: Usage) -> tuple[float, bool]:
        """(USD, priced?). Local and scripted models cost nothing; unknown models are flagged unpriced."""
        price = self.lookup(label)
        if price is None:
            return 0.0, label.startswith(("scripted", "local:"))
        return round((usage.input_tokens * price.input + usage.output_tokens * price.output) / 1_000_000, 8), True

    def tier_models(self, tier: str) -> list[str]:
        """Models of a tier, cheapest first (by a 3:1 input:output blend)."""
        found = [(p.input * 3 + p.output, k) for k, p in self.models.items() if p.tier == tier]
        return [k for _, k in sorted(found)]


@lru_cache(maxsize=8)
def _load(path: str) -> PriceTable:
    data: dict[str, Any] = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return PriceTable({k: Price(**v) for k, v in (data.get("models") or {}).items()})


def estimate_tokens(request: ChatRequest) -> int:
    return max(1, len(request.prompt_text()) // 4)


def classify(request: ChatRequest) -> str:
    """simple | moderate | complex, from cheap signals: size, tools, code, and words that mean hard work."""
    text = request.prompt_text()
    last_user = next((str(m.get("content") or "") for m in reversed(request.messages) if m.get("role") == "user"), "")
    score = 0
    tokens = estimate_tokens(request)
    score += 2 if tokens > 6000 else 1 if tokens > 1500 else 0
    score += 1 if len(request.tools) > 3 else 0
    score += 1 if "```" in text or "def " in text or "class " in text else 0
    score += min(3, len(_HARD.findall(last_user)))
    score += 1 if len(last_user) > 600 else 0
    score += 1 if request.response_schema is not None else 0
    return "simple" if score <= 1 else "moderate" if score == 2 else "complex"


TIER_FOR = {"simple": "small", "moderate": "medium", "complex": "large"}


def choose_tier(
    request: ChatRequest, tiers: dict[str, list[str]], prices: PriceTable, *, start: str | None = None
) -> tuple[str, list[str]]:
    """The cheapest tier that fits: start from the classified tier (or ``start``), keep the models whose
    context window holds the prompt and that can call tools when tools are offered; go up a tier if none fit."""
    tier = start or TIER_FOR[classify(request)]
    need = estimate_tokens(request) + (request.max_tokens or 1024)
    order = [t for t in TIERS if TIERS.index(t) >= TIERS.index(tier)] if tier in TIERS else [tier]
    for name in order:
        fits = []
        for model in tiers.get(name, []):
            price = prices.lookup(model)
            if price is None or (price.context >= need and (price.tools or not request.tools)):
                fits.append(model)
        if fits:
            return name, fits
    raise LookupError(f"no configured model fits tier {tier!r} or above (prompt ≈{need} tokens); add models to llm tiers")
