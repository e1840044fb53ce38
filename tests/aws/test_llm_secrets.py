"""API keys come from the environment or AWS Secrets Manager (moto here) and never reach events or reprs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from stepwise.asl.interpreter import FakeClock
from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.llm import secrets
from stepwise.llm.gateway import ModelHub
from stepwise.llm.providers.openai import OpenAIChat
from stepwise.llm.secrets import MissingCredentials, api_key
from stepwise.llm.settings import LLMSettings, ProviderSettings
from stepwise.llm.testing import FakeLLMServer, Reply

KEY = "sk-live-very-secret-value-123"


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    secrets._cache.clear()
    with mock_aws():
        yield
    secrets._cache.clear()


def test_key_from_env_first() -> None:
    assert api_key("OPENAI_API_KEY", {"OPENAI_API_KEY": KEY, "STEPWISE_OPENAI_API_KEY_SECRET": "ignored"}) == KEY


def test_key_from_secrets_manager_plain_or_json(secretsmanager: None) -> None:
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="stepwise/openai", SecretString=KEY)
    sm.create_secret(Name="stepwise/anthropic", SecretString=json.dumps({"api_key": "sk-ant-" + KEY}))
    assert api_key("OPENAI_API_KEY", {"STEPWISE_OPENAI_API_KEY_SECRET": "stepwise/openai"}) == KEY
    assert api_key("ANTHROPIC_API_KEY", {"STEPWISE_ANTHROPIC_API_KEY_SECRET": "stepwise/anthropic"}) == "sk-ant-" + KEY


def test_missing_key_names_the_variables_only() -> None:
    with pytest.raises(MissingCredentials) as info:
        api_key("OPENAI_API_KEY", {})
    assert "OPENAI_API_KEY" in str(info.value) and "STEPWISE_OPENAI_API_KEY_SECRET" in str(info.value)


def test_the_key_never_appears_in_events_or_reprs(secretsmanager: None) -> None:
    boto3.client("secretsmanager").create_secret(Name="stepwise/openai", SecretString=KEY)
    with FakeLLMServer() as srv:
        srv.add(Reply(text="hello"), Reply.error(401))
        hub = ModelHub(
            LLMSettings(cache="off", providers={"openai": ProviderSettings(base_url=f"{srv.url}/v1")}),
            clock=FakeClock(),
            environ={"STEPWISE_OPENAI_API_KEY_SECRET": "stepwise/openai"},
        )
        client = Stepwise.in_memory(clock=FakeClock())
        client.services.models = hub
        spec = load_text(
            "name: k\nstate: {messages: append}\ngraph:\n  nodes:\n    a: {kind: agent, model: 'openai:gpt-4o-mini'}\n"
            "    b: {kind: agent, model: 'openai:gpt-4o-mini'}\n  edges:\n    - {from: a, to: b}\n  entry: a\n"
        )
        result = client.run(spec, {"messages": [{"role": "user", "content": "hi"}]})
    assert result.status == "failed"  # b got a 401: the error names the provider, not the key
    assert "check the API key" in json.dumps(result.error)
    blob = json.dumps([e.to_json() for e in client.history(result.thread_id)]) + json.dumps(result.error)
    assert KEY not in blob
    assert KEY not in repr(OpenAIChat("gpt-4o-mini", api_key=KEY))
