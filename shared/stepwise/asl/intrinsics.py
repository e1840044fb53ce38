"""ASL intrinsic functions (``States.Format(...)`` etc.) used in Parameters, parsed without eval."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from stepwise.asl import paths
from stepwise.errors import StepwiseError

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<path>\$\$?[\w.\[\]'\"-]*)|(?P<fn>States\.\w+)\(|(?P<close>\))|(?P<comma>,)|(?P<lit>true|false|null))"
)


class IntrinsicError(StepwiseError, ValueError):
    """Bad intrinsic syntax or arguments (States.IntrinsicFailure)."""


def is_intrinsic(text: str) -> bool:
    return text.startswith("States.")


def call(text: str, data: Any, context: Any) -> Any:
    value, pos = _parse_call(text, 0, data, context)
    if text[pos:].strip():
        raise IntrinsicError(f"unexpected text after intrinsic: {text[pos:]!r}")
    return value


def _parse_call(text: str, pos: int, data: Any, context: Any) -> tuple[Any, int]:
    m = _TOKEN.match(text, pos)
    if not m or not m.group("fn"):
        raise IntrinsicError(f"expected States.Function( at {text[pos:]!r}")
    name = m.group("fn")
    pos = m.end()
    args: list[Any] = []
    while True:
        m = _TOKEN.match(text, pos)
        if not m:
            raise IntrinsicError(f"cannot parse arguments of {name} at {text[pos:]!r}")
        if m.group("close"):
            pos = m.end()
            break
        if m.group("comma"):
            pos = m.end()
            continue
        if m.group("fn"):
            value, pos = _parse_call(text, m.start("fn"), data, context)
            args.append(value)
            continue
        pos = m.end()
        if m.group("str") is not None:
            args.append(m.group("str")[1:-1].replace("\\'", "'").replace("\\{", "{").replace("\\}", "}"))
        elif m.group("num") is not None:
            num = m.group("num")
            args.append(float(num) if "." in num else int(num))
        elif m.group("path") is not None:
            args.append(paths.get(data, m.group("path"), context))
        else:
            args.append(json.loads(m.group("lit")))
    fn = _FUNCTIONS.get(name)
    if fn is None:
        raise IntrinsicError(f"unsupported intrinsic {name}; supported: {', '.join(sorted(_FUNCTIONS))}")
    return fn(*args), pos


def _format(template: str, *args: Any) -> str:
    parts = template.split("{}")
    if len(parts) - 1 != len(args):
        raise IntrinsicError(f"States.Format: template has {len(parts) - 1} placeholders but {len(args)} arguments")
    out = parts[0]
    for arg, part in zip(args, parts[1:], strict=True):
        out += (arg if isinstance(arg, str) else json.dumps(arg)) + part
    return out


def _merge(a: dict[str, Any], b: dict[str, Any], deep: bool = False) -> dict[str, Any]:
    if deep:
        raise IntrinsicError("States.JsonMerge: deep merge is not supported by Step Functions either; pass false")
    return {**a, **b}


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "States.Format": _format,
    "States.StringToJson": lambda s: json.loads(s),
    "States.JsonToString": lambda v: json.dumps(v, separators=(",", ":")),
    "States.Array": lambda *a: list(a),
    "States.ArrayLength": lambda a: len(a),
    "States.ArrayGetItem": lambda a, i: a[i],
    "States.ArrayContains": lambda a, v: v in a,
    "States.JsonMerge": _merge,
    "States.MathAdd": lambda a, b: a + b,
    "States.UUID": lambda: str(uuid.uuid4()),
}
