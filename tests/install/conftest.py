"""Session-wide builds for the install tests (see tests/support/builds.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.builds import ROOT, shared_build


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp directory all xdist workers of this session see (the parent of each worker's base temp)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "install-shared"


@pytest.fixture(scope="session")
def wheel(shared_root: Path) -> Path:
    """The stepwise wheel, built once per session from this checkout."""

    def build(out: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
            check=True,
            cwd=out,
        )

    (found,) = shared_build(shared_root, "wheel", build).glob("stepwise-*.whl")
    return found
