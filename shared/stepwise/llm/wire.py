"""Small translations every provider shares: tool names on the wire, tolerant argument parsing."""

from __future__ import annotations

import json
import re
from typing import Any

from stepwise.llm.base import ToolSpec

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def wire_name(name: str) -> str:
    """Provider-safe tool name: ``server/tool`` becomes ``server__tool`` (APIs allow [A-Za-z0-9_-] only)."""
    return _UNSAFE.sub("_", name.replace("/", "__"))[:64]


def name_map(tools: list[ToolSpec]) -> dict[str, str]:
    """Wire name → the name the graph used, to translate the model's tool calls back."""
    return {wire_name(t.name): t.name for t in tools}


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call arguments arrive as a JSON string (OpenAI) or an object (Anthropic, Bedrock)."""
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_value": value}


def text_of(content: Any) -> str:
    """Message content as text, whether it is a string or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return json.dumps(content)
