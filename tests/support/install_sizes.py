"""Installed size of the base install and of each extra, from the distributions installed here.

    python -m tests.support.install_sizes            # run with the dev venv's python (it has every extra)

For each extra it reads the top-level requirements from pyproject.toml (``layers.build.layer_requirements``:
the base dependencies plus the extra, nested extras expanded), resolves their dependency closure through
``importlib.metadata`` (markers evaluated, extras followed) and adds up the sizes recorded in each
distribution's RECORD. The numbers are what a fresh venv adds on top of pip itself; they match
``du -sh`` of a venv made with ``pip install '.[extra]'`` to within a few MB (bytecode pip compiles).
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
import tomllib

from layers.build import PYPROJECT, layer_requirements
from packaging.requirements import Requirement

EXTRAS = [None, "remote", "llm", "memory", "aws", "lambda", "infra", "all", "dev"]


def _size(dist: md.Distribution) -> int:
    return sum(f.size or 0 for f in dist.files or [])


def closure(requirements: list[str]) -> dict[str, md.Distribution]:
    seen: dict[str, md.Distribution] = {}
    todo: list[tuple[str, set[str]]] = [(Requirement(r).name, set(Requirement(r).extras)) for r in requirements]
    while todo:
        current, wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", current).lower()
        dist = md.distribution(current)
        first = key not in seen
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in (wanted or {""})]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            if req.marker is None and not first:
                continue
            todo.append((req.name, set(req.extras)))
    return seen


def main() -> int:
    for extra in EXTRAS:
        base = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
        dists = closure(layer_requirements(extra=extra) if extra else base)
        total = sum(_size(d) for d in dists.values())
        print(f"{'base' if extra is None else extra:8} {total / 1e6:8.1f} MB  {len(dists):4d} distributions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
