"""The package's front door: every public name resolves, lazily, and `import stepwise` stays cheap."""

from __future__ import annotations

import subprocess
import sys

import stepwise


def test_every_name_in_all_resolves_to_its_defining_object() -> None:
    from stepwise.client import Stepwise
    from stepwise.errors import StepwiseError
    from stepwise.graph.spec import END

    assert set(stepwise.__all__) == {"__version__", *stepwise._EXPORTS}
    for name in stepwise.__all__:
        assert getattr(stepwise, name) is not None, name
    assert stepwise.Stepwise is Stepwise and stepwise.StepwiseError is StepwiseError and stepwise.END == END


def test_unknown_names_raise_attribute_error_and_submodules_still_import() -> None:
    try:
        stepwise.no_such_name  # noqa: B018 - the lookup itself is under test
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
    from stepwise import awsclients

    assert awsclients.__name__ == "stepwise.awsclients"


def test_import_stepwise_loads_no_submodule() -> None:
    """Names load on first use: the bare import pulls in none of the library (nor pydantic)."""
    code = "import sys, stepwise; print(sorted(m for m in sys.modules if m.startswith(('stepwise.', 'pydantic'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_stepwise_error_shares_one_base() -> None:
    from stepwise.api.auth import AuthError
    from stepwise.graph.errors import GraphError
    from stepwise.llm.errors import LLMError
    from stepwise.state.ports import DuplicateKeyError
    from stepwise.tools.registry import ToolError

    for cls in (AuthError, GraphError, LLMError, DuplicateKeyError, ToolError, stepwise.NodeError, stepwise.StateConflictError):
        assert issubclass(cls, stepwise.StepwiseError), cls
    assert issubclass(LLMError, stepwise.TaskError) and LLMError.error_name == "Stepwise.LLMError"
