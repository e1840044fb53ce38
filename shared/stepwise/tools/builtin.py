"""Built-in tools, referenced from graphs by bare name (``tools: [calculator]``)."""

from __future__ import annotations

import ast
import operator
import time
from collections.abc import Callable
from typing import Any

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


def calculator(expression: str) -> float | int:
    """Evaluate arithmetic (+ - * / // % ** and parentheses) by walking its syntax tree; never eval."""

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise ValueError("exponent too large")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        raise ValueError(f"calculator accepts numbers and + - * / // % ** ( ) only, not {ast.unparse(node)!r}")

    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {expression!r}: {exc.msg}") from None
    return walk(tree.body)  # type: ignore[no-any-return]


def current_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


BUILTINS: dict[str, tuple[Callable[..., Any], ToolSpec]] = {
    "calculator": (
        calculator,
        ToolSpec(
            name="calculator",
            description="Evaluate an arithmetic expression",
            parameters={"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
        ),
    ),
    "current_time": (current_time, ToolSpec(name="current_time", description="The current UTC time, ISO 8601")),
}
