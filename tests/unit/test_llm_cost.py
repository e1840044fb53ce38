"""Cost optimizer and budgets: price table as data, complexity → cheapest fitting tier, budgets stop spending."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepwise.asl.interpreter import FakeClock
from stepwise.llm.base import ChatRequest, ChatResponse, ToolSpec, Usage
from stepwise.llm.budget import Budgets, MemoryLedger
from stepwise.llm.cost import PRICES_FILE, Price, PriceTable, choose_tier, classify
from stepwise.llm.errors import BudgetExceededError
from stepwise.llm.gateway import ModelHub
from stepwise.llm.settings import LLMSettings


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(model="auto", messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


class Priced:
    def __init__(self, usage: Usage) -> None:
        self.usage, self.calls = usage, 0

    def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        return ChatResponse(content=f"answer {self.calls}", usage=self.usage, model=request.model)


def test_price_table_is_data_and_prices_by_longest_prefix() -> None:
    assert PRICES_FILE.suffix == ".yaml" and PRICES_FILE.exists()
    table = PriceTable.load()
    cost, priced = table.cost("openai:gpt-4o-mini-2024-07-18", Usage(input_tokens=1_000_000, output_tokens=1_000_000))
    assert priced and cost == pytest.approx(0.15 + 0.60)
    assert table.cost("local:http://127.0.0.1:11434/v1#llama3", Usage(input_tokens=10)) == (0.0, True)
    assert table.cost("openai:some-future-model", Usage(input_tokens=10)) == (0.0, False)


def test_custom_price_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  openai:mine: {input: 1.0, output: 2.0, tier: small}\n")
    assert PriceTable.load(path).cost("openai:mine", Usage(input_tokens=500_000, output_tokens=250_000)) == (1.0, True)
    settings = LLMSettings.from_env({"STEPWISE_LLM_PRICES": str(path)})  # the documented variable, read once into settings
    assert settings.prices_file == str(path)
    assert ModelHub(settings, clock=FakeClock()).prices.lookup("openai:mine") == Price(input=1.0, output=2.0, tier="small")


def test_complexity_classification() -> None:
    assert classify(ask("What is the capital of France?")) == "simple"
    assert classify(ask("Compare these two designs and analyze the trade-offs step by step")) == "complex"
    moderate = ask("Refactor this:\n```python\ndef f(x):\n    return x\n```")
    assert classify(moderate) == "moderate"


def test_cheapest_fitting_tier() -> None:
    table = PriceTable(
        {
            "openai:small-a": Price(0.2, 0.8, "small", 8000),
            "openai:small-b": Price(0.1, 0.4, "small", 8000),
            "openai:medium": Price(1, 4, "medium", 128000),
            "openai:large": Price(5, 15, "large", 200000),
        }
    )
    tiers = {"small": ["openai:small-a", "openai:small-b"], "medium": ["openai:medium"], "large": ["openai:large"]}
    assert choose_tier(ask("hi"), tiers, table) == ("small", ["openai:small-a", "openai:small-b"])
    huge = ask("x " * 40_000)  # ≈20k tokens: no small model's window holds it
    assert choose_tier(huge, tiers, table, start="small")[0] == "medium"
    assert choose_tier(ask("hi"), tiers, table, start="large") == ("large", ["openai:large"])
    assert table.tier_models("small") == ["openai:small-b", "openai:small-a"]  # cheapest first


def test_auto_routes_to_the_classified_tier_and_records_cost() -> None:
    small, large = Priced(Usage(input_tokens=1000, output_tokens=500)), Priced(Usage(input_tokens=1000, output_tokens=500))
    settings = LLMSettings(cache="off", tiers={"small": ["openai:gpt-4o-mini"], "medium": ["openai:gpt-4o"], "large": ["openai:gpt-4o"]})
    hub = ModelHub(settings, clock=FakeClock(), models={"openai:gpt-4o-mini": small, "openai:gpt-4o": large})
    response, info = hub.call(ask("What time is it in Paris?"))
    assert small.calls == 1 and info.tier == "small" and info.complexity == "simple" and info.target == "openai:gpt-4o-mini"
    assert response.cost_usd == pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6)
    _, info = hub.call(ask("Design an architecture and analyze the trade-offs, step by step, then prove it scales"))
    assert large.calls == 1 and info.tier == "large"


def test_run_budget_stops_the_run_with_a_clear_error() -> None:
    model = Priced(Usage(input_tokens=100_000, output_tokens=100_000))  # $0.075 per call on gpt-4o-mini
    hub = ModelHub(
        LLMSettings(cache="off", run_budget_usd=0.1), clock=FakeClock(), ledger=MemoryLedger(), models={"openai:gpt-4o-mini": model}
    )
    req = ask("hi").model_copy(update={"model": "openai:gpt-4o-mini"})
    hub.call(req, run_id="run-1")
    hub.call(req, run_id="run-1")  # spent 0.075 < 0.1 before this call
    with pytest.raises(BudgetExceededError, match=r"run run-1 spent \$0\.1500 of its \$0\.1000 budget"):
        hub.call(req, run_id="run-1")
    assert model.calls == 2
    hub.call(req, run_id="run-2")  # another run has its own budget


def test_tenant_budget_is_per_tenant() -> None:
    ledger = MemoryLedger()
    budgets = Budgets(tenant_usd=1.0, tenants={"big": 10.0})
    ledger.add("acme", "r1", 0.6)
    ledger.add("acme", "r2", 0.5)
    with pytest.raises(BudgetExceededError, match="tenant 'acme' spent"):
        budgets.check(ledger, "acme", "r3")
    ledger.add("big", "r1", 5.0)
    budgets.check(ledger, "big", "r2")
    budgets.check(ledger, "other", "r1")


def test_settings_from_env_and_file(tmp_path: Path) -> None:
    path = tmp_path / "llm.yaml"
    path.write_text("cache: semantic\ntiers: {small: ['openai:gpt-4o-mini']}\nproviders: {openai: {base_url: 'http://127.0.0.1:9/v1'}}\n")
    s = LLMSettings.from_env({"STEPWISE_LLM_CONFIG": str(path), "STEPWISE_LLM_RUN_BUDGET_USD": "2.5", "STEPWISE_MODEL": "openai:gpt-4o"})
    assert s.cache == "semantic" and s.run_budget_usd == 2.5 and s.model_override == "openai:gpt-4o"
    assert s.tiers["small"] == ["openai:gpt-4o-mini"] and s.providers["openai"].base_url == "http://127.0.0.1:9/v1"
    hub = ModelHub(LLMSettings(), environ={"OPENAI_API_KEY": "sk-test"})
    assert hub.tiers()["small"][0].startswith("openai:") and not any(m.startswith("anthropic:") for m in hub.tiers()["large"])


def test_tool_needing_request_counts_tools() -> None:
    tools = [ToolSpec(name=f"t{i}") for i in range(5)]
    assert classify(ask("hello", tools=tools)) == "simple"
    assert classify(ask("plan and compare options", tools=tools)) in ("moderate", "complex")
