"""``guardrails:`` of a graph or a node (pure data; the engine is ``stepwise.guardrails``).

    guardrails:
      input:        [{check: injection, action: block}, {check: pii, action: redact}]
      tool_args:    [{check: pii, action: block}]
      tool_results: [{check: injection, action: redact}]
      memory:       [{check: injection, action: redact}]
      output:       [{check: pii, action: redact}, {check: deny, words: [refund], action: escalate}]
      stream_window: 256

A node's ``guardrails:`` replaces the graph's for the stages it names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Check = Literal["pii", "injection", "deny", "max_length", "schema", "bedrock", "nemo"]
Action = Literal["block", "redact", "warn", "escalate"]
Stage = Literal["input", "tool_args", "tool_results", "memory", "output"]
STAGES: tuple[Stage, ...] = ("input", "tool_args", "tool_results", "memory", "output")


class RailSpec(BaseModel):
    """One guardrail rule: the check, what to do on a hit, and its options."""

    model_config = ConfigDict(extra="forbid")
    check: Check
    action: Action = "block"
    id: str | None = None  # the rule's name in events (default: "<stage>.<check>")
    #: pii: which kinds (email, phone, card, iban, secret); default all.
    kinds: list[str] | None = None
    #: deny: words/phrases (whole-word, case-insensitive) and topics (name → keywords).
    words: list[str] = Field(default_factory=list)
    topics: dict[str, list[str]] = Field(default_factory=dict)
    #: injection: score threshold (0-1) for the heuristic/classifier.
    threshold: float = Field(default=0.5, ge=0, le=1)
    classifier: str | None = None  # "module:function" (text) -> score 0..1, replaces the heuristics
    #: max_length: characters.
    max: int | None = Field(default=None, ge=1)
    #: schema: a JSON schema the output must match (one repair attempt is made).
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    #: bedrock: ApplyGuardrail identifier and version.
    guardrail_id: str | None = None
    guardrail_version: str = "DRAFT"
    #: nemo: path of a NeMo Guardrails config directory.
    config_path: str | None = None


class GuardrailsConfig(BaseModel):
    """The rails per stage (input, tool arguments and results, memory, output)."""

    model_config = ConfigDict(extra="forbid")
    input: list[RailSpec] | None = None
    tool_args: list[RailSpec] | None = None
    tool_results: list[RailSpec] | None = None
    memory: list[RailSpec] | None = None
    output: list[RailSpec] | None = None
    stream_window: int = Field(default=256, ge=16)

    def rails(self, stage: Stage) -> list[RailSpec]:
        return list(getattr(self, stage) or [])

    def merged(self, node: GuardrailsConfig | None) -> GuardrailsConfig:
        """The node's stages override the graph's."""
        if node is None:
            return self
        data = self.model_dump(by_alias=True)
        for stage in STAGES:
            mine = getattr(node, stage)
            if mine is not None:
                data[stage] = [r.model_dump(by_alias=True) for r in mine]
        if "stream_window" in node.model_fields_set:
            data["stream_window"] = node.stream_window
        return GuardrailsConfig.model_validate(data)
