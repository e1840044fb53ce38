"""`stepwise run` of a function-only graph loads only what it uses: no LLM layer, no AWS SDK, no rich, no
asyncio, no server. Asserts which modules are absent (not timings); `python -m bench` measures the time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRAPH = ROOT / "bench" / "graphs" / "startup.yaml"  # its nodes import nothing heavy: see bench/startup_nodes.py
NOT_NEEDED = (
    "rich",  # only text output and tables use it (this run prints JSON)
    "asyncio",  # only Parallel/Map branches and async def nodes need an event loop
    "stepwise.llm",
    "stepwise.runtime.agents",
    "stepwise.tools",
    "stepwise.api",
    "stepwise.asl.stepfunctions",
    "numpy",
    "boto3",
    "botocore",
    "openai",
    "anthropic",
    "httpx",
    "mcp",
    "redis",
    "uvicorn",
)
#: Exceptions inside NOT_NEEDED: the tool layer's settings class (plain pydantic, no MCP) is read once when the
#: client is built, like every layer's settings, so the package and that one module load.
SETTINGS_ONLY = ("stepwise.tools", "stepwise.tools.settings")
PROBE = """
import json, sys
sys.argv = ["stepwise", *sys.argv[1:]]
from stepwise.cli import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""


def test_a_function_only_run_imports_no_heavy_modules(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-c", PROBE, "run", str(GRAPH), "--home", str(tmp_path / "home"), "--output", "json"]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out, _, listing = proc.stdout.rpartition("\nMODULES ")
    assert json.loads(out)["status"] == "succeeded"
    modules = set(json.loads(listing))
    loaded = sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in NOT_NEEDED) and m not in SETTINGS_ONLY)
    assert loaded == [], f"a function-only `stepwise run` imported {loaded}"
    assert "stepwise.runtime.step" in modules and "stepwise.state.sqlite" in modules  # it did run the engine
    # the bench times this run's imports: the graph's own module must not bring the benchmark's fixtures
    assert "bench.startup_nodes" in modules and "bench.workload" not in modules
