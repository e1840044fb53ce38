"""Build the shared Lambda layer without Docker: pip fetches Linux wheels, the sources are copied in.

CDK calls ``LayerBuild.try_bundle`` (an ``ILocalBundling``, wired in infra/stacks/compute.py) at
synth time. It can also be run by hand to inspect the layer:

    .venv/bin/python -m layers.build /tmp/layer     # then: du -sh /tmp/layer/python

What it does, into ``<out>/python`` (the directory Lambda puts on ``sys.path`` from a layer):

1. ``pip install --platform manylinux2014_x86_64 --only-binary=:all: --python-version 3.12
   --implementation cp --target <out>/python -r layers/requirements.txt``: binary wheels for the
   Lambda runtime whatever the build machine is (no compiler, no container). pip honours
   ``PIP_INDEX_URL``/``PIP_FIND_LINKS``/``PIP_NO_INDEX``, so an offline wheelhouse works too.
2. copy ``shared/stepwise`` and ``statemachines`` (the built-in workflows' node functions) as source:
   no wheel build, so no build backend has to be downloaded.

The asset hash is computed from the requirements and those sources (``source_hash``), so CDK re-runs
the bundling only when one of them changed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "layers" / "requirements.txt"
SOURCES = {"stepwise": ROOT / "shared" / "stepwise", "statemachines": ROOT / "statemachines"}
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.12"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def source_hash(requirements: Path = REQUIREMENTS, sources: dict[str, Path] | None = None) -> str:
    """A stable hash of everything that goes into the layer (what CDK uses as the asset hash)."""
    digest = hashlib.sha256()
    digest.update(f"{PLATFORM}|{PYTHON_VERSION}|".encode())
    digest.update(requirements.read_bytes())
    for name, path in sorted((sources or SOURCES).items()):
        for file in _files(path):
            digest.update(f"{name}/{file.relative_to(path).as_posix()}\0".encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


class LayerBuild:
    """Commands of the layer build, and their execution. An ``ILocalBundling`` once wrapped by ``local_bundling``."""

    def __init__(
        self,
        requirements: Path = REQUIREMENTS,
        sources: dict[str, Path] | None = None,
        *,
        python: str = sys.executable,
        platform: str = PLATFORM,
        python_version: str = PYTHON_VERSION,
        runner: Any = subprocess.run,
    ) -> None:
        self.requirements = requirements
        self.sources = sources or dict(SOURCES)
        self.python = python
        self.platform = platform
        self.python_version = python_version
        self.runner = runner  # subprocess.run; tests pass a recorder instead of downloading wheels

    def pip_command(self, output_dir: str | Path) -> list[str]:
        return [
            self.python, "-m", "pip", "install",
            "--platform", self.platform,
            "--only-binary=:all:",
            "--python-version", self.python_version,
            "--implementation", "cp",
            "--target", str(Path(output_dir) / "python"),
            "--requirement", str(self.requirements),
            "--no-compile", "--disable-pip-version-check", "--quiet",
        ]  # fmt: skip

    def copies(self, output_dir: str | Path) -> list[tuple[Path, Path]]:
        return [(src, Path(output_dir) / "python" / name) for name, src in sorted(self.sources.items())]

    def build(self, output_dir: str | Path) -> None:
        self.runner(self.pip_command(output_dir), check=True)
        for src, dst in self.copies(output_dir):
            shutil.copytree(src, dst, ignore=_IGNORE, dirs_exist_ok=True)


def local_bundling(build: LayerBuild) -> Any:
    """Wrap a LayerBuild as CDK's ``ILocalBundling`` (imported lazily: aws-cdk-lib is an infra extra)."""
    import jsii
    from aws_cdk import ILocalBundling

    @jsii.implements(ILocalBundling)
    class _LocalBundling:
        def try_bundle(self, output_dir: str, options: Any = None, **kwargs: Any) -> bool:  # jsii passes the options struct
            build.build(output_dir)
            return True

    return _LocalBundling()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m layers.build OUTPUT_DIR", file=sys.stderr)
        return 2
    LayerBuild().build(args[0])
    print(f"layer built in {args[0]}/python (source hash {source_hash()[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
