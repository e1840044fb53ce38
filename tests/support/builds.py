"""Builds shared by the install tests (a wheel, a layer, venvs), made once per test session even under xdist.

Each build lands in a directory under the session's shared temp root, guarded by a file lock, so the
workers of one ``pytest -n auto`` run share it. pip's own cache (``~/.cache/pip``) makes repeat sessions
fast; nothing else is cached between sessions.
"""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_build(root: Path, name: str, build: Callable[[Path], None]) -> Path:
    """``root/name``, built by ``build`` the first time any worker asks for it."""
    target = root / name
    with _locked(root / f"{name}.lock"):
        if not (target / ".done").exists():
            if target.exists():
                subprocess.run(["rm", "-rf", str(target)], check=True)
            target.mkdir(parents=True)
            build(target)
            (target / ".done").touch()
    return target
