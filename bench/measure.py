"""Timing, statistics, byte counting, machine facts and versions: the measuring tape, shared by both systems."""

from __future__ import annotations

import gc
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "stepwise",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langchain-core",
    "pydantic",
    "ormsgpack",
    "matplotlib",
)


@dataclass
class Sample:
    wall_s: float
    cpu_s: float


@contextmanager
def clock(collect: bool = True) -> Iterator[Sample]:
    """Wall time and process CPU time (all threads) of the block. Collects garbage first (unless told not
    to: W6 times a thousand tiny runs, and a full collection per run would dwarf them), so one system's
    leftovers are never charged to the other."""
    if collect:
        gc.collect()
    sample = Sample(0.0, 0.0)
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield sample
    finally:
        sample.wall_s = time.perf_counter() - w0
        sample.cpu_s = time.process_time() - c0


def timed(fn: Callable[[], Any]) -> tuple[Sample, Any]:
    with clock() as sample:
        result = fn()
    return sample, result


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def summary(samples: list[Sample], per: int = 1) -> dict[str, Any]:
    """Median wall/CPU in ms (divided by ``per``, e.g. steps), with every sample kept for the record."""
    walls = [s.wall_s * 1000 / per for s in samples]
    cpus = [s.cpu_s * 1000 / per for s in samples]
    return {
        "wall_ms": round(median(walls), 4),
        "cpu_ms": round(median(cpus), 4),
        "wall_ms_min": round(min(walls), 4) if walls else None,
        "wall_ms_max": round(max(walls), 4) if walls else None,
        "samples_wall_ms": [round(v, 4) for v in walls],
        "samples_cpu_ms": [round(v, 4) for v in cpus],
        "reps": len(samples),
    }


def growth_exponent(n_lo: int, bytes_lo: float, n_hi: int, bytes_hi: float) -> float:
    """k in bytes ∝ N^k, from two sizes: 1 is linear, 2 is quadratic."""
    return math.log(bytes_hi / bytes_lo) / math.log(n_hi / n_lo)


# -- bytes on disk --------------------------------------------------------------------------------
def checkpoint_wal(db: Path) -> None:
    """Fold the WAL into the main file so the file sizes say what is stored (the same for both systems)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def sqlite_bytes(db: Path) -> dict[str, Any]:
    """Main file + WAL after a checkpoint; ``-shm`` is a rebuildable shared-memory index, not stored data.
    Also the bytes per table/index from SQLite's dbstat, to show where the bytes go."""
    checkpoint_wal(db)
    wal = db.with_name(db.name + "-wal")
    out: dict[str, Any] = {"db_file": db.stat().st_size, "wal_file": wal.stat().st_size if wal.exists() else 0}
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
        out["by_table"] = {name: int(size) for name, size in rows}
    except sqlite3.OperationalError:  # SQLite built without dbstat
        out["by_table"] = {}
    finally:
        conn.close()
    return out


def dir_bytes(directory: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in directory.glob(pattern) if p.is_file()) if directory.exists() else 0


# -- machine and versions -------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


_SPEED_TASK = """
import json, statistics, time
rows = [{"id": i, "role": "tool", "content": f"result {i}", "tags": ["a", "b"]} for i in range(20_000)]
times = []
for _ in range(6):
    t0 = time.perf_counter()
    json.loads(json.dumps([dict(r, seq=n) for n, r in enumerate(rows)]))
    times.append((time.perf_counter() - t0) * 1000)
print(statistics.median(times[1:]))
"""


def speed() -> float:
    """Milliseconds for a fixed pure-Python task (20,000 small dicts built, encoded and decoded as JSON; the
    median of 5 after one warm-up) in a fresh interpreter, so the bench's own heap never weighs on it: the
    machine's speed at that moment, which the load average does not show (on a shared VM the same code, both
    systems alike, ran 1.4x slower one evening at the same load). A rough gauge: here it moves by 2x within
    a minute."""
    out = subprocess.run([sys.executable, "-c", _SPEED_TASK], capture_output=True, text=True, check=True, timeout=120)
    return round(float(out.stdout), 1)


def machine(workdir: Path) -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _mem_gib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "speed_ms_start": speed(),
        "workdir": str(workdir),
        "git_commit": _git_commit(),
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def load() -> float:
    """The 1-minute load average now (recorded at the start and end of every result row)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else math.nan


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
