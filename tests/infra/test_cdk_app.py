"""cdk.json runs the app with the active interpreter (`python3` first on PATH), not a hard-coded venv.

The synth goes through the real CDK CLI (node_modules/.bin/cdk, pinned in package.json) with a PATH whose
first `python3` is a wrapper outside any `.venv` directory: the wrapper records that CDK called it, then
runs this test's interpreter (which has the `infra` extra). With a `python3` that lacks the extra the
synth fails with the one-line error naming it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "node_modules" / ".bin" / "cdk"

pytestmark = pytest.mark.slow


def test_cdk_json_names_no_virtualenv_and_package_json_declares_node() -> None:
    app = json.loads((ROOT / "cdk.json").read_text())["app"]
    assert app == "python3 infra/app.py"
    engines = json.loads((ROOT / "package.json").read_text())["engines"]
    assert engines["node"].startswith(">=")


def shim(directory: Path, python: str, marker: Path) -> dict[str, str]:
    """An environment whose first `python3` on PATH is a wrapper around ``python`` that leaves ``marker``."""
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "python3"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\nexec "{python}" "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{directory}{os.pathsep}{env.get('PATH', '')}"
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "1"
    env["CDK_DISABLE_VERSION_CHECK"] = "1"
    return env


def synth(env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    if not CDK.exists():
        pytest.fail(f"{CDK} is missing: run `npm install` at the repository root (make setup does)")
    command = [str(CDK), "synth", "--quiet", "--no-notices", "--output", str(out), "-c", "stepwise:bundle=false"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_synth_uses_the_python3_first_on_path(tmp_path: Path) -> None:
    marker = tmp_path / "called"
    proc = synth(shim(tmp_path / "bin", sys.executable, marker), tmp_path / "cdk.out")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert marker.read_text().split() == ["infra/app.py"]
    templates = list((tmp_path / "cdk.out").glob("*.template.json"))
    assert templates and "AWS::Lambda::LayerVersion" in templates[0].read_text()


def test_synth_with_a_python3_lacking_the_infra_extra_names_it(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)  # stdlib only
    proc = synth(shim(tmp_path / "bin", str(bare / "bin" / "python"), tmp_path / "called"), tmp_path / "cdk.out")
    assert proc.returncode != 0
    assert "pip install 'stepwise[infra]'" in proc.stderr
