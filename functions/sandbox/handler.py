"""The ``sandbox`` Lambda: run untrusted Python (the ``python`` tool) where it can reach nothing of ours.

Isolation comes from the function, not from this code: its own Firecracker micro-VM, no VPC (it cannot reach
the tables, Valkey or OpenSearch), an execution role that may only write its own logs, and a read-only
filesystem except ``/tmp``. Inside, each call gets a fresh scratch directory under /tmp (deleted afterwards),
an environment without the function's AWS credentials, rlimits (CPU, memory, processes, file size) and a
wall-clock deadline after which its process group is killed. Stdlib only: no layer.

Event: ``{"code": "...", "stdin": "", "limits": {"cpu_seconds": 5, "wall_seconds": 10, "memory_mb": 512}}``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

MAX_OUTPUT = 200_000


def _limits(cpu: int, memory_mb: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()

    return apply


def run(code: str, stdin: str = "", cpu_seconds: int = 5, wall_seconds: float = 10.0, memory_mb: int = 512) -> dict[str, Any]:
    scratch = tempfile.mkdtemp(prefix="sandbox-", dir="/tmp" if os.path.isdir("/tmp") else None)
    try:
        with open(os.path.join(scratch, "main.py"), "w", encoding="utf-8") as f:
            f.write(code)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", "main.py"],
            cwd=scratch,
            env={"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch},  # no AWS_* credentials
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_limits(int(cpu_seconds), int(memory_mb)),  # single-threaded handler
        )
        killed = None
        try:
            out, err = proc.communicate(stdin.encode(), timeout=wall_seconds)
        except subprocess.TimeoutExpired:
            killed = "wall_time"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        result: dict[str, Any] = {
            "exit_code": proc.returncode,
            "stdout": out[:MAX_OUTPUT].decode(errors="replace"),
            "stderr": err[:MAX_OUTPUT].decode(errors="replace"),
            "wall_ms": round((time.perf_counter() - start) * 1000, 1),
        }
        if killed:
            result["killed"] = killed
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    code = event.get("code")
    if not isinstance(code, str) or len(code) > 100_000:
        return {"error": "send {'code': '<python source, at most 100,000 characters>'}"}
    limits = event.get("limits") or {}
    return run(
        code,
        str(event.get("stdin") or ""),
        cpu_seconds=min(int(limits.get("cpu_seconds", 5)), 60),
        wall_seconds=min(float(limits.get("wall_seconds", 10)), 120.0),
        memory_mb=min(int(limits.get("memory_mb", 512)), 1536),
    )
