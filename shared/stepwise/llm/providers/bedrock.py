"""Amazon Bedrock through the Converse API (boto3 ``bedrock-runtime``): one wire format for every
Bedrock model. botocore's own retries are off; the endpoint honours ``AWS_ENDPOINT_URL``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from stepwise.llm.base import ChatRequest, ChatResponse, StreamEvent, ToolCall, Usage
from stepwise.llm.errors import InvalidRequestError, LLMError, ProviderUnavailable, RateLimitError, TransientError
from stepwise.llm.wire import alternating_turns, finish_stream, name_map, parse_arguments, wire_name

_STOP = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_TRANSIENT = {
    "ServiceUnavailableException",
    "InternalServerException",
    "ModelTimeoutException",
    "ModelNotReadyException",
    "ModelStreamErrorException",
    "ServiceException",
}
_UNAVAILABLE = {
    "AccessDeniedException",
    "ResourceNotFoundException",
    "UnrecognizedClientException",
    "ExpiredTokenException",
    "ModelErrorException",
}


class BedrockChat:
    """Chat over Bedrock's Converse API (normal and streaming)."""

    def __init__(
        self,
        model: str,
        *,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        timeout: float = 60.0,
        label: str = "bedrock",
    ) -> None:
        self.model = model
        self.label = label
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=timeout, connect_timeout=min(timeout, 10))
            client = boto3.client("bedrock-runtime", region_name=region, endpoint_url=endpoint_url, config=config)
        self.client = client

    def __repr__(self) -> str:
        return f"BedrockChat({self.model})"

    def params(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"modelId": self.model, "messages": to_converse(request.messages)}
        system = request.system or ""
        if request.response_schema is not None:
            system = f"{system}\n\nReply with only a JSON value matching this JSON schema:\n{json.dumps(request.response_schema)}".strip()
        if system:
            params["system"] = [{"text": system}]
        inference: dict[str, Any] = {}
        if request.max_tokens is not None:
            inference["maxTokens"] = request.max_tokens
        if request.temperature is not None:
            inference["temperature"] = request.temperature
        if request.stop:
            inference["stopSequences"] = request.stop
        if inference:
            params["inferenceConfig"] = inference
        if request.tools:
            params["toolConfig"] = {
                "tools": [
                    {"toolSpec": {"name": wire_name(t.name), "description": t.description or t.name, "inputSchema": {"json": t.parameters}}}
                    for t in request.tools
                ]
            }
        return params

    def complete(self, request: ChatRequest) -> ChatResponse:
        try:
            resp = self.client.converse(**self.params(request))
        except Exception as exc:
            raise self.error(exc) from exc
        names = name_map(request.tools)
        text, calls = [], []
        for block in resp.get("output", {}).get("message", {}).get("content", []):
            if "text" in block:
                text.append(block["text"])
            elif "toolUse" in block:
                use = block["toolUse"]
                calls.append(
                    ToolCall(id=use["toolUseId"], name=names.get(use["name"], use["name"]), arguments=parse_arguments(use.get("input")))
                )
        usage = resp.get("usage", {})
        return ChatResponse(
            content="".join(text),
            tool_calls=calls,
            stop_reason=_STOP.get(resp.get("stopReason", "end_turn"), "end_turn"),
            usage=Usage(input_tokens=usage.get("inputTokens", 0), output_tokens=usage.get("outputTokens", 0)),
            model=f"{self.label}:{self.model}",
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        names = name_map(request.tools)
        text: list[str] = []
        blocks: dict[int, dict[str, str]] = {}
        stop, usage = "end_turn", Usage()
        try:
            resp = self.client.converse_stream(**self.params(request))
            for event in resp["stream"]:
                if "contentBlockStart" in event:
                    start = event["contentBlockStart"]
                    use = start.get("start", {}).get("toolUse")
                    if use:
                        blocks[start["contentBlockIndex"]] = {"id": use["toolUseId"], "name": use["name"], "json": ""}
                elif "contentBlockDelta" in event:
                    delta = event["contentBlockDelta"]
                    if "text" in delta["delta"]:
                        text.append(delta["delta"]["text"])
                        yield StreamEvent(type="text", text=delta["delta"]["text"])
                    elif "toolUse" in delta["delta"] and delta["contentBlockIndex"] in blocks:
                        blocks[delta["contentBlockIndex"]]["json"] += delta["delta"]["toolUse"].get("input", "")
                elif "messageStop" in event:
                    stop = event["messageStop"].get("stopReason", stop)
                elif "metadata" in event:
                    u = event["metadata"].get("usage", {})
                    usage = Usage(input_tokens=u.get("inputTokens", 0), output_tokens=u.get("outputTokens", 0))
        except Exception as exc:
            raise self.error(exc) from exc
        yield from finish_stream(
            text, blocks, names, stop_reason=_STOP.get(stop, "end_turn"), usage=usage, model=f"{self.label}:{self.model}"
        )

    def error(self, exc: Exception) -> LLMError:
        from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError, ReadTimeoutError

        label = self.label
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ThrottlingException", "TooManyRequestsException"):
                return RateLimitError(f"{label} throttled the request ({code})", provider=label, retry_after=None)
            if code in _TRANSIENT:
                return TransientError(f"{label} failed: {code}", provider=label)
            if code in _UNAVAILABLE:
                return ProviderUnavailable(
                    f"{label} refused the request ({code}): check credentials, region and model access", provider=label
                )
            return InvalidRequestError(
                f"{label} rejected the request ({code}): {exc.response.get('Error', {}).get('Message', '')[:300]}", provider=label
            )
        if isinstance(exc, ReadTimeoutError | EndpointConnectionError | ConnectionError):
            return TransientError(f"{label} unreachable or timed out: {type(exc).__name__}", provider=label)
        if isinstance(exc, LLMError):
            return exc
        return TransientError(f"{label} failed: {type(exc).__name__}: {exc}", provider=label)


def to_converse(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-style messages → Converse turns (text, toolUse and toolResult blocks)."""
    return alternating_turns(
        messages,
        text=lambda text: {"text": text},
        tool_result=lambda call_id, text: {"toolResult": {"toolUseId": call_id, "content": [{"text": text}]}},
        tool_use=lambda call_id, name, args: {"toolUse": {"toolUseId": call_id, "name": name, "input": args}},
    )
