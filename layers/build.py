"""Build the shared Lambda layer without Docker: pip fetches Linux wheels, the sources are copied in.

CDK calls ``LayerBuild.try_bundle`` (an ``ILocalBundling``, wired in infra/stacks/compute.py) at
synth time. It can also be run by hand to inspect the layer:

    .venv/bin/python -m layers.build /tmp/layer     # then: du -sh /tmp/layer/python

What goes in is derived from the package's own metadata, never from a hand-kept list:
``layer_requirements()`` reads ``pyproject.toml`` (tomllib) and returns the base dependencies plus the
``lambda`` extra, with the extras it names (``stepwise[aws,llm]``) expanded. Add a dependency to the
right extra and the layer follows.

What it does, into ``<out>/python`` (the directory Lambda puts on ``sys.path`` from a layer):

1. ``pip install --platform manylinux2014_x86_64 --only-binary=:all: --python-version 3.12
   --implementation cp --target <out>/python <requirements>``: binary wheels for the Lambda runtime
   whatever the build machine is (no compiler, no container). pip honours
   ``PIP_INDEX_URL``/``PIP_FIND_LINKS``/``PIP_NO_INDEX``, so an offline wheelhouse works too.
   ``LayerBuild(platform=None)`` drops the platform flags: a layer for *this* interpreter, which is
   what tests/install/test_layer.py builds and imports in an isolated interpreter.
2. copy ``shared/stepwise`` and ``statemachines`` (the built-in workflows' node functions) as source:
   no wheel build, so no build backend has to be downloaded.

The asset hash is computed from the requirement list and those sources (``source_hash``), so CDK
re-runs the bundling only when one of them changed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAYER_DIR = ROOT / "layers"
PYPROJECT = ROOT / "pyproject.toml"
#: The extra of pyproject.toml that defines the Lambda runtime's dependencies.
LAYER_EXTRA = "lambda"
SOURCES = {"stepwise": ROOT / "shared" / "stepwise", "statemachines": ROOT / "statemachines"}
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.12"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")


def layer_requirements(pyproject: Path = PYPROJECT, extra: str = LAYER_EXTRA) -> list[str]:
    """The base dependencies plus ``extra``, self-references (``name[a,b]``) expanded, de-duplicated, in order."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    name = re.escape(project["name"])
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    self_ref = re.compile(rf"^\s*{name}\s*\[([^\]]+)\]\s*$", re.IGNORECASE)
    out: list[str] = []
    seen: set[str] = set()

    def add(requirements: list[str]) -> None:
        for requirement in requirements:
            ref = self_ref.match(requirement)
            if ref:
                for sub in (e.strip() for e in ref.group(1).split(",")):
                    if sub not in extras:
                        raise KeyError(f"{pyproject}: extra {sub!r} (named in {requirement!r}) is not defined")
                    if sub not in seen:
                        seen.add(sub)
                        add(extras[sub])
            elif requirement not in out:
                out.append(requirement)

    if extra not in extras:
        raise KeyError(f"{pyproject} defines no extra {extra!r} (the Lambda layer's dependencies)")
    add(list(project.get("dependencies", [])))
    seen.add(extra)
    add(extras[extra])
    return out


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def source_hash(requirements: Sequence[str] | None = None, sources: dict[str, Path] | None = None) -> str:
    """A stable hash of everything that goes into the layer (what CDK uses as the asset hash)."""
    digest = hashlib.sha256()
    digest.update(f"{PLATFORM}|{PYTHON_VERSION}|".encode())
    digest.update("\n".join(layer_requirements() if requirements is None else requirements).encode())
    for name, path in sorted((sources or SOURCES).items()):
        for file in _files(path):
            digest.update(f"{name}/{file.relative_to(path).as_posix()}\0".encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


class LayerBuild:
    """Commands of the layer build, and their execution. An ``ILocalBundling`` once wrapped by ``local_bundling``."""

    def __init__(
        self,
        requirements: Sequence[str] | None = None,
        sources: dict[str, Path] | None = None,
        *,
        python: str = sys.executable,
        platform: str | None = PLATFORM,
        python_version: str = PYTHON_VERSION,
        runner: Any = subprocess.run,
    ) -> None:
        self.requirements = list(layer_requirements() if requirements is None else requirements)
        self.sources = sources or dict(SOURCES)
        self.python = python
        self.platform = platform
        self.python_version = python_version
        self.runner = runner  # subprocess.run; tests pass a recorder instead of downloading wheels

    def pip_command(self, output_dir: str | Path) -> list[str]:
        """pip's command line; with ``platform=None`` it installs for the running interpreter instead of Lambda's."""
        target = [
            "--platform", self.platform,
            "--only-binary=:all:",
            "--python-version", self.python_version,
            "--implementation", "cp",
        ] if self.platform else []  # fmt: skip
        return [
            self.python, "-m", "pip", "install",
            *target,
            "--target", str(Path(output_dir) / "python"),
            "--no-compile", "--disable-pip-version-check", "--quiet",
            *self.requirements,
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
    if args == ["--requirements"]:
        print("\n".join(layer_requirements()))
        return 0
    if len(args) != 1:
        print("usage: python -m layers.build OUTPUT_DIR   (or --requirements to print what the layer installs)", file=sys.stderr)
        return 2
    LayerBuild().build(args[0])
    print(f"layer built in {args[0]}/python (source hash {source_hash()[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
