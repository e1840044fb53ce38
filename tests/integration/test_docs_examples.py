"""Examples in docs/ run as written: each listed block is taken from its page and run in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: (page, the heading the block follows, what its output must contain)
EXAMPLES = [
    ("docs/llm.md", "## Testing against real SDKs offline", "succeeded Paris gpt-4o-mini"),
    ("docs/architecture.md", "## Settings: read once, passed in", "16 60.0"),
    ("docs/architecture.md", "### Every layer's settings", "('api.example.com',) 5.0"),
    ("docs/reliability.md", "## Redrive a failed run", "succeeded ['fetch', 'publish'] ['fetch', 'publish', 'publish']"),
    ("docs/architecture.md", "### A bad value", "\"STEPWISE_LOCAL_CONCURRENCY='0' is not a whole number ≥ 1 (default 256): fix it"),
]


def python_block(page: Path, heading: str) -> str:
    text = page.read_text()
    start = text.index(heading + "\n")
    found = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert found, f"no python block after {heading!r} in {page}"
    return found.group(1)


@pytest.mark.parametrize(("page", "heading", "expected"), EXAMPLES)
def test_doc_example_runs(page: str, heading: str, expected: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", python_block(ROOT / page, heading)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout
