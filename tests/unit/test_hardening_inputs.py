"""Hostile input gets a clear 4xx / GraphError, never a 500, a RecursionError or gigabytes of memory:
admission limits (graph/limits.py) in the API and the CLI alike."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import statemachines.examples.nodes as example_nodes
from tests.unit.test_api_routes import EXAMPLES, error_code, event, make

from stepwise.client import Stepwise, StepwiseError
from stepwise.graph.conditions import ConditionError, parse
from stepwise.graph.errors import GraphError
from stepwise.graph.limits import LimitError, Limits, check_json, check_yaml
from stepwise.graph.loader import load_text

ROOT = Path(__file__).resolve().parents[2]
FN = "statemachines.examples.nodes:fetch"
BOMB = "name: bomb\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" if i else "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" for i in range(9)
)
BOMB += f"graph: {{nodes: {{a: {{fn: '{FN}'}}}}}}\n"


def test_the_alias_bomb_is_small_and_refused_by_the_loader() -> None:
    assert len(BOMB) < 1000
    with pytest.raises(GraphError, match="expands to more than"):
        load_text(BOMB)


def test_stepwise_validate_refuses_the_alias_bomb_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    out = subprocess.run(
        [sys.executable, "-m", "stepwise.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={"PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode != 0
    assert "expands to more than" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_aliases_used_for_reuse_still_load() -> None:
    spec = load_text(f"name: g\ngraph:\n  nodes:\n    a: {{fn: &f '{FN}'}}\n    b: {{fn: *f}}\n  edges: [{{from: a, to: b}}]\n  entry: a\n")
    assert spec.graph.nodes["b"].fn == FN


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nv: " + "[" * 5000 + "]" * 5000, "nests deeper"),
        ("name: x\nv: " + "9" * 5000, "digits"),
        ("name: x\nv: {" + ", ".join(f"k{i}: {i}" for i in range(200)) + "}", None),
    ],
)
def test_yaml_limits(text: str, message: str | None) -> None:
    if message is None:
        check_yaml(text)
    else:
        with pytest.raises(LimitError, match=message):
            check_yaml(text)


def test_node_count_is_bounded() -> None:
    nodes = "\n".join(f"    n{i}: {{fn: '{FN}'}}" for i in range(4))
    with pytest.raises(GraphError, match="4 nodes; at most 3"):
        load_text(f"name: g\ngraph:\n  nodes:\n{nodes}\n  entry: n0\n", limits=Limits.from_env({"STEPWISE_MAX_NODES": "3"}))
    with pytest.raises(GraphError, match="unreachable"):  # within the default limit: past the count, to validation
        load_text(f"name: g\ngraph:\n  nodes:\n{nodes}\n  entry: n0\n")


@pytest.mark.parametrize("expression", ["not " * 3000 + "True", "(" * 300 + "1" + ")" * 300, "state.a == 1 and " * 500 + "True"])
def test_condition_expressions_are_bounded(expression: str) -> None:
    with pytest.raises(ConditionError):
        parse(expression)


def test_json_limits() -> None:
    with pytest.raises(LimitError, match="nests deeper"):
        check_json('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(LimitError, match="digits"):
        check_json('{"a": ' + "9" * 5000 + "}")
    with pytest.raises(LimitError, match="surrogate"):
        check_json('{"a": "\\ud800"}')
    assert check_json('{"a": "[[[[", "b": -12, "c": "\\u00e9"}', Limits(depth=2)) == {"a": "[[[[", "b": -12, "c": "é"}


@pytest.mark.parametrize("body", ['{"amount": NaN}', '{"amount": Infinity}', '{"amount": -Infinity}', '{"amount": 1e999}'])
def test_numbers_json_cannot_carry_are_refused_not_stored_as_null(body: str) -> None:
    """Python's parser takes NaN and Infinity; stored, they read back as null (and NaN passed a number schema)."""
    with pytest.raises(LimitError, match=r"the body holds .*, which JSON cannot carry"):
        check_json(body)
    assert check_json('{"amount": 1.5e3}') == {"amount": 1500.0}


def test_the_library_refuses_an_input_json_cannot_carry(tmp_path: Path) -> None:
    """A set was stored as ``[1, 2]`` (and as ``'{1, 2}'`` from a node), NaN as null: what the run saw was not
    what a reader of the thread got back."""
    client = Stepwise.embedded(tmp_path / "home")
    spec = load_text("name: g\nstate: {x: replace}\ngraph:\n  nodes:\n    a: {fn: 'stepwise.examples.nodes:fetch'}\n  entry: a\n")
    for bad, kind in (({"s": {1, 2}}, "a set"), ({"x": float("nan")}, "nan"), ({"when": object()}, "an object")):
        with pytest.raises(StepwiseError, match=f"the input holds {kind}"):
            client.run(spec, bad)
    assert client.run(spec, {"t": (1, 2), "n": None, "f": 0.5}).status == "succeeded"


def _raw(
    h: Any,
    body: str | None,
    *,
    b64: bool = False,
    method: str = "POST",
    path: str = "/agents/sequential/execute",
    ct: str = "application/json",
) -> Any:
    e = event(method, path, None, key=h.keys["acme"], headers={"content-type": ct})
    e["body"], e["isBase64Encoded"] = body, b64
    return h.api(e)


@pytest.mark.parametrize(
    ("body", "b64", "path", "ct"),
    [
        (base64.b64encode(b'{"input": {"a": "\xff"}}').decode(), True, "/agents/sequential/execute", "application/json"),
        (base64.b64encode(b"name: \xff\xfe").decode(), True, "/agents", "application/yaml"),
        ('{"input": ' + "[" * 100_000 + "]" * 100_000 + "}", False, "/agents/sequential/execute", "application/json"),
        ('{"input": {"a": "\\ud800"}}', False, "/agents/sequential/execute", "application/json"),
        ('{"input": {"a": ' + "9" * 5000 + "}}", False, "/agents/sequential/execute", "application/json"),
        ("name: x\nversion: " + "9" * 5000 + f"\ngraph: {{nodes: {{a: {{fn: '{FN}'}}}}}}", False, "/agents", "application/yaml"),
        ("name: x\nx: " + "[" * 5000 + "]" * 5000 + f"\ngraph: {{nodes: {{a: {{fn: '{FN}'}}}}}}", False, "/agents", "application/yaml"),
        (BOMB, False, "/agents", "application/yaml"),
        (
            json.dumps(
                {
                    "graph": {
                        "name": "c",
                        "graph": {
                            "nodes": {"a": {"fn": FN}, "b": {"fn": FN}},
                            "entry": "a",
                            "conditional_edges": [
                                {"from": "a", "conditions": [{"if": "not " * 3000 + "True", "then": "b"}, {"else": "b"}]}
                            ],
                        },
                    }
                }
            ),
            False,
            "/agents",
            "application/json",
        ),
        ('{"version": true}', False, "/agents/sequential/execute", "application/json"),
    ],
)
def test_hostile_bodies_get_a_4xx_json_error(body: str, b64: bool, path: str, ct: str) -> None:
    h = make()
    h.register("sequential")
    out = _raw(h, body, b64=b64, path=path, ct=ct)
    assert 400 <= out["statusCode"] < 500, out
    assert "error" in json.loads(out["body"])


def test_trace_is_a_json_405() -> None:
    h = make()
    out = _raw(h, None, method="TRACE", path="/agents")
    assert out["statusCode"] == 405 and json.loads(out["body"])["error"]["code"] == "method_not_allowed"


def test_the_engine_refuses_unstorable_input() -> None:
    client = Stepwise.in_memory()
    spec = load_text((EXAMPLES / "sequential.yaml").read_text())
    for bad in ({"a": "\ud800"}, {"a": 10**5000}):
        with pytest.raises(StepwiseError):
            client.run(spec, bad)


def _explode(current: Any, update: Any) -> Any:
    raise RuntimeError("boom")


def test_a_raising_reducer_fails_the_run_and_reads_still_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(example_nodes, "explode", _explode, raising=False)
    monkeypatch.setattr(_explode, "__module__", "statemachines.examples.nodes")
    monkeypatch.setattr(_explode, "__name__", "explode")
    h = make()
    graph = {"name": "r", "state": {"x": "statemachines.examples.nodes:explode"}, "graph": {"nodes": {"a": {"fn": FN}}, "entry": "a"}}
    assert h("POST", "/agents", {"graph": graph}).status == 201
    run = h("POST", "/agents/r/execute", {"input": {"x": 1}})
    assert run.status == 200 and run.body["status"] == "failed", run.body
    assert h("GET", f"/runs/{run.body['run_id']}").status == 200
    state = h("GET", f"/threads/{run.body['thread_id']}/state")
    assert state.status == 422 and "explode" in state.body["error"]["message"]
    assert error_code(state) == "invalid_request"
