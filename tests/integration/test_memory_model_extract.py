"""``extract: model``: the node's model (the real openai SDK against a local fake OpenAI server) returns the turn's
memories as JSON; valid items are stored, invalid items are rejected with reasons, and a reply that is not a
JSON list stores nothing and says why. Runs on the embedded client (SQLite store, real Valkey)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepwise.asl.interpreter import FakeClock
from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.llm.gateway import ModelHub
from stepwise.llm.settings import LLMSettings, ProviderSettings
from stepwise.llm.testing import FakeLLMServer, Reply
from stepwise.memory.extract import MODEL_EXTRACT_PROMPT

GRAPH = """
name: travel
state:
  messages: append
graph:
  nodes:
    assistant:
      kind: agent
      model: openai:gpt-4o-mini
      system: "You are a travel assistant."
      memory:
        namespaces: ["{tenant}/{graph}/{user}"]
        strategies: [preference, semantic]
        extract: model
  entry: assistant
"""
NAMESPACE = "default/travel/dana"
QUESTION = {"user_id": "dana", "messages": [{"role": "user", "content": "Book Oslo. Window seat, and no red-eye flights please."}]}


class Model:
    """The fake OpenAI server's replies: the answer, then whatever ``extraction`` says for the memory call."""

    def __init__(self) -> None:
        self.extraction = "[]"
        self.extract_requests: list[dict[str, Any]] = []

    def __call__(self, api: str, body: dict[str, Any]) -> Reply:
        if body["messages"][-1]["content"] == MODEL_EXTRACT_PROMPT:
            self.extract_requests.append(body)
            return Reply(text=self.extraction)
        return Reply(text="Booked: Oslo, window seat, daytime flight.")


@pytest.fixture
def model() -> Model:
    return Model()


@pytest.fixture
def client(tmp_path: Path, model: Model, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stepwise, list[dict[str, Any]]]]:
    monkeypatch.setenv("STEPWISE_MEMORY_EMBEDDER", "hashing")
    with FakeLLMServer(model) as srv:
        client = Stepwise.embedded(tmp_path)
        client.services.models = ModelHub(
            LLMSettings(providers={"openai": ProviderSettings(base_url=f"{srv.url}/v1")}, cache="off"),
            clock=FakeClock(),
            environ={"OPENAI_API_KEY": "sk-test"},
        )
        observed: list[dict[str, Any]] = []
        client.services.observer = observed.append
        yield client, observed


def test_the_models_json_memories_are_stored(client: tuple[Stepwise, list[dict[str, Any]]], model: Model) -> None:
    stepwise, observed = client
    model.extraction = (
        "```json\n"
        + json.dumps(
            [
                {"text": "Dana prefers window seats.", "strategy": "preference", "key": "seat", "importance": 0.9},
                {"text": "Dana avoids red-eye flights.", "strategy": "preference", "key": "flight-time", "importance": 7},
                {"text": "", "strategy": "semantic"},  # invalid: empty text
                {"text": "Dana is going to Oslo.", "strategy": "gossip"},  # invalid: unknown strategy
            ]
        )
        + "\n```"
    )
    result = stepwise.run(load_text(GRAPH), QUESTION)
    assert result.status == "succeeded", result.error
    (request,) = model.extract_requests
    assert request["model"] == "gpt-4o-mini" and request["messages"][-2]["content"] == QUESTION["messages"][0]["content"]
    prefs = {r.text: r for r in stepwise.services.memory.ltm.list("default", NAMESPACE) if r.strategy == "preference"}
    assert set(prefs) == {"Dana prefers window seats.", "Dana avoids red-eye flights."}  # the model's, not the rule extractor's
    assert prefs["Dana prefers window seats."].key == "seat" and prefs["Dana avoids red-eye flights."].importance == 1.0  # clamped
    (rejected,) = [e for e in observed if e.get("kind") == "memory_rejected"]
    assert rejected["count"] == 2 and any("strategy" in r for r in rejected["reasons"]) and any("text" in r for r in rejected["reasons"])


@pytest.mark.parametrize(
    "reply",
    [
        "Sure! Dana likes window seats and hates red-eyes.",  # no JSON at all
        '[{"text": "Dana prefers window seats.", "strategy": "preference"',  # truncated JSON
        '{"text": "Dana prefers window seats.", "strategy": "preference"}',  # an object, not a list
    ],
)
def test_malformed_json_stores_nothing_and_says_why(client: tuple[Stepwise, list[dict[str, Any]]], model: Model, reply: str) -> None:
    stepwise, observed = client
    model.extraction = reply
    result = stepwise.run(load_text(GRAPH), QUESTION)
    assert result.status == "succeeded", result.error  # memory never fails the run
    assert len(model.extract_requests) == 1
    assert stepwise.services.memory.ltm.list("default", NAMESPACE, include_history=True) == []
    (skipped,) = [e for e in observed if e.get("kind") == "memory_skipped"]
    assert skipped["reason"].startswith("extract: model:") and "JSON" in skipped["reason"]
    assert not [e for e in observed if e.get("kind") in ("memory_stored", "memory_degraded")]
