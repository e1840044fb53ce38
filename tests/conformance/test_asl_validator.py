"""Every example's compiled ASL passes the ``asl-validator`` npm package (installed by ``make setup``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stepwise.asl.compiler import compile_graph, to_json
from stepwise.graph.loader import load_file

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
EXAMPLES = sorted((ROOT / "statemachines" / "examples").glob("*.yaml"))
STEP_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:stepwise-prod-step"


def validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    if not VALIDATOR.exists():
        pytest.fail(f"{VALIDATOR} is missing: run `npm install` at the repository root (make setup does)")
    args = [str(VALIDATOR)]
    for path in paths:
        args += ["--json-path", str(path)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_every_example_passes_asl_validator(tmp_path: Path) -> None:
    assert len(EXAMPLES) >= 8
    paths = []
    for example in EXAMPLES:
        for arn in (None, STEP_ARN):
            asl = compile_graph(load_file(example)) if arn is None else compile_graph(load_file(example), step_arn=arn)
            path = tmp_path / f"{example.stem}{'' if arn is None else '-deployed'}.json"
            path.write_text(to_json(asl))
            paths.append(path)
    result = validate(paths)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in paths:
        assert f'"{path}" is valid' in result.stdout


def test_asl_validator_rejects_a_broken_definition(tmp_path: Path) -> None:
    """Guards the test above: the validator really checks (a dangling Next and no terminal state)."""
    asl = compile_graph(load_file(EXAMPLES[0]))
    first = asl["States"][asl["StartAt"]]
    first.pop("End", None)
    first["Next"] = "nowhere"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(asl))
    result = validate([path])
    assert result.returncode != 0
    assert "is invalid" in result.stdout + result.stderr
