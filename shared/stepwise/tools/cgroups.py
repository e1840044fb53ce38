"""CPU quotas for sandboxed calls with cgroups, where the machine lets us; rlimits only where it does not.

Each sandboxed call runs in its own cgroup under its tenant's, under one root for all sandboxes::

    <cpu controller>/<root: stepwise-sandbox>/<tenant: t-<sha256[:16]>>/<call: c-<random>>
                      total_cpus (optional)    tenant_cpus                call_cpus

A quota is CPUs' worth of time per 100 ms period (``0.5`` = half a core), enforced by the kernel's CFS
bandwidth control and hierarchical: all of a tenant's concurrent calls together get at most
``tenant_cpus``, however many it starts, so one tenant cannot take the machine's cores from the others.
The process is moved into its call cgroup by a ``/bin/sh`` stub before it execs the jail (so every process
it ever forks is inside); afterwards every process still in the call cgroup is killed and the cgroup
removed. ``cpu.stat`` of the call (how often it was throttled) is read before removal.

Where it works:

- **cgroup v1** with a writable ``cpu`` hierarchy (``/sys/fs/cgroup/cpu`` or ``cpu,cpuacct``) and root —
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``. This is the case on this project's CI machine (a hybrid
  layout: v1 controllers, an empty v2 ``unified`` hierarchy, no systemd as PID 1);
- **cgroup v2** where our own cgroup's parent delegates ``cpu`` to us (root, or a systemd ``Delegate=yes``
  unit) — ``cpu.max``. The sandbox root is created beside our own cgroup (v2 forbids processes in a cgroup
  whose controllers are enabled for children).

Anything else (not root and no delegation, a read-only ``/sys/fs/cgroup``, containers without cgroupfs,
macOS) falls back to rlimits: ``RLIMIT_CPU`` bounds each call's CPU *seconds*, but not its share of the
machine while it runs. ``backend()`` says which applies; ``STEPWISE_SANDBOX_CGROUPS=off`` forces the fallback.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PERIOD_US = 100_000
ROOT_NAME = "stepwise-sandbox"

log = logging.getLogger(__name__)
CGROUPFS = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Hierarchy:
    """The cgroup hierarchy (v1 or v2) the sandbox puts its CPU quotas in."""

    version: int  # 1 or 2
    base: Path  # where the sandbox root is created

    def write_quota(self, group: Path, cpus: float | None) -> None:
        quota = -1 if cpus is None else max(1000, int(cpus * PERIOD_US))
        if self.version == 1:
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (group / "cpu.max").write_text(f"{'max' if quota < 0 else quota} {PERIOD_US}")

    def read_quota(self, group: Path) -> float | None:
        if self.version == 1:
            quota = int((group / "cpu.cfs_quota_us").read_text())
            period = int((group / "cpu.cfs_period_us").read_text())
        else:
            raw, period_text = (group / "cpu.max").read_text().split()
            quota, period = (-1 if raw == "max" else int(raw)), int(period_text)
        return None if quota < 0 else quota / period


def _v1_cpu() -> Path | None:
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        path = CGROUPFS / name
        if (path / "cpu.cfs_quota_us").exists():
            return path
    return None


def _v2_parent() -> Path | None:
    """The v2 cgroup that may hold our sandbox root: the parent of our own, if it delegates ``cpu``."""
    if not (CGROUPFS / "cgroup.controllers").exists():
        return None
    try:
        own = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    mine = CGROUPFS / own.strip().lstrip("/")
    parent = mine.parent if mine != CGROUPFS else CGROUPFS
    try:
        if "cpu" not in (parent / "cgroup.controllers").read_text().split():
            return None
        if "cpu" not in (parent / "cgroup.subtree_control").read_text().split():
            (parent / "cgroup.subtree_control").write_text("+cpu")
    except OSError:
        return None
    return parent


def detect(root: str = ROOT_NAME) -> Hierarchy | None:
    """The hierarchy sandboxes can use here, or None (then rlimits only). Probes by creating a cgroup beside ``root``."""
    candidates: list[Hierarchy] = []
    v1 = _v1_cpu()
    if v1 is not None:
        candidates.append(Hierarchy(1, v1))
    v2 = _v2_parent()
    if v2 is not None:
        candidates.append(Hierarchy(2, v2))
    for h in candidates:
        probe = h.base / f"{root}-probe-{os.getpid()}-{secrets.token_hex(4)}"
        try:  # the probe: can we make a cgroup and read its quota back? (removed again: no trace)
            probe.mkdir()
            h.read_quota(probe)
        except (OSError, ValueError):
            continue
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()
        return h
    return None


_detected: dict[str, Hierarchy | None] = {}
_detecting = threading.Lock()


def cached_hierarchy(root: str = ROOT_NAME) -> Hierarchy | None:
    """``detect(root)`` once per process and root (the ``STEPWISE_SANDBOX_CGROUPS=off`` switch is ``Sandbox.cgroups``).

    Under a lock: two first calls at once must not both probe (the loser's failed probe cached ``None`` and
    turned cgroups off for the whole process)."""
    with _detecting:
        if root not in _detected:
            _detected[root] = detect(root)
        return _detected[root]


def backend(enabled: bool = True, root: str = ROOT_NAME) -> str:
    """``cgroup-v1``, ``cgroup-v2`` or ``rlimits`` (the fallback, and where ``enabled`` is False): what bounds a
    sandbox's CPU share here."""
    h = cached_hierarchy(root) if enabled else None
    return f"cgroup-v{h.version}" if h is not None else "rlimits"


def tenant_slug(tenant: str | None) -> str:
    """A cgroup name for a tenant: a hash (a tenant id is not trusted as a path component)."""
    return "t-" + hashlib.sha256((tenant or "").encode()).hexdigest()[:16]


@dataclass
class CallGroup:
    """One call's cgroup (created under its tenant's); ``enter`` is the stub that moves the process in."""

    hierarchy: Hierarchy
    path: Path
    hierarchy_quota: float | None = None  # the call's effective quota (cores), as written
    throttled: int = 0  # periods in which the kernel held the call back (read at ``close``)
    throttled_ms: float = 0.0

    def enter(self, argv: list[str]) -> list[str]:
        """``argv`` prefixed by a shell stub that writes its own pid into this cgroup, then execs ``argv``."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def close(self) -> None:
        """Read the throttling counters, kill whatever is left inside, remove the cgroup."""
        with contextlib.suppress(OSError, ValueError):
            stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line.strip())
            self.throttled = int(stat.get("nr_throttled", 0))
            if "throttled_time" in stat:  # v1: nanoseconds
                self.throttled_ms = int(stat["throttled_time"]) / 1e6
            elif "throttled_usec" in stat:
                self.throttled_ms = int(stat["throttled_usec"]) / 1e3
        self.kill()
        try:
            self.path.rmdir()
        except OSError as exc:
            log.warning("sandbox cgroup %s not removed: %s", self.path, exc)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, including jailed ones in a session of their own (bounded)."""
        for _ in range(200):  # bounded: the jail's PID 1 dying takes its namespace down with it
            pids = _pids(self.path)
            if not pids:
                break
            if self.hierarchy.version == 2 and (self.path / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    (self.path / "cgroup.kill").write_text("1")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)


def _pids(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def call_group(
    hierarchy: Hierarchy,
    *,
    tenant: str | None,
    call_cpus: float | None,
    tenant_cpus: float | None,
    total_cpus: float | None = None,
    root: str = ROOT_NAME,
) -> CallGroup:
    """Create ``<root>/<tenant>/<call>`` with the three quotas. A call's quota is capped at its tenant's and the
    tenant's at the total (cgroup v1 refuses a child quota above its parent's; v2 would take the smaller)."""
    top = hierarchy.base / root
    tenant_dir = top / tenant_slug(tenant)
    fresh_top, fresh_tenant = not top.exists(), not tenant_dir.exists()
    tenant_dir.mkdir(parents=True, exist_ok=True)
    if hierarchy.version == 2:
        for level in (top, tenant_dir):
            with contextlib.suppress(OSError):
                if "cpu" not in (level / "cgroup.subtree_control").read_text().split():
                    (level / "cgroup.subtree_control").write_text("+cpu")
    tenant_cpus = _smaller(tenant_cpus, total_cpus)
    for level, cpus, fresh in ((top, total_cpus, fresh_top), (tenant_dir, tenant_cpus, fresh_tenant)):
        try:
            if fresh or hierarchy.read_quota(level) != cpus:
                hierarchy.write_quota(level, cpus)
        except OSError as exc:  # lowering a level below a running call's quota (v1): keep the old value
            log.warning("sandbox cgroup %s keeps its quota (%s)", level, exc)
    call = tenant_dir / f"c-{secrets.token_hex(6)}"
    call.mkdir()
    # no call quota: the call is bounded by its tenant's alone (v1 accepts -1 under a limited parent)
    limit = None if call_cpus is None else _smaller(call_cpus, hierarchy.read_quota(tenant_dir))
    try:
        hierarchy.write_quota(call, limit)
    except OSError:
        call.rmdir()
        raise
    return CallGroup(hierarchy, call, limit)


def _smaller(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def remove_root(name: str = ROOT_NAME) -> None:
    """Remove a sandbox root and its (idle) tenant cgroups, wherever it exists; busy ones are left."""
    for base in filter(None, (_v1_cpu(), _v2_parent())):
        top = base / name
        if not top.is_dir():
            continue
        for tenant in top.glob("t-*"):
            with contextlib.suppress(OSError):
                tenant.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
