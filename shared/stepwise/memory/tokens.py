"""Token counting for the STM budget.

With the ``bpe-openai`` package installed (the ``memory`` extra), counts are exact BPE counts: ``o200k_base``
for OpenAI models (``openai:gpt-4o*``, ``gpt-4.1``, ``o*``), ``cl100k_base`` for older OpenAI models, and
``o200k_base`` as a documented *estimate* for every other provider (Anthropic, Bedrock, local), whose
tokenizers are not available offline (typically within ~15% of the provider's count for English).
Without it, the estimate is ``ceil(chars / 4)``. Each chat message adds ``MESSAGE_OVERHEAD`` tokens
(role and separators), as in OpenAI's chat format.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

MESSAGE_OVERHEAD = 4
Counter = Callable[[str], int]


def estimate(text: str) -> int:
    return math.ceil(len(text) / 4)


@functools.lru_cache(maxsize=8)
def _bpe(name: str) -> Counter | None:
    try:
        import bpe_openai
    except ImportError:
        return None
    encoding = bpe_openai.get_encoding(name)
    return lambda text: len(encoding.encode(text)) if text else 0


def encoding_for(model: str | None) -> str:
    name = (model or "").split(":", 1)[-1].lower()
    if name.startswith(("gpt-3.5", "gpt-4-", "text-embedding")) or name == "gpt-4":
        return "cl100k_base"
    return "o200k_base"


def counter_for(model: str | None = None) -> tuple[Counter, str]:
    """(count function, description) for ``model``: exact BPE where installed, else the chars/4 estimate."""
    enc = encoding_for(model)
    found = _bpe(enc)
    if found is None:
        return estimate, "estimate:chars/4"
    exact = (model or "").startswith(("openai:", "gpt-", "o1", "o3", "o4"))
    return found, f"{enc}{'' if exact else ' (estimate for this provider)'}"


def message_text(message: dict[str, Any]) -> str:
    text = str(message.get("content") or "")
    calls = message.get("tool_calls")
    if calls:
        text += json.dumps(calls, default=str, separators=(",", ":"))
    return text


def count_message(message: dict[str, Any], counter: Counter) -> int:
    return counter(message_text(message)) + MESSAGE_OVERHEAD
