"""Safe condition expressions for conditional edges.

Expressions are parsed with Python's ``ast`` module and then interpreted by this module over a
whitelist of node types. Nothing is ever passed to ``eval``: an expression can only read ``state``,
compare, combine with ``and``/``or``/``not``, test membership and call ``len``.

Grammar (Python syntax, subset)::

    expr     := expr ('and' | 'or') expr | 'not' expr | compare
    compare  := operand (('==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not in' | 'is' | 'is not') operand)*
    operand  := 'state' ('.' NAME | '[' literal ']')* | literal | 'len(' operand ')' | '-' operand
              | '[' literal, ... ']' | '(' expr ')'
    literal  := string | number | True | False | None
"""

from __future__ import annotations

import ast
import operator
from functools import lru_cache
from typing import Any

from stepwise.errors import StepwiseError
from stepwise.graph.limits import LimitError, check_expression


class ConditionError(StepwiseError, ValueError):
    """An expression uses something outside the documented subset."""


_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_ALLOWED = (
    "comparisons (== != < <= > >= in, not in, is), and/or/not, len(...), literals, and reads of state such as state.type or state.items[0]"
)


@lru_cache(maxsize=1024)
def parse(expression: str) -> ast.expr:
    """Parse and check an expression once; raise ConditionError naming the offending part."""
    try:
        check_expression(expression)
    except LimitError as exc:
        raise ConditionError(f"{expression[:60]!r}...: {exc}") from None
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConditionError(f"cannot parse {expression!r}: {exc.msg}. Allowed: {_ALLOWED}") from None
    _check(tree, expression)
    return tree


def _check(node: ast.AST, source: str) -> None:  # noqa: C901 - to be split by concern
    if isinstance(node, ast.BoolOp | ast.Compare):
        children: list[ast.AST] = list(node.values) if isinstance(node, ast.BoolOp) else [node.left, *node.comparators]
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARE:
                    _reject(op, source)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        children = [node.operand]
    elif isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool | type(None)):
        children = []
    elif isinstance(node, ast.Name):
        if node.id != "state":
            raise ConditionError(f"{source!r} reads {node.id!r}; only 'state' can be read (write state.{node.id}?). Allowed: {_ALLOWED}")
        children = []
    elif isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise ConditionError(f"{source!r} reads private attribute {node.attr!r}, which is not allowed")
        children = [node.value]
    elif isinstance(node, ast.Subscript):
        if not isinstance(node.slice, ast.Constant | ast.UnaryOp):
            raise ConditionError(f"{source!r}: an index must be a literal, like state.items[0] or state['key']")
        children = [node.value, node.slice]
    elif isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id == "len" and len(node.args) == 1 and not node.keywords):
            raise ConditionError(f"{source!r} calls a function; only len(x) is allowed. Allowed: {_ALLOWED}")
        children = [node.args[0]]
    elif isinstance(node, ast.List | ast.Tuple):
        children = list(node.elts)
    else:
        _reject(node, source)
    for child in children:
        _check(child, source)


def _reject(node: ast.AST, source: str) -> None:
    try:
        what = ast.unparse(node)
    except Exception:  # noqa: BLE001 - operators have no source form
        what = type(node).__name__
    raise ConditionError(f"{source!r} uses {what!r}, which is outside the condition subset. Allowed: {_ALLOWED}")


def evaluate(expression: str, state: dict[str, Any]) -> bool:
    """Evaluate an expression against the state. Missing keys read as None instead of raising."""
    return bool(_eval(parse(expression), state))


def _eval(node: ast.AST, state: dict[str, Any]) -> Any:  # noqa: C901 - to be split by concern
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = _eval(value, state)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = _eval(value, state)
            if result:
                return result
        return result
    if isinstance(node, ast.Compare):
        left = _eval(node.left, state)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, state)
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError:
                return False
            left = right
        return True
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, state)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return state
    if isinstance(node, ast.Attribute):
        return _get(_eval(node.value, state), node.attr)
    if isinstance(node, ast.Subscript):
        return _get(_eval(node.value, state), _eval(node.slice, state))
    if isinstance(node, ast.Call):
        value = _eval(node.args[0], state)
        return 0 if value is None else len(value)
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, state) for e in node.elts]
    raise ConditionError(f"unsupported expression node {type(node).__name__}")  # unreachable after parse()


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    if isinstance(container, list | tuple | str) and isinstance(key, int):
        return container[key] if -len(container) <= key < len(container) else None
    return None


def state_keys(expression: str) -> set[str]:
    """The top-level state keys an expression reads (``state.decision``, ``state['x'][0]`` → decision, x)."""
    found: set[str] = set()
    for node in ast.walk(parse(expression)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "state":
            found.add(node.attr)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "state"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            found.add(node.slice.value)
    return found
