"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepwise.client import Stepwise

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "statemachines" / "examples"

if str(ROOT) not in sys.path:  # graphs reference `statemachines.examples.nodes:...`
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


@pytest.fixture
def memory_client() -> Stepwise:
    return Stepwise.in_memory()


@pytest.fixture
def embedded_client(tmp_path: Path) -> Stepwise:
    return Stepwise.embedded(tmp_path / ".stepwise")


@pytest.fixture(scope="session", autouse=True)
def _sandbox_cgroup_root() -> Iterator[None]:
    """Sandboxed calls of this session put their CPU cgroups (tools/cgroups.py) under a root of their own,
    removed at the end, so a test run leaves no tenant cgroups on the machine."""
    from stepwise.tools import cgroups

    name = f"stepwise-test-{os.getpid()}"
    before, default = os.environ.get("STEPWISE_SANDBOX_CGROUP"), cgroups.ROOT_NAME
    os.environ["STEPWISE_SANDBOX_CGROUP"] = name  # clients read it into ToolSettings.sandbox_cgroup
    cgroups.ROOT_NAME = name  # sandboxes built without settings
    yield
    cgroups.ROOT_NAME = default
    if before is None:
        os.environ.pop("STEPWISE_SANDBOX_CGROUP", None)
    else:
        os.environ["STEPWISE_SANDBOX_CGROUP"] = before
    cgroups.remove_root(name)


# -- chaos counts, summed over xdist workers ------------------------------------------------------------
# Here, not in tests/chaos/conftest.py: under xdist the controller collects nothing, so it never loads that
# conftest, and each worker's counts would die with the worker. Workers hand theirs over in workeroutput.
def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.chaos.counts import COUNTS

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker
        workeroutput["chaos_counts"] = dict(COUNTS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist, on the controller: a worker finished; add its counts."""
    from tests.chaos.counts import COUNTS

    COUNTS.update(getattr(node, "workeroutput", {}).get("chaos_counts", {}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.chaos.counts import COUNTS

    if COUNTS and not hasattr(terminalreporter.config, "workeroutput"):
        terminalreporter.section("chaos counts")
        for name in sorted(COUNTS):
            terminalreporter.write_line(f"{name}: {COUNTS[name]}")
