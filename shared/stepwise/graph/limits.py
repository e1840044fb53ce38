"""Admission limits for documents and values from outside: bounded before anything recursive touches them.

Why: PyYAML's composer, ``json.loads``, pydantic and ``ast.parse`` all recurse, and a YAML alias expands
to a full copy in anything that walks it (a 726-byte "billion laughs" document became 4 GiB). So a graph
document is measured first from PyYAML's *event stream* (flat, no recursion, aliases counted at their
expanded size), and JSON bodies from a flat scan, before any parser builds objects. The same limits apply
to the CLI (``stepwise validate``/``run``) and the API, through :func:`check_yaml` and :func:`check_json`.

Every limit can be changed for one install through an environment variable (``STEPWISE_MAX_*``), read once per
process (``process_limits``) and validated (a bad value raises ``LimitSettingError``, it is not skipped);
callers that hold their own ``Limits`` pass them in.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from stepwise.errors import SettingError, StepwiseError
from stepwise.settings import validated


class LimitSettingError(SettingError):
    """A ``STEPWISE_MAX_*`` variable holds a value the limit cannot take; the message names it and what is accepted."""


class Limits(BaseModel):
    """Size limits for graph documents and expressions, checked before parsing them.

    Each is a whole number from 1 to a ceiling: past it the parsers these limits protect fail on their own
    (CPython refuses to convert integers of more than 4,300 digits and to parse more than 200 nested
    parentheses; PyYAML, ``json`` and pydantic recurse once per nesting level), or the limit no longer
    bounds anything."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    values: int = Field(default=100_000, gt=0, le=100_000_000)  # values after alias expansion (a JSON dump's size)
    depth: int = Field(default=64, gt=0, le=256)  # nesting of mappings/sequences
    nodes: int = Field(default=5_000, gt=0, le=1_000_000)  # graph nodes (across inlined subgraphs)
    int_digits: int = Field(default=64, gt=0, le=4_300)  # digits of an integer literal
    expression_chars: int = Field(default=2_000, gt=0, le=1_000_000)  # characters of a condition expression
    expression_depth: int = Field(default=32, gt=0, le=200)  # nesting of a condition expression's syntax tree

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The limits in ``environ`` (default: this process's environment), each variable validated.

        A value that is not a whole number in range raises ``LimitSettingError`` naming the variable, its
        value and what is accepted: a typo must not leave a limit other than the one the operator meant."""
        env = os.environ if environ is None else environ
        return validated(cls, {field: env[var] for field, var in ENV.items() if var in env}, ENV, error=LimitSettingError)


#: Each limit's environment variable.
ENV: dict[str, str] = {field: f"STEPWISE_MAX_{field.upper()}" for field in Limits.model_fields}


_process: list[Limits] = []
_process_lock = threading.Lock()


def process_limits() -> Limits:
    """This process's limits: ``Limits.from_env()``, read once (on first use) and kept. Conditions are parsed
    inside pydantic validators and cached, so the graph layer cannot be handed limits per call."""
    with _process_lock:
        if not _process:
            _process.append(Limits.from_env())
        return _process[0]


class LimitError(StepwiseError, ValueError):
    """A document or value is beyond an admission limit; the message names the limit and how to fix it."""


_INT = re.compile(r"^[-+]?(0[xob])?[0-9_a-fA-F]+$")


def check_yaml(text: str, limits: Limits | None = None) -> None:
    """Measure a YAML (or JSON) document from its event stream; raise LimitError past any limit.

    Malformed YAML is left to the real parser, which reports it with a line number."""
    lim = limits or process_limits()
    sizes: dict[str, int] = {}  # anchor -> expanded size
    stack: list[tuple[str | None, int]] = []  # open collections: (anchor, values so far)
    total = 0

    def add(count: int) -> None:
        nonlocal total
        total += count
        if stack:
            anchor, seen = stack[-1]
            stack[-1] = (anchor, seen + count)
        if total > lim.values:
            raise LimitError(
                f"the document expands to more than {lim.values} values (YAML aliases count at their expanded size)",
            )

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                add(sizes.get(str(event.anchor), 1))
            elif isinstance(event, yaml.ScalarEvent):
                value = event.value
                if event.implicit[0] and len(value) > lim.int_digits and _INT.match(value):
                    raise LimitError(f"an integer has {len(value)} digits; at most {lim.int_digits} are accepted")
                if event.anchor:
                    sizes[str(event.anchor)] = 1
                add(1)
            elif isinstance(event, yaml.CollectionStartEvent):
                add(1)
                stack.append((event.anchor, 1))
                if len(stack) > lim.depth:
                    raise LimitError(f"the document nests deeper than {lim.depth} levels; flatten it")
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, seen = stack.pop()
                if anchor:
                    sizes[str(anchor)] = seen
                if stack:  # the child's values were already added to the running total; carry them up
                    parent, parent_seen = stack[-1]
                    stack[-1] = (parent, parent_seen + seen - 1)
    except yaml.YAMLError:
        return


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_LONG_INT = re.compile(r"(?<![\w.])-?\d{%d,}")


def check_json(text: str, limits: Limits | None = None) -> Any:
    """Parse a JSON body within the limits: nesting depth (a flat scan first, so ``json`` never recurses
    too deep), integer size, and text that SQLite and UTF-8 can store (no lone surrogates)."""
    lim = limits or process_limits()
    skeleton = _STRING.sub('""', text)
    depth = deepest = 0
    for match in _BRACKETS.finditer(skeleton):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > lim.depth:
            raise LimitError(f"the JSON body nests deeper than {lim.depth} levels; flatten it")
    if re.search(_LONG_INT.pattern % (lim.int_digits + 1), skeleton):
        raise LimitError(f"an integer has more than {lim.int_digits} digits; send big numbers as strings")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise LimitError(f"the body is not valid JSON: {exc}") from None
    check_value(value, lim, what="the body")
    return value


def check_value(value: Any, limits: Limits | None = None, what: str = "the input", *, where: str | None = None, verb: str = "send") -> None:
    """A parsed value is storable: no lone surrogates (UTF-8 cannot encode them), no oversized ints,
    within the depth limit. Iterative, so a deep value cannot overflow the stack here.

    ``where`` names the value's root (a node's channel): a problem then says where inside it it lies
    (``tags[1].when``), so the author can find it; ``verb`` is what the advice asks for (send, return).
    A quick walk (``_plain_count``) clears the common case; paths are kept only when it finds something."""
    lim = limits or process_limits()
    if 0 <= _plain_count(value, 0, lim) <= lim.values:
        return
    _walk(value, lim, what, where, verb)  # raises, saying what and where (or passes what the quick walk left to it)


def _plain_count(value: Any, depth: int, lim: Limits) -> int:
    """How many values ``value`` holds when every one is plainly storable, else -1. The quick walk for the
    common case (every step's update goes through it): exact types only, no paths, nothing allocated; anything
    unusual (a subclass, a non-text key, a problem) is left to ``_walk``, which says what is wrong and where."""
    kind = type(value)
    if kind is str:
        return 1 if value.isascii() or _encodes(value) else -1
    if kind is int:
        return 1 if _int_fits(value, lim) else -1
    if kind is float:
        return 1 if math.isfinite(value) else -1
    if value is None or kind is bool:
        return 1
    if depth >= lim.depth:
        return -1
    total = 1
    if kind is dict:
        for key, sub in value.items():
            if type(key) is not str or not (key.isascii() or _encodes(key)):
                return -1
            count = _plain_count(sub, depth + 1, lim)
            if count < 0:
                return -1
            total += count
        return total
    if kind is list or kind is tuple:
        for sub in value:
            count = _plain_count(sub, depth + 1, lim)
            if count < 0:
                return -1
            total += count
        return total
    return -1


def _int_fits(value: int, lim: Limits) -> bool:
    return value.bit_length() <= lim.int_digits * 3.33  # ~3.32 bits a decimal digit


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(value: Any, lim: Limits, what: str, where: str | None, verb: str) -> None:
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(value, 0, ())]
    seen = 0
    while stack:
        item, depth, path = stack.pop()
        seen += 1
        if depth > lim.depth:
            raise LimitError(f"{what} nests deeper than {lim.depth} levels{_at(where, path)}; flatten it")
        if seen > lim.values:
            raise LimitError(f"{what} holds more than {lim.values} values")
        if isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):  # stored, 1 read back as "1" and None as "null"; a tuple failed the write
                    kind = type(key).__name__
                    raise LimitError(
                        f"{what} holds {a_or_an(kind)} {kind} key {key!r}{_at(where, path)}, which JSON cannot carry (its keys are text); "
                        f"{verb} the key as text, e.g. {str(key)!r}"
                    )
                _check_text(key, what, where, path, verb)
                stack.append((sub, depth + 1, (*path, key) if where is not None else path))
        elif isinstance(item, list | tuple):
            stack.extend((sub, depth + 1, (*path, i) if where is not None else path) for i, sub in enumerate(item))
        else:
            _check_scalar(item, lim, what, where, path, verb)


def _check_scalar(item: Any, lim: Limits, what: str, where: str | None, path: tuple[str | int, ...], verb: str) -> None:
    if isinstance(item, str):
        _check_text(item, what, where, path, verb)
    elif isinstance(item, bool) or item is None:
        return
    elif isinstance(item, int):
        if not _int_fits(item, lim):
            raise LimitError(f"{what} holds an integer with more than {lim.int_digits} digits{_at(where, path)}; {verb} it as a string")
    elif isinstance(item, float):
        if not math.isfinite(item):  # stored, it read back as null
            raise LimitError(f"{what} holds {item!r}{_at(where, path)}, which JSON cannot carry; {verb} a finite number, a string or null")
    else:  # a set, a date, an object: stored as its str() or a list, it read back different
        kind = type(item).__name__
        instead = _INSTEAD.get(kind, _JSON_TYPES)
        raise LimitError(f"{what} holds {a_or_an(kind)} {kind}{_at(where, path)}, which JSON cannot carry; {verb} {instead}")


def a_or_an(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


_JSON_TYPES = "lists, objects, text and numbers"
#: What to use instead of a value JSON cannot carry, for the common ones.
_INSTEAD = {
    "set": f"a list (sorted(...) for a stable order); JSON has {_JSON_TYPES}",
    "frozenset": f"a list (sorted(...) for a stable order); JSON has {_JSON_TYPES}",
    "datetime": f"an ISO 8601 string (.isoformat()); JSON has {_JSON_TYPES}",
    "date": f"an ISO 8601 string (.isoformat()); JSON has {_JSON_TYPES}",
    "bytes": f"text (decoded, or base64); JSON has {_JSON_TYPES}",
    "Decimal": f"a number or a string; JSON has {_JSON_TYPES}",
}


def _at(where: str | None, path: tuple[str | int, ...]) -> str:
    """`` at root.key[0]`` for a problem inside a value whose root is named (``root['a b']`` when a key is not
    a plain name); nothing when it is not."""
    if where is None:
        return ""
    out = where
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if part.isidentifier() else f"[{part!r}]"
    return f" at {out}"


def _check_text(text: str, what: str, where: str | None, path: tuple[str | int, ...], verb: str) -> None:
    if not _encodes(text):
        here = _at(where, path)
        raise LimitError(f"{what} holds a lone surrogate (like \\ud800){here}, which is not text; {verb} valid Unicode")


def check_expression(expression: str, limits: Limits | None = None) -> None:
    """Bound a condition expression before ``ast.parse`` sees it (its parser recurses)."""
    lim = limits or process_limits()
    if len(expression) > lim.expression_chars:
        raise LimitError(f"the expression is {len(expression)} characters; at most {lim.expression_chars} are accepted")
    depth = deepest = 0
    for char in expression:
        if char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
    operators = len(re.findall(r"\bnot\b|-", expression))
    if deepest > lim.expression_depth or operators > lim.expression_depth * 4:
        raise LimitError(f"the expression nests deeper than {lim.expression_depth} levels; split the condition")


def count_nodes(spec: Any, limits: Limits | None = None) -> None:
    """Raise LimitError if a spec (with its inlined subgraphs) has more nodes than the limit."""
    lim = limits or process_limits()
    total, stack = 0, [spec]
    while stack:
        current = stack.pop()
        nodes = current.graph.nodes
        total += len(nodes)
        stack.extend(n.subgraph_spec for n in nodes.values() if getattr(n, "subgraph_spec", None) is not None)
    if total > lim.nodes:
        raise LimitError(f"the graph has {total} nodes; at most {lim.nodes} are accepted (STEPWISE_MAX_NODES)")
