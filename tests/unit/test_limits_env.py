"""The admission limits' environment variables (``STEPWISE_MAX_*``): a value is used, or refused by name.

Before, a value that was not a number silently kept the default, so a typo left a limit the operator did not
choose. These check ``Limits.from_env`` directly and the two places a user meets it: a CLI command and
``stepwise serve``, which refuses to start instead of failing every request.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stepwise.errors import StepwiseError
from stepwise.graph.errors import GraphError
from stepwise.graph.limits import ENV, LimitError, Limits, LimitSettingError, check_json
from stepwise.graph.loader import load_text

ROOT = Path(__file__).resolve().parents[2]
FN = "statemachines.examples.nodes:fetch"


def test_every_limit_has_its_variable() -> None:
    assert ENV == {
        "values": "STEPWISE_MAX_VALUES",
        "depth": "STEPWISE_MAX_DEPTH",
        "nodes": "STEPWISE_MAX_NODES",
        "int_digits": "STEPWISE_MAX_INT_DIGITS",
        "expression_chars": "STEPWISE_MAX_EXPRESSION_CHARS",
        "expression_depth": "STEPWISE_MAX_EXPRESSION_DEPTH",
    }


def test_good_values_are_used_and_unset_ones_keep_their_default() -> None:
    limits = Limits.from_env({"STEPWISE_MAX_DEPTH": "3", "STEPWISE_MAX_NODES": " 12 ", "STEPWISE_MAX_INT_DIGITS": "4300"})
    assert (limits.depth, limits.nodes, limits.int_digits) == (3, 12, 4300)
    assert (limits.values, limits.expression_chars, limits.expression_depth) == (100_000, 2_000, 32)
    assert Limits.from_env({}) == Limits()
    with pytest.raises(LimitError, match="nests deeper than 3 levels"):  # the value read is the limit enforced
        check_json('{"a": [[[1]]]}', limits)


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("STEPWISE_MAX_DEPTH", "abc", "from 1 to 256 (default 64)"),
        ("STEPWISE_MAX_DEPTH", "", "from 1 to 256 (default 64)"),
        ("STEPWISE_MAX_NODES", "1.5", "from 1 to 1,000,000 (default 5,000)"),
        ("STEPWISE_MAX_VALUES", "0", "from 1 to 100,000,000 (default 100,000)"),
        ("STEPWISE_MAX_EXPRESSION_CHARS", "-20", "from 1 to 1,000,000 (default 2,000)"),
        ("STEPWISE_MAX_INT_DIGITS", "5000", "from 1 to 4,300 (default 64)"),
        ("STEPWISE_MAX_EXPRESSION_DEPTH", "201", "from 1 to 200 (default 32)"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_the_value_and_what_is_accepted(variable: str, value: str, accepted: str) -> None:
    with pytest.raises(LimitSettingError) as caught:
        Limits.from_env({variable: value})
    assert str(caught.value) == f"{variable}={value!r} is not a whole number {accepted}: fix it or unset it"
    assert isinstance(caught.value, StepwiseError) and isinstance(caught.value, ValueError)


def test_every_bad_variable_is_named_at_once_in_field_order() -> None:
    with pytest.raises(LimitSettingError) as caught:
        Limits.from_env({"STEPWISE_MAX_NODES": "0", "STEPWISE_MAX_VALUES": "many", "STEPWISE_MAX_DEPTH": "8"})
    assert str(caught.value) == (
        "STEPWISE_MAX_VALUES='many' is not a whole number from 1 to 100,000,000 (default 100,000): fix it or unset it; "
        "STEPWISE_MAX_NODES='0' is not a whole number from 1 to 1,000,000 (default 5,000): fix it or unset it"
    )


def test_limits_passed_in_are_validated_too() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        Limits(depth=0)
    nodes = "\n".join(f"    n{i}: {{fn: '{FN}'}}" for i in range(3))
    with pytest.raises(GraphError, match="3 nodes; at most 2"):
        load_text(f"name: g\ngraph:\n  nodes:\n{nodes}\n  entry: n0\n", limits=Limits(nodes=2))


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STEPWISE_")} | env
    code = f"import sys\nfrom stepwise.cli import main\nsys.argv = {['stepwise', *args]!r}\nmain()\n"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def test_the_cli_prints_the_refusal_in_one_line(tmp_path: Path) -> None:
    graph = str(ROOT / "statemachines" / "examples" / "sequential.yaml")
    proc = _cli(["run", graph, "--home", str(tmp_path / "home")], {"STEPWISE_MAX_DEPTH": "deep"}, ROOT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: STEPWISE_MAX_DEPTH='deep' is not a whole number from 1 to 256 (default 64): fix it or unset it"
    ok = _cli(["run", graph, "--home", str(tmp_path / "home"), "--output", "json"], {"STEPWISE_MAX_DEPTH": "40"}, ROOT)
    assert ok.returncode == 0, ok.stderr


def test_serve_refuses_to_start_with_a_bad_limit(tmp_path: Path) -> None:
    """The refusal comes before the server listens (were it to listen, the run's timeout would fail the test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _cli(["serve", "--port", str(port), "--home", str(tmp_path / "home")], {"STEPWISE_MAX_NODES": "0"}, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: STEPWISE_MAX_NODES='0' is not a whole number from 1 to 1,000,000 (default 5,000): fix it or unset it"
    )
    assert "listening" not in proc.stdout


def _walked(value: object, lim: Limits) -> str | None:
    """What the full walk alone says of a value (None: storable)."""
    from stepwise.graph.limits import _walk

    try:
        _walk(value, lim, "the value", None, "send")
    except LimitError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    "value",
    [
        {"messages": [{"role": "user", "content": "héllo ✓", "tool_calls": [{"id": "1", "args": {"n": 2**62, "x": 1.5}}]}]},
        {"deep": [[[["four levels"]]]]},  # exactly at the depth limit below
        {"deep": [[[[["five levels"]]]]]},  # one past it
        list(range(9)),  # at the value limit (10 with the list itself)
        list(range(10)),  # one past it
        {1: "an int key"},  # JSON keys are text: refused (it read back as "1")
        {"a": {None: "a None key"}},
        {"bad": "\ud800"},
        {"nan": float("nan")},
        {"set": {1, 2}},
        {"big": 10**40},
        ("a", True, None),
    ],
)
def test_the_quick_walk_decides_as_the_full_walk_does(value: object) -> None:
    """check_value clears plain values with a quick walk and leaves the rest to the full one: the verdict
    (storable or not, and the message) must be the full walk's for every kind of value."""
    from stepwise.graph.limits import check_value

    lim = Limits(values=10, depth=4, int_digits=30)
    try:
        check_value(value, lim, "the value")
        said = None
    except LimitError as exc:
        said = str(exc)
    assert said == _walked(value, lim)
