"""A fake LLM server for tests and offline demos: it speaks the OpenAI Chat Completions, Anthropic
Messages and Bedrock Converse wire formats (normal and streaming) on 127.0.0.1, on a free port, so the
real SDKs can be exercised end to end. Replies are queued (``add``) or computed (``handler``); a reply
can also be an HTTP error (500, 429 with Retry-After) or a hang that makes the client time out.
"""

from __future__ import annotations

import binascii
import json
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """What the fake server answers to one request: text, tool calls, or an error."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{"name": ..., "arguments": {...}}]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer (until the server stops): the client's timeout fires
    input_tokens: int = 11
    output_tokens: int = 7
    stop: str | None = None

    @classmethod
    def error(cls, status: int, retry_after: float | None = None) -> Reply:
        return cls(status=status, headers={"retry-after": str(retry_after)} if retry_after is not None else {})


Handler = Callable[[str, dict[str, Any]], Reply]


@dataclass
class Seen:
    """A request the fake server received."""

    api: str  # openai | anthropic | bedrock
    path: str
    body: dict[str, Any]
    stream: bool


class FakeLLMServer:
    """A local HTTP server speaking the OpenAI, Anthropic and Bedrock formats, for offline tests."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.queue: deque[Reply] = deque()
        self.seen: list[Seen] = []
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                server._json(self, 200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server._dispatch(self, body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add(self, *replies: Reply | str) -> None:
        for reply in replies:
            self.queue.append(Reply(text=reply) if isinstance(reply, str) else reply)

    # -- dispatch ----------------------------------------------------------------------------------
    def _next(self, api: str, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self.queue:
                return self.queue.popleft()
        if self.handler is not None:
            return self.handler(api, body)
        return Reply(text="ok")

    def _dispatch(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        path = h.path
        if path.endswith("/embeddings"):  # deterministic vectors: the hashing embedder, so similar texts are close
            from stepwise.llm.embeddings import HashingEmbedder

            raw = body.get("input")
            texts = raw if isinstance(raw, list) else [raw or ""]
            vectors = HashingEmbedder(dim=64).embed([str(t) for t in texts])
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
            self._json(
                h, 200, {"object": "list", "data": data, "model": body.get("model", ""), "usage": {"prompt_tokens": 1, "total_tokens": 1}}
            )
            return
        if path.endswith("/chat/completions"):
            api, stream = "openai", bool(body.get("stream"))
        elif path.endswith("/messages"):
            api, stream = "anthropic", bool(body.get("stream"))
        elif "/converse" in path:
            api, stream = "bedrock", path.endswith("/converse-stream")
        else:
            self._json(h, 404, {"error": {"message": f"no route {path}"}})
            return
        with self._lock:
            self.seen.append(Seen(api, path, body, stream))
        reply = self._next(api, body)
        if reply.hang:
            self._release.wait(30)
            return
        if reply.status != 200:
            self._error(h, api, reply)
            return
        model = str(body.get("model") or path.split("/model/")[-1].split("/")[0])
        if api == "openai":
            self._openai_stream(h, reply, model) if stream else self._json(h, 200, _openai(reply, model))
        elif api == "anthropic":
            self._anthropic_stream(h, reply, model) if stream else self._json(h, 200, _anthropic(reply, model))
        else:
            self._bedrock_stream(h, reply) if stream else self._json(h, 200, _bedrock(reply))

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _error(self, h: BaseHTTPRequestHandler, api: str, reply: Reply) -> None:
        if api == "bedrock":
            code = (
                "ThrottlingException"
                if reply.status == 429
                else "InternalServerException"
                if reply.status >= 500
                else "ValidationException"
            )
            headers = {"x-amzn-errortype": code, **reply.headers}
            self._json(h, reply.status, {"message": f"fake {code}"}, headers)
            return
        kind = "rate_limit_error" if reply.status == 429 else "api_error"
        self._json(h, reply.status, {"type": "error", "error": {"type": kind, "message": f"fake HTTP {reply.status}"}}, reply.headers)

    @staticmethod
    def _sse(h: BaseHTTPRequestHandler, chunks: list[tuple[str | None, dict[str, Any] | str]]) -> None:
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        h.send_header("connection", "close")
        h.end_headers()
        for event, data in chunks:
            line = (f"event: {event}\n" if event else "") + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
            h.wfile.write(line.encode())
            h.wfile.flush()
        h.close_connection = True

    def _openai_stream(self, h: BaseHTTPRequestHandler, reply: Reply, model: str) -> None:
        cid, now = f"chatcmpl-{uuid.uuid4().hex[:8]}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
            choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
            out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": now, "model": model, "choices": choices}
            if usage:
                out["usage"] = usage
            return out

        chunks: list[tuple[str | None, dict[str, Any] | str]] = [(None, chunk({"role": "assistant", "content": ""}))]
        for piece in _pieces(reply.text):
            chunks.append((None, chunk({"content": piece})))
        for i, call in enumerate(reply.tool_calls):
            args = json.dumps(call.get("arguments", {}))
            first = {"index": i, "id": call.get("id", f"call_{i}"), "type": "function", "function": {"name": call["name"], "arguments": ""}}
            chunks.append((None, chunk({"tool_calls": [first]})))
            for piece in _pieces(args):
                chunks.append((None, chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})))
        chunks.append((None, chunk({}, reply.stop or ("tool_calls" if reply.tool_calls else "stop"))))
        usage = {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
        chunks.append((None, chunk({}, usage=usage)))
        chunks.append((None, "[DONE]"))
        self._sse(h, chunks)

    def _anthropic_stream(self, h: BaseHTTPRequestHandler, reply: Reply, model: str) -> None:
        message = _anthropic(reply, model)
        start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1}}
        chunks: list[tuple[str | None, dict[str, Any] | str]] = [("message_start", {"type": "message_start", "message": start})]
        index = 0
        if reply.text:
            chunks.append(
                ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            )
            for piece in _pieces(reply.text):
                delta = {"type": "text_delta", "text": piece}
                chunks.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
            chunks.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
            index = 1
        for i, call in enumerate(reply.tool_calls, start=index):
            block = {"type": "tool_use", "id": call.get("id", f"toolu_{i}"), "name": call["name"], "input": {}}
            chunks.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": block}))
            for piece in _pieces(json.dumps(call.get("arguments", {}))):
                delta = {"type": "input_json_delta", "partial_json": piece}
                chunks.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
            chunks.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        final: dict[str, Any] = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        chunks.append(("message_delta", {"type": "message_delta", "delta": final, "usage": {"output_tokens": reply.output_tokens}}))
        chunks.append(("message_stop", {"type": "message_stop"}))
        self._sse(h, chunks)

    def _bedrock_stream(self, h: BaseHTTPRequestHandler, reply: Reply) -> None:
        frames = [eventstream_frame("messageStart", {"role": "assistant"})]
        index = 0
        if reply.text:
            for piece in _pieces(reply.text):
                frames.append(eventstream_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}))
            frames.append(eventstream_frame("contentBlockStop", {"contentBlockIndex": 0}))
            index = 1
        for i, call in enumerate(reply.tool_calls, start=index):
            use = {"toolUseId": call.get("id", f"tooluse_{i}"), "name": call["name"]}
            frames.append(eventstream_frame("contentBlockStart", {"contentBlockIndex": i, "start": {"toolUse": use}}))
            frames.append(
                eventstream_frame(
                    "contentBlockDelta", {"contentBlockIndex": i, "delta": {"toolUse": {"input": json.dumps(call.get("arguments", {}))}}}
                )
            )
            frames.append(eventstream_frame("contentBlockStop", {"contentBlockIndex": i}))
        frames.append(eventstream_frame("messageStop", {"stopReason": reply.stop or ("tool_use" if reply.tool_calls else "end_turn")}))
        usage = {
            "inputTokens": reply.input_tokens,
            "outputTokens": reply.output_tokens,
            "totalTokens": reply.input_tokens + reply.output_tokens,
        }
        frames.append(eventstream_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
        data = b"".join(frames)
        h.send_response(200)
        h.send_header("content-type", "application/vnd.amazon.eventstream")
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def _pieces(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _openai(reply: Reply, model: str) -> dict[str, Any]:
    calls = [
        {
            "id": c.get("id", f"call_{i}"),
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))},
        }
        for i, c in enumerate(reply.tool_calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.stop or ("tool_calls" if calls else "stop")}],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        },
    }


def _anthropic(reply: Reply, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    content += [
        {"type": "tool_use", "id": c.get("id", f"toolu_{i}"), "name": c["name"], "input": c.get("arguments", {})}
        for i, c in enumerate(reply.tool_calls)
    ]
    return {
        "id": f"msg_{uuid.uuid4().hex[:8]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reply.stop or ("tool_use" if reply.tool_calls else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _bedrock(reply: Reply) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
    content += [
        {"toolUse": {"toolUseId": c.get("id", f"tooluse_{i}"), "name": c["name"], "input": c.get("arguments", {})}}
        for i, c in enumerate(reply.tool_calls)
    ]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": reply.stop or ("tool_use" if reply.tool_calls else "end_turn"),
        "usage": {
            "inputTokens": reply.input_tokens,
            "outputTokens": reply.output_tokens,
            "totalTokens": reply.input_tokens + reply.output_tokens,
        },
        "metrics": {"latencyMs": 1},
    }


def eventstream_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    """One ``application/vnd.amazon.eventstream`` message (what Bedrock's ConverseStream sends)."""
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")):
        raw = value.encode()
        headers += struct.pack("!B", len(name)) + name.encode() + struct.pack("!BH", 7, len(raw)) + raw
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack("!II", total, len(headers))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + body
    return message + struct.pack("!I", binascii.crc32(message) & 0xFFFFFFFF)
