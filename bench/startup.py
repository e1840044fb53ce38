"""Start-up: what a fresh process pays before it does anything, measured in child processes.

- ``import stepwise.cli`` and a whole ``stepwise run`` of a function-only graph, as wall time of the
  process minus an empty interpreter's, and as the sum of ``python -X importtime``'s top-level imports;
- the same import sum for LangGraph with its SQLite checkpointer, the peer's equivalent start;
- which heavy modules the command imported (names only, no timings).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.measure import median

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "bench" / "graphs" / "startup.yaml"  # its nodes import nothing heavy: see bench/startup_nodes.py
HEAVY = (
    "pydantic",
    "typer",
    "rich",
    "click",
    "yaml",
    "boto3",
    "botocore",
    "openai",
    "anthropic",
    "httpx",
    "mcp",
    "numpy",
    "redis",
    "aws_lambda_powertools",
    "stepwise.asl.compiler",
    "stepwise.llm.gateway",
    "stepwise.api",
    "sqlite3",
    "orjson",
)
RUN = "import sys; from stepwise.cli import main; sys.argv = ['stepwise', *sys.argv[1:]]; main()"
PROBE = (
    "import sys, runpy; sys.argv = ['stepwise', *sys.argv[2:]]\n"
    "from stepwise.cli import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "heavy = sys.argv and __import__('json').loads(__import__('os').environ['BENCH_HEAVY'])\n"
    "print('\\nMODULES', __import__('json').dumps([m for m in heavy if m in sys.modules]))\n"
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *(p for p in sys.path if p)]), "PYTHONDONTWRITEBYTECODE": "0"}


def _wall(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=_env(), check=True, capture_output=True)
    return (time.perf_counter() - t0) * 1000


def _import_sum(args: list[str], cwd: Path) -> float:
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, env=_env(), check=True, capture_output=True, text=True)
    total = 0
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        fields = line[len("import time:") :].split("|")
        name = fields[2].rstrip()
        if name.startswith(" ") and not name.startswith("  "):  # one leading space: a top-level import
            total += int(fields[1])
    return total / 1000


def measure_startup(reps: int, workdir: Path) -> dict[str, Any]:
    py = sys.executable
    home = workdir / "home"
    run_args = ["-c", RUN, "run", str(GRAPH), "--home", str(home), "--output", "json"]
    rows: dict[str, list[float]] = {
        k: []
        for k in ("empty", "import_cli", "run", "langgraph", "import_sum_cli", "import_sum_run", "import_sum_empty", "import_sum_langgraph")
    }
    lg = "import langgraph.graph, langgraph.checkpoint.sqlite"
    for _ in range(reps):  # interleaved: every kind once per repetition
        rows["empty"].append(_wall([py, "-c", "pass"], ROOT))
        rows["import_cli"].append(_wall([py, "-c", "import stepwise.cli"], ROOT))
        rows["run"].append(_wall([py, *run_args], ROOT))
        rows["langgraph"].append(_wall([py, "-c", lg], ROOT))
        rows["import_sum_empty"].append(_import_sum(["-c", "pass"], ROOT))
        rows["import_sum_cli"].append(_import_sum(["-c", "import stepwise.cli"], ROOT))
        rows["import_sum_run"].append(_import_sum(run_args, ROOT))
        rows["import_sum_langgraph"].append(_import_sum(["-c", lg], ROOT))
    env = {**_env(), "BENCH_HEAVY": __import__("json").dumps(HEAVY)}
    probe = subprocess.run(
        [py, "-c", PROBE, "x", "run", str(GRAPH), "--home", str(home), "--output", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    imported = []
    for line in probe.stdout.splitlines():
        if line.startswith("MODULES "):
            imported = __import__("json").loads(line[len("MODULES ") :])
    med = {k: round(median(v), 1) for k, v in rows.items()}
    return {
        "reps": reps,
        "process_ms": {
            "empty": med["empty"],
            "import_stepwise_cli": med["import_cli"],
            "stepwise_run": med["run"],
            "import_langgraph": med["langgraph"],
        },
        "import_ms": {  # -X importtime sums, minus an empty interpreter's own imports
            "stepwise_cli": round(med["import_sum_cli"] - med["import_sum_empty"], 1),
            "stepwise_run": round(med["import_sum_run"] - med["import_sum_empty"], 1),
            "langgraph": round(med["import_sum_langgraph"] - med["import_sum_empty"], 1),
        },
        "heavy_modules_in_run": imported,
        "samples": {k: [round(x, 1) for x in v] for k, v in rows.items()},
    }
