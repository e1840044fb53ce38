"""NeMo Guardrails as a rail (optional extra ``nemo``): ``{check: nemo, config_path: ./rails}``.

The text goes through ``LLMRails.generate`` with the rails config; a reply that differs from the input's
pass-through (NeMo's refusal) counts as a hit. Needs an LLM configured in the rails config.
"""

from __future__ import annotations

from typing import Any

from stepwise.graph.guardrails import RailSpec


def nemo_check(rail: RailSpec, text: str) -> Any:
    try:
        from nemoguardrails import LLMRails, RailsConfig
    except ImportError:
        raise ImportError("the nemo rail needs NeMo Guardrails: pip install 'stepwise[nemo]'") from None
    from stepwise.guardrails.checks import Finding
    from stepwise.guardrails.engine import _Hit

    if not rail.config_path:
        raise ValueError("a nemo rail needs config_path (a NeMo Guardrails config directory)")
    rails = LLMRails(RailsConfig.from_path(rail.config_path))
    reply = rails.generate(messages=[{"role": "user", "content": text}])
    content = reply.get("content", "") if isinstance(reply, dict) else str(reply)
    refused = "can't" in content.lower() or "cannot" in content.lower() or "sorry" in content.lower()
    return _Hit([Finding("nemo", 0, len(text))], spans=False, detail=content[:200]) if refused else None
