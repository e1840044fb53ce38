"""Guardrails: rails on input, tool calls (arguments and results), retrieved memory and output.

Configure with ``guardrails:`` on a graph or node (``stepwise.graph.guardrails``); the runtime runs them
(``stepwise.runtime.guard``) and journals every decision as a ``guardrail`` event. See docs/security.md.
"""

from stepwise.graph.guardrails import GuardrailsConfig, RailSpec
from stepwise.guardrails.engine import REFUSAL, Decision, Guardrails, StreamGuard, Verdict

__all__ = ["REFUSAL", "Decision", "Guardrails", "GuardrailsConfig", "RailSpec", "StreamGuard", "Verdict"]
