"""Built-in tools, referenced from graphs by bare name (``tools: [calculator]``) and served to agents as
an in-process MCP server (``server.py``): calculator, current_time, json_transform, http_fetch."""

from __future__ import annotations

import ast
import datetime as dt
import operator
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stepwise.asl import paths
from stepwise.llm.base import ToolSpec

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
MAX_FETCH_BYTES = 200_000


MAX_RESULT_BITS = 10_000  # about 3,000 decimal digits


def _check_size(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse an integer result over MAX_RESULT_BITS before computing it: the exponent bound alone let
    ``(((9**99)**99)**99)**99`` run for minutes (floats overflow by themselves, quickly)."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if isinstance(op, ast.Pow) and right > 0:
        bits = max(left.bit_length(), 1) * right
    elif isinstance(op, ast.Mult):
        bits = left.bit_length() + right.bit_length()
    else:
        return
    if bits > MAX_RESULT_BITS:
        raise ValueError(
            f"the result would have about {int(bits * 0.30103)} digits; the calculator stops at {int(MAX_RESULT_BITS * 0.30103)}"
        )


def calculator(expression: str) -> float | int:
    """Evaluate arithmetic (+ - * / // % ** and parentheses) by walking its syntax tree; never eval."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise ValueError("exponent too large")
            _check_size(node.op, left, right)
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        raise ValueError(f"calculator accepts numbers and + - * / // % ** ( ) only, not {ast.unparse(node)!r}")

    if len(expression) > 500:
        raise ValueError("expression longer than 500 characters")
    try:
        tree = ast.parse(expression.replace("×", "*").replace("÷", "/"), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {expression!r}: {exc.msg}") from None
    return walk(tree.body)  # type: ignore[no-any-return]


def current_time(timezone: str = "UTC") -> str:
    """The current time in ISO 8601, in the given IANA timezone (default UTC)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {timezone!r}; use an IANA name like Europe/Paris") from None
    return dt.datetime.fromtimestamp(time.time(), zone).isoformat(timespec="seconds")


def json_transform(data: Any, template: Any = None, path: str | None = None) -> Any:
    """Reshape JSON: ``path`` selects a value (``$.a.b[0]``); ``template`` builds an object whose keys ending
    in ``.$`` are paths into ``data`` (ASL Parameters syntax). Pure data in, data out."""
    if path is not None:
        return paths.get(data, path)
    if template is None:
        raise ValueError("give a path ($.a.b) or a template ({'name.$': '$.user.name'})")

    def build(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key.endswith(".$") and isinstance(value, str):
                    out[key[:-2]] = paths.get(data, value)
                else:
                    out[key] = build(value)
            return out
        if isinstance(node, list):
            return [build(v) for v in node]
        return node

    return build(template)


def allowed(url: str, allowlist: list[str]) -> bool:
    """Is ``url`` http(s) on an allowed host? Entries are hosts (``api.example.com``), ``host:port`` or
    ``*.example.com``; an empty allowlist allows nothing."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    with_port = f"{host}:{parts.port}" if parts.port else host
    for entry in (e.strip().lower() for e in allowlist if e.strip()):
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if entry in (host, with_port):
            return True
    return False


async def http_fetch(url: str, allowlist: list[str], timeout: float = 10.0) -> dict[str, Any]:
    """GET ``url`` if its host is allowlisted; no redirects to other hosts, body capped at 200 kB."""
    import httpx

    if not allowed(url, allowlist):
        raise PermissionError(f"{url!r} is not on the HTTP allowlist (STEPWISE_HTTP_ALLOWLIST); add its host to allow it")
    chunks: list[bytes] = []
    size = 0
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client, client.stream("GET", url) as resp:
        async for chunk in resp.aiter_raw():  # stream, and stop reading at the cap: a 50 MB body is never downloaded
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_FETCH_BYTES:
                break
    raw = b"".join(chunks)
    body = raw[:MAX_FETCH_BYTES].decode(resp.encoding or "utf-8", errors="replace")
    out: dict[str, Any] = {"status": resp.status_code, "content_type": resp.headers.get("content-type", ""), "body": body}
    if size >= MAX_FETCH_BYTES:
        out["truncated"] = True
    if resp.is_redirect:
        out["location"] = resp.headers.get("location", "")
    return out


#: Name → (function, schema) for callers that want the plain functions (the MCP server wraps these).
BUILTINS: dict[str, tuple[Callable[..., Any], ToolSpec]] = {
    "calculator": (
        calculator,
        ToolSpec(
            name="calculator",
            description="Evaluate an arithmetic expression",
            parameters={"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
        ),
    ),
    "current_time": (
        current_time,
        ToolSpec(
            name="current_time",
            description="The current time, ISO 8601",
            parameters={"type": "object", "properties": {"timezone": {"type": "string", "default": "UTC"}}},
        ),
    ),
    "json_transform": (
        json_transform,
        ToolSpec(
            name="json_transform",
            description="Select ($.a.b) or reshape ({'x.$': '$.a'}) JSON data",
            parameters={"type": "object", "properties": {"data": {}, "template": {}, "path": {"type": "string"}}, "required": ["data"]},
        ),
    ),
}
