"""Model strings → provider targets.

``scripted`` · ``openai:gpt-4o-mini`` · ``anthropic:claude-3-5-haiku-latest`` ·
``bedrock:anthropic.claude-3-haiku-20240307-v1:0`` · ``local:http://127.0.0.1:11434/v1#llama3`` (any
OpenAI-compatible server) · ``tier:small`` / ``auto`` (the cost optimizer picks) · ``a|b`` (try ``a``,
fail over to ``b``).
"""

from __future__ import annotations

from dataclasses import dataclass

from stepwise.errors import StepwiseError

PROVIDERS = ("scripted", "openai", "anthropic", "bedrock", "local")


class ModelStringError(StepwiseError, ValueError):
    """A model string that names no known provider or is malformed."""


@dataclass(frozen=True)
class Target:
    """One model a call may go to: provider, model and endpoint."""

    provider: str
    model: str
    base_url: str | None = None

    @property
    def label(self) -> str:
        """What events and prices call it: the model string in canonical form."""
        if self.provider == "local":
            return f"local:{self.base_url}#{self.model}"
        return self.provider if self.provider == "scripted" else f"{self.provider}:{self.model}"

    @property
    def breaker_key(self) -> str:
        """Circuit breakers are per provider endpoint: one outage trips every model behind it."""
        return f"local:{self.base_url}" if self.provider == "local" else self.provider


def parse(model: str) -> Target:
    text = model.strip()
    if text in ("", "scripted") or text.startswith("scripted:"):
        return Target("scripted", text.partition(":")[2] or "scripted")
    provider, sep, rest = text.partition(":")
    if not sep or provider not in PROVIDERS:
        raise ModelStringError(
            f"unknown model string {model!r}: use scripted, openai:MODEL, anthropic:MODEL, bedrock:MODEL_ID, "
            "local:http://HOST:PORT/v1#MODEL, tier:small|medium|large or auto"
        )
    if provider == "local":
        url, hash_, name = rest.partition("#")
        if not url.startswith(("http://", "https://")) or not hash_ or not name:
            raise ModelStringError(f"local model string {model!r} must look like local:http://127.0.0.1:11434/v1#llama3")
        return Target("local", name, url)
    if not rest:
        raise ModelStringError(f"model string {model!r} names no model after '{provider}:'")
    return Target(provider, rest)


def is_routed(model: str) -> bool:
    """Does the cost optimizer choose the model (``auto``, ``tier:X``)?"""
    return model.strip() == "auto" or model.strip().startswith("tier:")


def chain(model: str) -> list[str]:
    """A failover chain ``a|b|c`` as its members (a single model is a chain of one)."""
    return [m.strip() for m in model.split("|") if m.strip()]
