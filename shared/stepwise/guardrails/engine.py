"""The guardrail engine: run a stage's rails over text, apply the actions, say what fired.

Actions: ``block`` (stop: the text is replaced by a refusal and nothing downstream sees it), ``redact``
(replace the findings with ``[EMAIL]``, ``[CARD]``…; checks without spans block instead), ``warn`` (let it
through, record it), ``escalate`` (let it through, and ask for a human: the agent writes ``guardrail`` so a
conditional edge can route to a human node). Every rail that fires is a ``Decision``; the runtime journals
each one as a ``guardrail`` event naming the rule, the check, the action and the kinds found (never the
matched text).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stepwise.graph.guardrails import GuardrailsConfig, RailSpec, Stage
from stepwise.guardrails import checks
from stepwise.guardrails.checks import Finding, Hit

REFUSAL = "I can't help with that request."


@dataclass
class Decision:
    """What one rail decided about a text (journalled without the matched text)."""

    rule: str
    stage: str
    check: str
    action: str
    kinds: list[str]
    score: float | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "stage": self.stage, "check": self.check, "action": self.action, "kinds": self.kinds}
        if self.score is not None:
            out["score"] = round(self.score, 3)
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class Verdict:
    """The rails' result for one text: the text as it may pass, and their decisions."""

    text: str
    decisions: list[Decision] = field(default_factory=list)
    blocked: bool = False
    escalate: bool = False
    #: Set when a ``schema`` rail failed: the caller may make one repair attempt.
    invalid: str | None = None


class Guardrails:
    """Rails of one node (graph rails merged with the node's)."""

    def __init__(self, config: GuardrailsConfig, *, adapters: dict[str, Any] | None = None) -> None:
        self.config = config
        self.adapters = adapters or {}

    def has(self, stage: Stage) -> bool:
        return bool(self.config.rails(stage))

    def check(self, stage: Stage, text: str) -> Verdict:
        verdict = Verdict(text)
        for rail in self.config.rails(stage):
            hit = self._run(rail, stage, verdict.text)
            if hit is None:
                continue
            action = rail.action
            if action == "redact" and not hit.spans:
                action = "block"  # nothing to cut out: the whole text is the problem
            kinds = sorted({f.kind for f in hit.findings}) or [rail.check]
            detail = "" if rail.check in ("bedrock", "nemo") else hit.detail  # their detail may quote the text
            verdict.decisions.append(Decision(rail.id or f"{stage}.{rail.check}", stage, rail.check, action, kinds, hit.score, detail))
            if rail.check == "schema":
                verdict.invalid = hit.detail
            if action == "block":
                verdict.blocked = True
                verdict.text = REFUSAL
                break
            if action == "redact":
                verdict.text = hit.detail if rail.check in ("bedrock", "nemo") else checks.redact(verdict.text, hit.findings)
            elif action == "escalate":
                verdict.escalate = True
        return verdict

    def _run(self, rail: RailSpec, stage: str, text: str) -> Hit | None:
        if rail.check == "pii":
            found = checks.find_pii(text, rail.kinds)
            return Hit(found) if found else None
        if rail.check == "injection":
            if rail.classifier:
                score = float(_import(rail.classifier)(text))
                return Hit([], score, spans=False) if score >= rail.threshold else None
            score, found = checks.injection_score(text)
            return Hit(found, score) if score >= rail.threshold else None
        if rail.check == "deny":
            found = checks.find_denied(text, rail.words, rail.topics)
            return Hit(found) if found else None
        if rail.check == "max_length":
            limit = rail.max or 4000
            return Hit([Finding("max_length", limit, len(text))], detail=f"{len(text)} > {limit} characters") if len(text) > limit else None
        if rail.check == "schema":
            problem = schema_problem(text, rail.schema_ or {})
            return Hit([], detail=problem, spans=False) if problem else None
        if rail.check == "bedrock":
            from stepwise.guardrails.bedrock import apply_guardrail

            return apply_guardrail(self.adapters.get("bedrock"), rail, stage, text)
        if rail.check == "nemo":
            from stepwise.guardrails.nemo import nemo_check

            return nemo_check(rail, text, stage)
        return None

    # -- structured values (tool arguments and results) ---------------------------------------------------
    def check_value(self, stage: Stage, value: Any) -> tuple[Any, Verdict]:
        """Check a JSON value: strings are checked and redacted in place; a block replaces the whole value."""
        verdict = Verdict("")

        def walk(node: Any) -> Any:
            if isinstance(node, str):
                one = self.check(stage, node)
                verdict.decisions += one.decisions
                verdict.blocked |= one.blocked
                verdict.escalate |= one.escalate
                return one.text
            if isinstance(node, dict):
                return {k: walk(v) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            return node

        out = walk(value)
        return out, verdict

    # -- streaming ---------------------------------------------------------------------------------------
    def stream(self, emit: Callable[[str], None], stage: Stage = "output") -> StreamGuard:
        return StreamGuard(self, emit, stage, self.config.stream_window)


class StreamGuard:
    """Checks streamed output in windows without switching streaming off: text is forwarded once it is at
    least ``window`` characters behind the head (so a match that straddles chunks is still seen whole);
    a block stops forwarding; a redaction is applied before the text leaves."""

    def __init__(self, guard: Guardrails, emit: Callable[[str], None], stage: Stage, window: int) -> None:
        self.guard, self.emit, self.stage, self.window = guard, emit, stage, window
        self.buffer = ""
        self.blocked = False
        self.decisions: list[Decision] = []
        self.checks = 0

    def feed(self, text: str) -> None:
        if self.blocked:
            return
        self.buffer += text
        if len(self.buffer) > 2 * self.window:
            self._flush(len(self.buffer) - self.window)

    def close(self) -> None:
        if not self.blocked and self.buffer:
            self._flush(len(self.buffer))

    def _flush(self, upto: int) -> None:
        verdict = self.guard.check(self.stage, self.buffer)
        self.checks += 1
        self.decisions += verdict.decisions
        if verdict.blocked:
            self.blocked = True
            self.buffer = ""
            return
        text = verdict.text
        cut = upto - (len(self.buffer) - len(text))  # redaction changed lengths before the cut point
        cut = max(0, min(cut, len(text)))
        self.emit(text[:cut])
        self.buffer = text[cut:]


def schema_problem(text: str, schema: dict[str, Any]) -> str | None:
    """Why ``text`` is not JSON matching ``schema`` (None when it is)."""
    import jsonschema

    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(body)
    except ValueError as exc:
        return f"not JSON: {exc}"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return f"{where}: {exc.message}"
    return None


def _import(path: str) -> Callable[[str], float]:
    import importlib

    module, _, attr = path.partition(":")
    fn: Callable[[str], float] = getattr(importlib.import_module(module), attr)
    return fn


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1000
