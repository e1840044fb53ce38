"""Amazon Bedrock Guardrails as a rail: ``{check: bedrock, guardrail_id: ..., guardrail_version: "1"}``.

Calls ``bedrock-runtime`` ``ApplyGuardrail`` (source INPUT for input/tool/memory stages, OUTPUT for output);
``GUARDRAIL_INTERVENED`` is a hit whose kinds are the policies that fired; the guardrail's own masked text
is used when the rail's action is ``redact``.
"""

from __future__ import annotations

from typing import Any

from stepwise.graph.guardrails import RailSpec
from stepwise.guardrails.checks import Finding, Hit


def apply_guardrail(client: Any, rail: RailSpec, stage: str, text: str) -> Hit | None:

    if not rail.guardrail_id:
        raise ValueError("a bedrock rail needs guardrail_id (and guardrail_version, default DRAFT)")
    if client is None:
        from stepwise.awsclients import client as aws_client

        client = aws_client("bedrock-runtime")
    reply = client.apply_guardrail(
        guardrailIdentifier=rail.guardrail_id,
        guardrailVersion=rail.guardrail_version,
        source="OUTPUT" if stage == "output" else "INPUT",
        content=[{"text": {"text": text}}],
    )
    if reply.get("action") != "GUARDRAIL_INTERVENED":
        return None
    kinds = sorted(_policies(reply.get("assessments") or []))
    masked = "".join(o.get("text", "") for o in reply.get("outputs") or [])
    hit = Hit([Finding(f"bedrock:{k}", 0, len(text)) for k in kinds] or [Finding("bedrock", 0, len(text))], spans=bool(masked))
    hit.detail = masked  # the redaction Bedrock proposes
    return hit


def _policies(assessments: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for a in assessments:
        for policy, body in a.items():
            if isinstance(body, dict) and body:
                found.add(policy.removesuffix("Policy"))
    return found
