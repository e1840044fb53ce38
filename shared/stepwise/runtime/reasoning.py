"""The reasoning engine's pieces: prompt templates (part of the graph, so versioned with the agent),
optional chain-of-thought, and structured output validated with pydantic.

Templates use ``{{ name }}`` placeholders resolved against plain data only (``state.x``, ``task``,
``question``, ``item.title``) — dictionary keys and list indexes, never attributes, never eval.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

_VAR = re.compile(r"\{\{\s*([A-Za-z_][\w]*(?:\.[\w]+|\[\d+\])*)\s*\}\}")
_STEP = re.compile(r"\.([\w]+)|\[(\d+)\]")
_THINK = re.compile(r"<thinking>(.*?)</thinking>", re.S | re.I)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
COT_INSTRUCTION = "Think step by step inside <thinking>...</thinking> first; then, after the closing tag, give only the final answer."
_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "list[str]": list[str],
    "list[int]": list[int],
    "list[float]": list[float],
    "any": Any,
}


def lookup(data: Any, dotted: str) -> Any:
    """``state.items[0].title`` against plain dicts and lists; anything else resolves to None."""
    head = re.match(r"[A-Za-z_]\w*", dotted)
    if head is None or not isinstance(data, dict):
        return None
    value = data.get(head.group())
    for name, index in _STEP.findall(dotted[head.end() :]):
        if index:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        else:
            value = value.get(name) if isinstance(value, dict) else None
    return value


def render(template: str, variables: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        value = lookup(variables, m.group(1))
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)

    return _VAR.sub(sub, template)


def prompt_version(*parts: str | None) -> str:
    """Short hash of a node's templates: recorded on each llm_call so answers can be traced to the prompt."""
    return hashlib.sha256("\x1f".join(p or "" for p in parts).encode()).hexdigest()[:12]


def split_thinking(text: str) -> tuple[str, str]:
    """(thinking, answer) of a chain-of-thought reply."""
    found = _THINK.findall(text)
    return "\n".join(s.strip() for s in found), _THINK.sub("", text).strip()


def output_model(spec: str | dict[str, str]) -> type[BaseModel]:
    """A pydantic model from an import path (``pkg.mod:Model``) or a field → type mapping."""
    if isinstance(spec, str):
        module, _, attr = spec.partition(":")
        model = getattr(importlib.import_module(module), attr)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"output_schema {spec!r} is not a pydantic model")
        return model
    fields: dict[str, Any] = {}
    for name, type_name in spec.items():
        if type_name not in _TYPES:
            raise ValueError(f"output_schema field {name!r}: unknown type {type_name!r}; use one of {', '.join(_TYPES)}")
        fields[name] = (_TYPES[type_name], ...)
    return create_model("Output", **fields)


def extract_json(text: str) -> Any:
    """The JSON value in a reply: the whole text, a fenced block, or the outermost {...} / [...]."""
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
    raise ValueError("the reply holds no JSON value")


def parse_structured(text: str, model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(extract_json(text))
    except ValidationError:
        raise
    except ValueError as exc:
        raise ValueError(f"{exc}; expected JSON matching {json.dumps(model.model_json_schema())[:300]}") from None
