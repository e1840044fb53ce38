"""Your agents' code without editing this repository: ``-c stepwise:code=<dir>`` puts the directory's packages
into an "agent code" layer on the step, api and trigger functions and allows them in graphs sent to the API.
The example (docs/examples/agent-code) is synthesized, then run from the staged layer as Lambda would import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from infra.stacks.config import StackConfig
from tests.infra.conftest import synthesize

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "docs/examples/agent-code"


def test_code_dirs_become_a_layer_on_the_step_api_and_trigger_and_are_allowed(tmp_path: Path) -> None:
    synth = synthesize(tmp_path / "cdk", **{"stepwise:region": "eu-west-1", "stepwise:account": "123456789012", "stepwise:code": EXAMPLE})
    assert synth.error is None, synth.error  # cdk-nag clean
    layers = synth.resources("AWS::Lambda::LayerVersion")
    (code_id,) = [k for k, v in layers.items() if "stepwise:code" in v["Properties"].get("Description", "")]
    functions = synth.resources("AWS::Lambda::Function")
    using = {v["Properties"]["FunctionName"] for v in functions.values() if {"Ref": code_id} in v["Properties"].get("Layers", [])}
    assert {"stepwise-dev-step", "stepwise-dev-api", "stepwise-dev-trigger"} <= using
    allowed = {v["Properties"].get("Environment", {}).get("Variables", {}).get("STEPWISE_API_ALLOWED_MODULES") for v in functions.values()}
    assert any(a and "acme_agents." in a.split(",") and "statemachines." in a.split(",") for a in allowed)

    # the staged asset is what Lambda unpacks under /opt: python/acme_agents/… on sys.path runs the graph
    key = layers[code_id]["Properties"]["Content"]["S3Key"]  # "<asset hash>.zip"
    python_dir = tmp_path / "cdk" / f"asset.{key.split('.')[0]}" / "python"
    assert (python_dir / "acme_agents" / "nodes.py").is_file() and not list(python_dir.rglob("__pycache__"))
    script = (
        "from stepwise import Stepwise; from stepwise.graph.loader import load_file; import sys;"
        "r = Stepwise.in_memory().run(load_file(sys.argv[1]), {'ticket': 'checkout is down'}); print(r.state['queue'])"
    )
    env_path = f"{ROOT / 'shared'}:{python_dir}"
    out = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / EXAMPLE / "acme-triage.yaml")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "on-call", out.stderr


def test_a_code_dir_without_packages_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    class Node:
        def try_get_context(self, key: str) -> object:
            return str(tmp_path / "empty") if key == "stepwise:code" else None

    with pytest.raises(ValueError, match="holds no Python package"):
        StackConfig.from_context(Node())


def test_the_stacks_default_module_allow_list_is_the_servers() -> None:
    """A graph copied out with `stepwise examples copy` names `stepwise.examples.nodes`: the deployed API takes it
    as `stepwise serve` does (the stack's default left `stepwise.examples.` out)."""
    from stepwise.api.settings import DEFAULT_ALLOWED_MODULES

    assert tuple(StackConfig.allowed_modules.split(",")) == DEFAULT_ALLOWED_MODULES
