"""The real openai, anthropic and boto3 (Bedrock Converse) SDKs against a fake server on 127.0.0.1:
normal and streaming replies, tool calls, HTTP 500, 429 with Retry-After, timeouts — and the router's
retries and failover on top of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from stepwise.asl.interpreter import FakeClock
from stepwise.llm.base import ChatRequest, ToolSpec, collect
from stepwise.llm.errors import RateLimitError, TransientError
from stepwise.llm.gateway import ModelHub
from stepwise.llm.providers.anthropic import AnthropicChat
from stepwise.llm.providers.bedrock import BedrockChat
from stepwise.llm.providers.openai import OpenAIChat
from stepwise.llm.settings import LLMSettings, ProviderSettings
from stepwise.llm.testing import FakeLLMServer, Reply

CALC = ToolSpec(name="calculator", description="math", parameters={"type": "object", "properties": {"expression": {"type": "string"}}})
MCP_TOOL = ToolSpec(name="files/read", description="read a file", parameters={"type": "object", "properties": {"path": {"type": "string"}}})
CONVERSATION = [
    {"role": "user", "content": "What is 17 * 23?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "calculator", "arguments": {"expression": "17 * 23"}}]},
    {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "391"},
]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def provider(kind: str, srv: FakeLLMServer, timeout: float = 5.0) -> Any:
    if kind == "openai":
        return OpenAIChat("gpt-4o-mini", api_key="sk-test", base_url=f"{srv.url}/v1", timeout=timeout)
    if kind == "anthropic":
        return AnthropicChat("claude-3-5-haiku-latest", api_key="sk-ant-test", base_url=srv.url, timeout=timeout)
    return BedrockChat("amazon.nova-lite-v1:0", endpoint_url=srv.url, region="us-east-1", timeout=timeout)


KINDS = ["openai", "anthropic", "bedrock"]


@pytest.mark.parametrize("kind", KINDS)
def test_plain_reply_with_usage_and_stop_reason(kind: str, server: FakeLLMServer) -> None:
    server.add(Reply(text="Paris.", input_tokens=21, output_tokens=2))
    response = provider(kind, server).complete(
        ChatRequest(model="x", messages=[{"role": "user", "content": "Capital of France?"}], system="Be brief")
    )
    assert response.content == "Paris." and response.stop_reason == "end_turn"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (21, 2)
    assert response.model.startswith(f"{kind}:")
    body = server.seen[-1].body
    if kind == "openai":
        assert body["messages"][0] == {"role": "system", "content": "Be brief"}
    elif kind == "anthropic":
        assert body["system"] == "Be brief" and body["max_tokens"] == 4096
    else:
        assert body["system"] == [{"text": "Be brief"}]


@pytest.mark.parametrize("kind", KINDS)
def test_tool_calls_round_trip_with_mcp_names(kind: str, server: FakeLLMServer) -> None:
    server.add(
        Reply(
            tool_calls=[
                {"id": "t1", "name": "files__read", "arguments": {"path": "/etc/motd"}},
                {"id": "t2", "name": "calculator", "arguments": {"expression": "2+2"}},
            ]
        )
    )
    request = ChatRequest(model="x", messages=CONVERSATION, tools=[CALC, MCP_TOOL])
    response = provider(kind, server).complete(request)
    assert response.stop_reason == "tool_use"
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("files/read", {"path": "/etc/motd"}),
        ("calculator", {"expression": "2+2"}),
    ]
    body = server.seen[-1].body
    if kind == "openai":
        assert [t["function"]["name"] for t in body["tools"]] == ["calculator", "files__read"]
        assistant, tool = body["messages"][1], body["messages"][2]
        assert assistant["tool_calls"][0]["function"] == {"name": "calculator", "arguments": json.dumps({"expression": "17 * 23"})}
        assert tool == {"role": "tool", "tool_call_id": "c1", "content": "391"}
    elif kind == "anthropic":
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert body["messages"][1]["content"][0] == {
            "type": "tool_use",
            "id": "c1",
            "name": "calculator",
            "input": {"expression": "17 * 23"},
        }
        assert body["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "c1", "content": "391"}
    else:
        assert [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]] == ["calculator", "files__read"]
        assert body["messages"][1]["content"][0]["toolUse"]["toolUseId"] == "c1"
        assert body["messages"][2]["content"][0]["toolResult"] == {"toolUseId": "c1", "content": [{"text": "391"}]}


@pytest.mark.parametrize("kind", KINDS)
def test_streaming_text_and_tool_calls(kind: str, server: FakeLLMServer) -> None:
    server.add(
        Reply(
            text="Let me compute that.",
            tool_calls=[{"id": "t9", "name": "calculator", "arguments": {"expression": "6*7"}}],
            input_tokens=30,
            output_tokens=12,
        )
    )
    deltas: list[str] = []
    response = collect(provider(kind, server).stream(ChatRequest(model="x", messages=CONVERSATION[:1], tools=[CALC])), deltas.append)
    assert server.seen[-1].stream
    assert len(deltas) > 1 and "".join(deltas) == "Let me compute that." == response.content
    assert [(c.name, c.arguments) for c in response.tool_calls] == [("calculator", {"expression": "6*7"})]
    assert response.stop_reason == "tool_use" and (response.usage.input_tokens, response.usage.output_tokens) == (30, 12)


@pytest.mark.parametrize("kind", KINDS)
def test_http_500_is_transient(kind: str, server: FakeLLMServer) -> None:
    server.add(Reply.error(500))
    with pytest.raises(TransientError):
        provider(kind, server).complete(ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}]))
    assert len(server.seen) == 1  # the SDKs' own retries are off: the router owns retrying


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_429_carries_retry_after(kind: str, server: FakeLLMServer) -> None:
    server.add(Reply.error(429, retry_after=3))
    with pytest.raises(RateLimitError) as info:
        provider(kind, server).complete(ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}]))
    assert info.value.retry_after == 3.0 and len(server.seen) == 1


def test_bedrock_throttling_is_a_rate_limit(server: FakeLLMServer) -> None:
    server.add(Reply.error(429))
    with pytest.raises(RateLimitError, match="ThrottlingException"):
        provider("bedrock", server).complete(ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}]))
    assert len(server.seen) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_is_transient(kind: str, server: FakeLLMServer) -> None:
    server.add(Reply(hang=True))
    with pytest.raises(TransientError, match=r"timed out|unreachable"):
        provider(kind, server, timeout=0.5).complete(ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}]))


def test_router_retries_500s_then_fails_over_to_a_local_server(server: FakeLLMServer) -> None:
    with FakeLLMServer() as local:
        server.add(*[Reply.error(500)] * 4)
        local.add(Reply(text="from llama"))
        clock = FakeClock()
        settings = LLMSettings(cache="off", providers={"openai": ProviderSettings(base_url=f"{server.url}/v1")})
        hub = ModelHub(settings, clock=clock, environ={"OPENAI_API_KEY": "sk-test"})
        local_model = f"local:{local.url}/v1#llama3"
        chain = f"openai:gpt-4o-mini|{local_model}"
        response, info = hub.call(ChatRequest(model=chain, messages=[{"role": "user", "content": "hi"}]))
    assert response.content == "from llama" and info.target == local_model
    assert clock.sleeps == [1.0, 2.0, 4.0] and len(server.seen) == 4
    assert [a["outcome"] for a in info.to_json()["attempts"]] == ["error"] * 4 + ["ok"] and info.to_json()["failover"] is True
    assert response.cost_usd == 0.0  # local models are free


def test_router_honours_retry_after_from_the_real_sdk(server: FakeLLMServer) -> None:
    server.add(Reply.error(429, retry_after=2), Reply(text="finally"))
    clock = FakeClock()
    hub = ModelHub(
        LLMSettings(cache="off", providers={"anthropic": ProviderSettings(base_url=server.url)}),
        clock=clock,
        environ={"ANTHROPIC_API_KEY": "sk-ant-test"},
    )
    response, _ = hub.call(ChatRequest(model="anthropic:claude-3-5-haiku-latest", messages=[{"role": "user", "content": "hi"}]))
    assert response.content == "finally" and clock.sleeps == [2.0]
    assert response.cost_usd == pytest.approx((11 * 0.80 + 7 * 4.00) / 1e6)


def test_missing_api_key_names_the_variable_not_a_value() -> None:
    hub = ModelHub(LLMSettings(cache="off"), clock=FakeClock(), environ={})
    with pytest.raises(Exception, match="set OPENAI_API_KEY, or STEPWISE_OPENAI_API_KEY_SECRET"):
        hub.call(ChatRequest(model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]))


def test_bedrock_converse_with_botocore_stubber() -> None:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    model = BedrockChat("amazon.nova-micro-v1:0", client=client)
    request = ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}], tools=[CALC], max_tokens=50)
    with Stubber(client) as stub:
        expected = model.params(request)
        stub.add_response(
            "converse",
            {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [{"toolUse": {"toolUseId": "u1", "name": "calculator", "input": {"expression": "1+1"}}}],
                    }
                },
                "stopReason": "tool_use",
                "usage": {"inputTokens": 5, "outputTokens": 4, "totalTokens": 9},
                "metrics": {"latencyMs": 3},
            },
            expected,
        )
        stub.add_client_error("converse", service_error_code="ServiceUnavailableException", http_status_code=503)
        stub.add_client_error("converse", service_error_code="AccessDeniedException", http_status_code=403)
        response = model.complete(request)
        assert response.tool_calls[0].arguments == {"expression": "1+1"} and response.stop_reason == "tool_use"
        assert expected["inferenceConfig"] == {"maxTokens": 50}
        with pytest.raises(TransientError):
            model.complete(request)
        with pytest.raises(Exception, match="AccessDeniedException"):
            model.complete(request)
