"""Layering: who may import whom inside shared/stepwise (docs/architecture.md), and no cycles between units."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.support.layering import cycles, module_cycles, violations

import stepwise

PACKAGE = Path(stepwise.__file__).parent


def test_the_package_keeps_its_layering() -> None:
    assert violations(PACKAGE) == []


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "stepwise"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.mark.parametrize(
    ("where", "line", "expected"),
    [
        ("graph/_planted.py", "from stepwise.runtime.step import step", "graph/_planted.py:1: graph/ may import only nothing else"),
        ("asl/_planted.py", "from stepwise.runtime import services", "asl/_planted.py:1: asl/ may import only graph"),
        ("state/_planted.py", "def f():\n    from stepwise.asl import compiler", "state/_planted.py:2: state/ may import only graph"),
        ("runtime/_planted.py", "import stepwise.client", "runtime/_planted.py:1: runtime may not import client"),
        ("api/_planted.py", "from stepwise.runtime.services import Services", "api/_planted.py:1: api may not import runtime"),
        ("errors.py", "from stepwise.graph import spec", "errors.py:"),
        # nothing below the API reaches up into it: tools read roles from store/, not api/
        ("tools/_planted.py", "from stepwise.api.models import RunList", "tools/_planted.py:1: tools may not import api"),
        ("memory/_planted.py", "from stepwise.api import app", "memory/_planted.py:1: memory may not import api"),
        ("llm/_planted.py", "import stepwise.api.settings", "llm/_planted.py:1: llm may not import api"),
        ("runtime/_planted.py", "def f():\n    from stepwise.api.roles import router", "runtime/_planted.py:2: runtime may not import api"),
        ("state/_planted.py", "from stepwise.api import models", "state/_planted.py:1: state/ may import only graph"),
        ("store/_planted.py", "from stepwise.tools import roles", "store/_planted.py:1: store/ may import only nothing else"),
    ],
)
def test_a_planted_violation_is_reported_with_its_place(copy: Path, where: str, line: str, expected: str) -> None:
    path = copy / where
    path.write_text(line + "\n" + (path.read_text() if path.exists() and where == "errors.py" else ""))
    found = violations(copy)
    assert found and all(expected.split(":")[0] in p for p in found if "cycle" not in p), found
    assert any(expected in p for p in found), found


def test_a_planted_cycle_between_units_is_reported(copy: Path) -> None:
    """llm may import tools and tools may import llm, but not both: that is a cycle."""
    (copy / "llm" / "_planted.py").write_text("from stepwise.tools import registry\n")
    assert "import cycle between llm <-> tools" in violations(copy)


def test_no_modules_of_one_unit_import_each_other_in_a_circle() -> None:
    """Inside a unit (api/, runtime/, state/ …) the modules import one way too: a module that imports one
    that imports it back (lazily or for a type included) can be neither read nor changed on its own."""
    assert module_cycles(PACKAGE) == []


def test_a_planted_circle_between_two_modules_of_a_unit_is_reported(copy: Path) -> None:
    (copy / "runtime" / "_planted.py").write_text("def f():\n    from stepwise.runtime.step import step\n")
    step = copy / "runtime" / "step.py"
    step.write_text(step.read_text() + "\n\ndef _g() -> None:\n    from stepwise.runtime import _planted  # noqa: F401\n")
    assert module_cycles(copy) == [["stepwise.runtime._planted", "stepwise.runtime.step"]]


def test_cycles_finds_each_strongly_connected_group() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert sorted(cycles(edges)) == [["a", "b", "c"], ["d", "e"]]


def test_graph_reducer_names_are_the_state_layers_builtin_reducers() -> None:
    """graph/ validates reducer names without importing state/; the two lists must agree."""
    from stepwise.graph.spec import REDUCER_NAMES
    from stepwise.state.reducers import BUILTIN_REDUCERS

    assert set(REDUCER_NAMES) == set(BUILTIN_REDUCERS)
