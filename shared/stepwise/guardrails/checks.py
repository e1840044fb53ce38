"""Built-in checks: each takes text and returns findings (what matched, where) — never the whole text.

- ``pii``: emails, phone numbers, payment cards (Luhn-valid only), IBANs (mod-97-valid only), keys and
  tokens (AWS access keys, OpenAI/Anthropic/GitHub/Slack tokens, JWTs, PEM private keys, bearer secrets);
- ``injection``: prompt-injection / jailbreak heuristics, a weighted score; a classifier can replace it;
- ``deny``: whole-word deny lists and topics; ``max_length``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One match of a check in a text: its kind and span."""

    kind: str
    start: int
    end: int
    score: float = 1.0


@dataclass
class Hit:
    """What one rail found in a text: its findings, a score for scored rails, and whether the findings are
    spans that can be redacted in place (a provider's verdict on the whole text is not)."""

    findings: list[Finding]
    score: float | None = None
    detail: str = ""
    spans: bool = True


# -- PII ---------------------------------------------------------------------------------------------
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[\s.-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?![\w-])(?![\s.-]?\d)"
)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
_SECRETS = [
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("api_key", re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}\b")),
    ("github_token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b")),
    ("slack_token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b")),
    ("private_key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("password", re.compile(r"(?i)\b(?:password|passwd|secret|api[_-]?key)\s*[:=]\s*\S{6,}")),
]
PII_KINDS = ("email", "phone", "card", "iban", "secret")


def luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rotated = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in rotated)
    return int(number) % 97 == 1


def find_pii(text: str, kinds: list[str] | None = None) -> list[Finding]:
    want = set(kinds or PII_KINDS)
    found: list[Finding] = []
    if "secret" in want:
        for name, pattern in _SECRETS:
            found += [Finding(f"secret:{name}", m.start(), m.end()) for m in pattern.finditer(text)]
    if "email" in want:
        found += [Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    if "iban" in want:
        found += [Finding("iban", m.start(), m.end()) for m in _IBAN.finditer(text) if iban_valid(m.group())]
    if "card" in want:
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and luhn(digits):
                found.append(Finding("card", m.start(), m.end()))
    if "phone" in want:
        for m in _PHONE.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 7 <= len(digits) <= 15 and not _overlaps(found, m.start(), m.end()):
                found.append(Finding("phone", m.start(), m.end()))
    return _dedupe(found)


def _overlaps(found: list[Finding], start: int, end: int) -> bool:
    return any(f.start < end and start < f.end for f in found)


def _dedupe(found: list[Finding]) -> list[Finding]:
    out: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if not _overlaps(out, f.start, f.end):
            out.append(f)
    return out


def redact(text: str, findings: list[Finding]) -> str:
    for f in sorted(findings, key=lambda f: f.start, reverse=True):
        label = f.kind.split(":")[0].upper()
        text = f"{text[: f.start]}[{label}]{text[f.end :]}"
    return text


# -- prompt injection / jailbreak ------------------------------------------------------------------------
_INJECTION: list[tuple[float, re.Pattern[str]]] = [
    (
        0.9,
        re.compile(
            r"(?i)\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}\b(?:previous|prior|above|earlier|all|your)\b[^.\n]{0,30}\b(?:instructions?|prompts?|rules|directions|guidelines)"
        ),
    ),
    (
        0.8,
        re.compile(
            r"(?i)\b(?:reveal|print|show|repeat|output|leak)\b[^.\n]{0,40}"
            r"\b(?:system prompt|hidden (?:prompt|instructions)|initial instructions|your instructions)"
        ),
    ),
    (0.8, re.compile(r"(?i)\byou are (?:now )?(?:DAN|in developer mode|jailbroken|unfiltered|no longer bound)")),
    (0.7, re.compile(r"(?i)\b(?:do anything now|developer mode (?:enabled|on)|jailbreak)\b")),
    (0.6, re.compile(r"(?i)\bpretend (?:that )?you (?:have no|are not bound by|don't have) (?:rules|restrictions|guidelines|filters)")),
    (0.6, re.compile(r"(?i)\b(?:new|updated) (?:system )?instructions?\s*:")),
    (0.6, re.compile(r"(?i)<\s*/?\s*(?:system|im_start|im_end)\s*>|\[/?INST\]|###\s*(?:system|instruction)")),
    (0.5, re.compile(r"(?i)\b(?:bypass|disable|turn off)\b[^.\n]{0,30}\b(?:safety|filters?|guardrails?|content policy|moderation)")),
    (0.5, re.compile(r"(?i)\bact as\b[^.\n]{0,40}\b(?:without|no) (?:restrictions|limits|filters|ethics)")),
    (0.4, re.compile(r"(?i)\b(?:call|invoke|use) the \w+ tool\b[^.\n]{0,60}\b(?:send|post|upload|exfiltrate)")),
]


def injection_score(text: str) -> tuple[float, list[Finding]]:
    """1 - prod(1 - weight) over the patterns that match: one strong signal or several weak ones."""
    findings = [Finding("injection", m.start(), m.end(), w) for w, p in _INJECTION for m in p.finditer(text)]
    remaining = 1.0
    for f in findings:
        remaining *= 1 - f.score
    return 1 - remaining, findings


Classifier = Callable[[str], float]


# -- deny lists and length ---------------------------------------------------------------------------
def find_denied(text: str, words: list[str], topics: dict[str, list[str]]) -> list[Finding]:
    found = []
    for word in words:
        found += [Finding(f"word:{word}", m.start(), m.end()) for m in re.finditer(rf"(?i)\b{re.escape(word)}\b", text)]
    for topic, keywords in topics.items():
        for word in keywords:
            found += [Finding(f"topic:{topic}", m.start(), m.end()) for m in re.finditer(rf"(?i)\b{re.escape(word)}\b", text)]
    return _dedupe(found)
