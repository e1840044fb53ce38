"""From conversation to memories: extraction, importance scoring and summaries.

``extract_rules`` is the offline, deterministic extractor (the default, ``extract: rules``). It reads the
*user's* sentences only (an assistant's claims are not facts about the user) and keeps:

- preferences — "I prefer / like / love / hate / don't like / always / never / I'm allergic to …" →
  ``preference`` with a key from the object's last word ("window seats" and "aisle seats" share
  ``pref:seat``, so the newer supersedes the older);
- facts — "my X is Y", "I am / I'm …", "I live / work …" → ``semantic`` with key ``fact:<X>``.

Sentences are rewritten in the third person ("I prefer" → "The user prefers"). ``score`` gives the
importance used to keep or drop a memory at consolidation; ``summarize`` is an extractive summary.
An LLM extractor (``extract: model``) returns the same ``Candidate`` objects from the model's JSON,
validated item by item (``ModelMemory``); a reply that is not a JSON list raises ``ExtractionError``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_PREF = re.compile(
    r"\b(i|we)\s+(?:really\s+|usually\s+|always\s+|would\s+)?(prefer|like|love|hate|dislike|want|enjoy|don't like|do not like|"
    r"never want|can't stand)\b\s+(?P<obj>[^,;]+)",
    re.I,
)
_ALWAYS = re.compile(r"\b(i|we)\s+(always|never)\s+(?P<obj>[^,;]+)", re.I)
_ALLERGY = re.compile(r"\bi(?:'m| am)\s+(allergic to|vegetarian|vegan|lactose intolerant)\b\s*(?P<obj>[^,;]*)", re.I)
_MY = re.compile(r"\bmy\s+(?P<what>[a-z][a-z' -]{1,40}?)\s+(?:is|are)\s+(?P<val>[^,;]+)", re.I)
_IAM = re.compile(r"\bi(?:'m| am)\s+(?:a |an )?(?P<val>[^,;]+)", re.I)
_ILIVE = re.compile(r"\bi\s+(live|work|study)\s+(?P<val>[^,;]+)", re.I)
_WORD = re.compile(r"[a-z]+")
_THIRD = [
    (r"\bI'm\b", "the user is"),
    (r"\bI am\b", "the user is"),
    (r"\bI don't\b", "the user doesn't"),
    (r"\bI do not\b", "the user does not"),
    (r"\bI can't\b", "the user can't"),
    (r"\bI've\b", "the user has"),
    (r"\bmy\b", "the user's"),
    (r"\bMy\b", "the user's"),
    (r"\bme\b", "the user"),
    (r"\bmine\b", "the user's"),
]
_VERBS = {
    "prefer": "prefers",
    "like": "likes",
    "love": "loves",
    "hate": "hates",
    "dislike": "dislikes",
    "want": "wants",
    "enjoy": "enjoys",
    "live": "lives",
    "work": "works",
    "study": "studies",
    "always": "always",
    "never": "never",
    "usually": "usually",
    "really": "really",
    "would": "would",
}
_STRONG = re.compile(r"\b(always|never|allergic|must|important|remember|don't ever)\b", re.I)


@dataclass
class Candidate:
    """A memory extracted from a conversation, before it is stored."""

    text: str
    strategy: str
    key: str | None
    importance: float
    origin: str = ""


def third_person(sentence: str) -> str:
    s = sentence.strip().rstrip(".!?")
    for pattern, repl in _THIRD:
        s = re.sub(pattern, repl, s)

    def verb(match: re.Match[str]) -> str:
        word = match.group(2)
        low = word.lower()
        return f"the user {_VERBS.get(low) or (low if low.endswith('s') else low + 's')}"

    s = re.sub(r"\b(I|we)\s+([a-z]+)", verb, s)
    s = s.replace("  ", " ").strip()
    return (s[0].upper() + s[1:] + ".") if s else s


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


_CUT = frozenset(re.findall(r"\w+", "on in at for with when because now instead rather than over to from during while if so but and"))
_SKIP = frozenset(("the", "a", "an", "my", "our", "your", "some"))


def _key(prefix: str, phrase: str) -> str:
    """Topic of the object: its head noun phrase (cut at the first preposition or adverb), last word, singular."""
    words: list[str] = []
    for word in _WORD.findall(phrase.lower()):
        if word in _CUT and words:
            break
        if word not in _SKIP and word not in _CUT:
            words.append(word)
    return f"{prefix}:{_stem(words[-1]) if words else 'general'}"


def score(candidate_text: str, strategy: str) -> float:
    base = {"preference": 0.8, "semantic": 0.7, "procedural": 0.6, "summary": 0.5, "episode": 0.3}.get(strategy, 0.5)
    if _STRONG.search(candidate_text):
        base += 0.15
    if re.search(r"\d", candidate_text):
        base += 0.05
    return round(min(base, 1.0), 3)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def extract_rules(messages: Sequence[dict[str, Any]]) -> list[Candidate]:
    found: list[Candidate] = []
    for message in messages:
        if message.get("role") != "user" or message.get("name"):
            continue
        for sentence in sentences(str(message.get("content") or "")):
            if sentence.endswith("?"):
                continue
            cand: Candidate | None = None
            if m := _ALLERGY.search(sentence):
                kind = "-".join(_WORD.findall(m.group(1).lower())[:1])
                cand = Candidate(third_person(sentence), "preference", _key(f"pref:{kind}", m.group("obj") or kind), 0)
            elif (m := _PREF.search(sentence)) or (m := _ALWAYS.search(sentence)):
                cand = Candidate(third_person(sentence), "preference", _key("pref", m.group("obj")), 0)
            elif m := _MY.search(sentence):
                cand = Candidate(third_person(sentence), "semantic", "fact:" + "-".join(_WORD.findall(m.group("what").lower())), 0)
            elif m := _ILIVE.search(sentence):
                cand = Candidate(third_person(sentence), "semantic", f"fact:{m.group(1).lower()}", 0)
            elif m := _IAM.search(sentence):
                cand = Candidate(third_person(sentence), "semantic", None, 0)
            if cand is not None:
                cand.importance = score(cand.text, cand.strategy)
                cand.origin = sentence
                found.append(cand)
    return found


def episode(question: str, answer: str, limit: int = 400) -> Candidate:
    text = f"Asked: {question.strip()[:limit]} — answered: {answer.strip()[:limit]}"
    return Candidate(text, "episode", None, score(text, "episode"))


def summarize(messages: Sequence[dict[str, Any]], previous: str | None = None, limit: int = 1200) -> str:
    """Extractive: the previous summary, then each user turn's first sentence and each answer's first sentence."""
    lines = [previous.strip()] if previous else []
    for m in messages:
        role = m.get("role")
        if role not in ("user", "assistant") or not str(m.get("content") or "").strip():
            continue
        first = sentences(str(m["content"]))[:1]
        if first:
            lines.append(f"{'User' if role == 'user' else 'Assistant'}: {first[0][:200]}")
    text = " ".join(lines)
    return text if len(text) <= limit else "… " + text[-limit:]


MODEL_EXTRACT_PROMPT = (
    "Extract durable memories about the user from the conversation above. Reply with only JSON: a list of "
    '{"text": "third-person statement", "strategy": "preference|semantic", "key": "short topic id", "importance": 0.0-1.0}. '
    "Reply [] if there is nothing worth remembering."
)


class ExtractionError(ValueError):
    """The model's extraction reply was not the JSON list the prompt asks for: nothing is stored."""


class ModelMemory(BaseModel):
    """One memory as the model must return it (``MODEL_EXTRACT_PROMPT``); anything else in an item is ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    text: str = Field(min_length=1, max_length=2000)
    strategy: Literal["preference", "semantic", "episode", "summary"] = "semantic"
    key: str | None = Field(default=None, max_length=200)
    importance: float | None = None

    @field_validator("importance", mode="before")
    @classmethod
    def _clamp(cls, value: Any) -> float | None:
        if value is None:
            return None
        return max(0.0, min(1.0, float(value)))  # a non-number raises: the item is invalid


def from_model_json(data: Any) -> tuple[list[Candidate], list[str]]:
    """Candidates from the model's JSON, validated item by item, and the reasons items were rejected.

    ``data`` must be a list (``[]`` means nothing to remember); anything else raises ``ExtractionError``."""
    if not isinstance(data, list):
        raise ExtractionError(f"expected a JSON list of memories, got a JSON {type(data).__name__}")
    out: list[Candidate] = []
    rejected: list[str] = []
    for i, item in enumerate(data):
        try:
            found = ModelMemory.model_validate(item)
        except ValidationError as exc:
            problem = exc.errors()[0]
            rejected.append(f"item {i}: {'.'.join(str(p) for p in problem['loc']) or 'item'}: {problem['msg']}")
            continue
        importance = found.importance if found.importance is not None else score(found.text, found.strategy)
        out.append(Candidate(found.text, found.strategy, found.key or None, importance, origin="model"))
    return out, rejected
