"""The sandbox escape suite: snippets that try to get out; each prints ``ESCAPED`` only if it succeeded.

Run by tests/integration/test_sandbox.py (every attempt must be blocked) and bench/sandbox.py (counts).
``{project}`` is replaced by the host's project directory (its ``.stepwise/`` holds the capability key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepwise.tools.sandbox import Sandbox, SandboxLimits

ATTEMPTS: dict[str, str] = {
    "read /etc/passwd": "print('ESCAPED' if 'root:' in open('/etc/passwd').read() else 'no')",
    "read /etc/shadow": "print('ESCAPED', open('/etc/shadow').read()[:5])",
    "read the project's .stepwise/ key": "print('ESCAPED', open('{project}/.stepwise/capability.key').read()[:4])",
    "list the project directory": "import os; print('ESCAPED', os.listdir('{project}'))",
    "read the host's environment": "import os; print('ESCAPED' if any('SECRET' in k or 'AWS' in k for k in os.environ) else 'no')",
    "read the launcher's environ": (
        "import os\nfor pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    env = open(f'/proc/{{pid}}/environ', 'rb').read()\n"
        "    if any(k in env for k in (b'HOME=/root', b'AWS', b'SECRET', b'STEPWISE')): print('ESCAPED', pid)\n"
    ),
    "open a TCP socket to the internet": ("import socket; s = socket.create_connection(('1.1.1.1', 80), timeout=2); print('ESCAPED')"),
    "open a TCP socket to the host's loopback": (
        "import socket\n"
        "for port in (22, 80, 5432, 6379, 8080):\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', port), timeout=1); print('ESCAPED', port)\n"
        "    except OSError: pass\n"
    ),
    "resolve DNS": "import socket; socket.getaddrinfo('example.com', 80); print('ESCAPED')",
    "write outside scratch (/usr)": "open('/usr/escape.txt', 'w').write('x'); print('ESCAPED')",
    "write outside scratch (host /tmp)": "open('/tmp/stepwise-escape-marker', 'w').write('x'); print('wrote the private /tmp')",
    "write into the project": "open('{project}/escape.txt', 'w').write('x'); print('ESCAPED')",
    "become root": "import os; os.setuid(0); print('ESCAPED')",
    "fork bomb": (
        "import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            import time; time.sleep(5); os._exit(0)\n"
        "        n += 1\nexcept OSError: pass\nprint('ESCAPED' if n >= 1000 else f'stopped at {{n}}')"
    ),
    "memory bomb": "x = bytearray(4 * 1024**3); print('ESCAPED')",
    "infinite loop": "while True: pass",
    "sleep past the wall clock": "import time; time.sleep(3600); print('ESCAPED')",
    "fill the disk": "f = open('big', 'wb')\nfor _ in range(1024): f.write(b'0' * 1024 * 1024)\nprint('ESCAPED')",
    "mount a filesystem": (
        "import ctypes; libc = ctypes.CDLL(None)\n"
        "r = libc.mount(b'none', b'/scratch', b'tmpfs', 0, None)\nprint('ESCAPED' if r == 0 else 'no')"
    ),
    "see host processes": "import os; pids = [p for p in os.listdir('/proc') if p.isdigit()]; print('ESCAPED' if len(pids) > 5 else pids)",
    "leave a process behind": "import subprocess; subprocess.Popen(['sleep', '3599'], start_new_session=True); print('spawned')",
}


def _lingering() -> bool:
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes() == b"sleep\x003599\x00":
                return True
        except OSError:
            continue
    return False


#: Checks made on the host after the attempt: True means it escaped.
HOST_CHECKS: dict[str, Callable[[Path], bool]] = {
    "write outside scratch (host /tmp)": lambda project: Path("/tmp/stepwise-escape-marker").exists(),
    "write into the project": lambda project: (project / "escape.txt").exists(),
    "leave a process behind": lambda project: _lingering(),
}


@dataclass
class Attempt:
    """One escape attempt and whether the sandbox blocked it."""

    name: str
    blocked: bool
    how: str


def run_suite(project: str | Path, sandbox: Sandbox | None = None) -> list[Attempt]:
    sandbox = sandbox or Sandbox(SandboxLimits(cpu_seconds=2, wall_seconds=4, memory_mb=256, max_file_mb=8))
    out = []
    for name, code in ATTEMPTS.items():
        result = sandbox.run_python(code.format(project=project))
        check = HOST_CHECKS.get(name)
        escaped = "ESCAPED" in result.stdout or (check is not None and check(Path(project)))
        how = result.killed or (result.stderr.strip().splitlines() or [result.stdout.strip()])[-1][:160]
        out.append(Attempt(name, not escaped, how))
    return out


def summary(attempts: list[Attempt]) -> dict[str, Any]:
    return {"tried": len(attempts), "blocked": sum(a.blocked for a in attempts), "attempts": [a.__dict__ for a in attempts]}
