"""Fixtures shared by every test layer."""

from __future__ import annotations

import sys
from pathlib import Path

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
