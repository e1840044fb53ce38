"""The layer's docker-free bundling: the pip command line, the copied sources, the ILocalBundling wrapper.
Nothing is downloaded: the pip step is recorded, not run."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from layers.build import LAYER_DIR, PLATFORM, LayerBuild, layer_requirements, local_bundling, source_hash


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, command: list[str], check: bool) -> Any:
        assert check is True
        self.calls.append(command)


def test_pip_command_targets_lambda_wheels(tmp_path: Path) -> None:
    command = LayerBuild(python="/venv/bin/python").pip_command(tmp_path)
    assert command[:4] == ["/venv/bin/python", "-m", "pip", "install"]
    pairs = dict(itertools.pairwise(command))
    assert pairs["--platform"] == PLATFORM == "manylinux2014_x86_64"
    assert pairs["--python-version"] == "3.12" and pairs["--implementation"] == "cp"
    assert pairs["--target"] == str(tmp_path / "python")
    assert "--only-binary=:all:" in command
    assert command[-len(layer_requirements()) :] == layer_requirements()


def test_native_build_drops_the_platform_flags(tmp_path: Path) -> None:
    command = LayerBuild(python="py", platform=None, requirements=["pydantic"]).pip_command(tmp_path)
    assert "--platform" not in command and "--only-binary=:all:" not in command and "--python-version" not in command
    assert command[-1] == "pydantic" and command[command.index("--target") + 1] == str(tmp_path / "python")


@pytest.mark.slow
def test_cdk_runs_the_local_bundling_and_never_docker(tmp_path: Path) -> None:
    """A real synth of a layer asset: CDK calls our ILocalBundling through jsii; pip is recorded, not run."""
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    recorder = Recorder()
    app = cdk.App(outdir=str(tmp_path / "out"), builtin_cloud_formation_validation=False)
    stack = cdk.Stack(app, "LayerOnly")
    bundling = cdk.BundlingOptions(
        image=cdk.DockerImage.from_registry("must-not-be-pulled"), local=local_bundling(LayerBuild(runner=recorder)), command=["false"]
    )
    code = lambda_.Code.from_asset(str(LAYER_DIR), bundling=bundling, asset_hash=source_hash(), asset_hash_type=cdk.AssetHashType.CUSTOM)
    lambda_.LayerVersion(stack, "Layer", code=code)
    app.synth()

    (asset,) = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("asset.")]
    assert len(recorder.calls) == 1
    command = recorder.calls[0]
    assert command[command.index("--target") + 1].endswith("/python") and "--only-binary=:all:" in command
    assert (asset / "python" / "stepwise" / "api" / "app.py").is_file()
    assert (asset / "python" / "statemachines" / "examples" / "nodes.py").is_file()
    assert not list((asset / "python").rglob("__pycache__"))


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=\[;! ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def test_layer_requirements_come_from_pyproject() -> None:
    """Base dependencies + the `lambda` extra, its `stepwise[aws,llm]` expanded: what the step's agents and the API import."""
    names = _names(layer_requirements())
    assert {"pydantic", "pyyaml", "aws-lambda-powertools", "boto3", "numpy", "mcp", "openai", "anthropic", "redis"} <= names
    assert not any(r.lower().startswith("stepwise") for r in layer_requirements())


def test_layer_requirements_follow_the_extras(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "pkg"\ndependencies = ["a>=1"]\n'
        '[project.optional-dependencies]\nx = ["b", "a>=1"]\ny = ["c"]\nlambda = ["pkg[x,y]", "d"]\nz = ["pkg[nope]"]\n'
    )
    assert layer_requirements(pyproject) == ["a>=1", "b", "c", "d"]
    with pytest.raises(KeyError, match="nope"):
        layer_requirements(pyproject, "z")
    with pytest.raises(KeyError, match="no extra 'w'"):
        layer_requirements(pyproject, "w")


def test_source_hash_changes_with_the_sources(tmp_path: Path) -> None:
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    req = ["pydantic"]
    first = source_hash(req, {"pkg": src})
    assert source_hash(req, {"pkg": src}) == first
    (src / "a.py").write_text("x = 2\n")
    assert source_hash(req, {"pkg": src}) != first
    assert source_hash(["pydantic>=2"], {"pkg": src}) != source_hash(req, {"pkg": src})
    assert len(source_hash()) == 64
