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
from collections.abc import Callable
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


def _check(node: ast.AST, source: str) -> None:
    """Reject any node outside the subset (naming it); one checker per allowed node type, then its children."""
    checker = _CHECKERS.get(type(node))
    if checker is None:
        _reject(node, source)
        return
    for child in checker(node, source):
        _check(child, source)


def _check_boolop(node: ast.BoolOp, source: str) -> list[ast.AST]:
    return list(node.values)


def _check_compare(node: ast.Compare, source: str) -> list[ast.AST]:
    for op in node.ops:
        if type(op) not in _COMPARE:
            _reject(op, source)
    return [node.left, *node.comparators]


def _check_unary(node: ast.UnaryOp, source: str) -> list[ast.AST]:
    if not isinstance(node.op, ast.Not | ast.USub):
        _reject(node, source)
    return [node.operand]


def _check_constant(node: ast.Constant, source: str) -> list[ast.AST]:
    if not isinstance(node.value, str | int | float | bool | type(None)):
        _reject(node, source)
    return []


def _check_name(node: ast.Name, source: str) -> list[ast.AST]:
    if node.id != "state":
        raise ConditionError(f"{source!r} reads {node.id!r}; only 'state' can be read (write state.{node.id}?). Allowed: {_ALLOWED}")
    return []


def _check_attribute(node: ast.Attribute, source: str) -> list[ast.AST]:
    if node.attr.startswith("_"):
        raise ConditionError(f"{source!r} reads private attribute {node.attr!r}, which is not allowed")
    return [node.value]


def _check_subscript(node: ast.Subscript, source: str) -> list[ast.AST]:
    if not isinstance(node.slice, ast.Constant | ast.UnaryOp):
        raise ConditionError(f"{source!r}: an index must be a literal, like state.items[0] or state['key']")
    return [node.value, node.slice]


def _check_call(node: ast.Call, source: str) -> list[ast.AST]:
    if not (isinstance(node.func, ast.Name) and node.func.id == "len" and len(node.args) == 1 and not node.keywords):
        raise ConditionError(f"{source!r} calls a function; only len(x) is allowed. Allowed: {_ALLOWED}")
    return [node.args[0]]


def _check_sequence(node: ast.List | ast.Tuple, source: str) -> list[ast.AST]:
    return list(node.elts)


_CHECKERS: dict[type[ast.AST], Callable[[Any, str], list[ast.AST]]] = {
    ast.BoolOp: _check_boolop,
    ast.Compare: _check_compare,
    ast.UnaryOp: _check_unary,
    ast.Constant: _check_constant,
    ast.Name: _check_name,
    ast.Attribute: _check_attribute,
    ast.Subscript: _check_subscript,
    ast.Call: _check_call,
    ast.List: _check_sequence,
    ast.Tuple: _check_sequence,
}


def _reject(node: ast.AST, source: str) -> None:
    try:
        what = ast.unparse(node)
    except Exception:  # noqa: BLE001 - operators have no source form
        what = type(node).__name__
    raise ConditionError(f"{source!r} uses {what!r}, which is outside the condition subset. Allowed: {_ALLOWED}")


def evaluate(expression: str, state: dict[str, Any]) -> bool:
    """Evaluate an expression against the state. Missing keys read as None instead of raising."""
    return bool(_eval(parse(expression), state))


def _eval(node: ast.AST, state: dict[str, Any]) -> Any:
    evaluator = _EVALUATORS.get(type(node))
    if evaluator is None:  # unreachable after parse()
        raise ConditionError(f"unsupported expression node {type(node).__name__}")
    return evaluator(node, state)


def _eval_boolop(node: ast.BoolOp, state: dict[str, Any]) -> Any:
    """``and``/``or`` as Python has them: stop at the first falsy (and) or truthy (or) value and return it."""
    stop_when = not isinstance(node.op, ast.And)
    result: Any = not stop_when
    for value in node.values:
        result = _eval(value, state)
        if bool(result) is stop_when:
            return result
    return result


def _eval_compare(node: ast.Compare, state: dict[str, Any]) -> bool:
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


def _eval_unary(node: ast.UnaryOp, state: dict[str, Any]) -> Any:
    value = _eval(node.operand, state)
    return (not value) if isinstance(node.op, ast.Not) else -value


def _eval_constant(node: ast.Constant, state: dict[str, Any]) -> Any:
    return node.value


def _eval_name(node: ast.Name, state: dict[str, Any]) -> Any:
    return state


def _eval_attribute(node: ast.Attribute, state: dict[str, Any]) -> Any:
    return _get(_eval(node.value, state), node.attr)


def _eval_subscript(node: ast.Subscript, state: dict[str, Any]) -> Any:
    return _get(_eval(node.value, state), _eval(node.slice, state))


def _eval_call(node: ast.Call, state: dict[str, Any]) -> int:
    value = _eval(node.args[0], state)
    return 0 if value is None else len(value)


def _eval_sequence(node: ast.List | ast.Tuple, state: dict[str, Any]) -> list[Any]:
    return [_eval(e, state) for e in node.elts]


_EVALUATORS: dict[type[ast.AST], Callable[[Any, dict[str, Any]], Any]] = {
    ast.BoolOp: _eval_boolop,
    ast.Compare: _eval_compare,
    ast.UnaryOp: _eval_unary,
    ast.Constant: _eval_constant,
    ast.Name: _eval_name,
    ast.Attribute: _eval_attribute,
    ast.Subscript: _eval_subscript,
    ast.Call: _eval_call,
    ast.List: _eval_sequence,
    ast.Tuple: _eval_sequence,
}


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
