"""What a human node accepts as its answer, checked before a resume touches the run.

A human node may declare its answer's schema (``input: {decision: {enum: [yes, no, revise]}}``): then the
answer must have every required key, no other key, and values of the declared type and enum. Without a
schema the answer must still be a non-empty object, and when the conditions after the node read state
keys (``state.decision``), it must set at least one of them — so a typo (``decison``) is refused instead of
silently taking the ``else`` branch.
"""

from __future__ import annotations

import json
from typing import Any

from stepwise.graph.conditions import state_keys
from stepwise.graph.keys import nearest_name
from stepwise.graph.spec import AnswerField, GraphSpec

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def expected_keys(spec: GraphSpec, node: str) -> list[str]:
    """The keys a human node's answer is expected to set: its declared ``input:``, else what its conditions read."""
    declared = spec.graph.nodes[node].input
    if declared is not None:
        return list(declared)
    found: list[str] = []
    for cond in spec.graph.conditional_edges:
        if cond.source == node:
            for item in cond.conditions:
                if item.when is not None:
                    found += sorted(state_keys(item.when) - set(found))
    return found


def example(spec: GraphSpec, node: str) -> str:
    """A valid answer to show in an error, e.g. ``{"decision": "yes"}``."""
    declared = spec.graph.nodes[node].input
    if declared is None:
        return json.dumps({k: "..." for k in expected_keys(spec, node)[:3]} or {"answer": "..."})
    placeholder = {"string": "...", "number": 1, "integer": 1, "boolean": True, "object": {}, "array": [], "any": "..."}
    return json.dumps({k: f.enum[0] if f.enum else placeholder[f.type] for k, f in declared.items() if f.required})


def answer_problems(spec: GraphSpec, node: str, answer: dict[str, Any] | None) -> list[str]:
    """Why ``answer`` is not acceptable for the human node ``node`` of ``spec`` (empty when it is)."""
    declared = spec.graph.nodes[node].input
    expected = expected_keys(spec, node)
    if not answer:
        return ["no answer was given (the answer is a JSON object that becomes the node's update)"]
    if declared is not None:
        return _against_schema(declared, answer)
    if expected and not set(answer) & set(expected):
        problems = []
        for key in answer:
            guess = nearest_name(key, expected)
            problems.append(f"unexpected key {key!r}" + (f" (did you mean {guess!r}?)" if guess else ""))
        reads = ", ".join(f"state.{k}" for k in expected)
        return [f"the conditions after {node!r} read {reads}, but the answer sets none of them: {'; '.join(problems)}"]
    return []


def _against_schema(declared: dict[str, AnswerField], answer: dict[str, Any]) -> list[str]:
    problems = []
    for key in answer:
        if key not in declared:
            guess = nearest_name(key, declared)
            hint = f"did you mean {guess!r}? " if guess else ""
            problems.append(f"unexpected key {key!r} ({hint}the node expects: {', '.join(declared)})")
    for key, field in declared.items():
        if key not in answer:
            if field.required:
                allowed = f" (one of: {', '.join(map(str, field.enum))})" if field.enum else ""
                problems.append(f"missing key {key!r}{allowed}")
            continue
        value = answer[key]
        if field.enum is not None and value not in field.enum:
            problems.append(f"{key!r} is {value!r}; allowed: {', '.join(json.dumps(v) for v in field.enum)}")
        elif field.type != "any" and not _is(value, field.type):
            problems.append(f"{key!r} must be a {field.type}, not {type(value).__name__}")
    return problems


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("number", "integer"):
        return False
    return isinstance(value, _TYPES[kind])
