"""CPU quotas for the sandbox with cgroups: a busy call is held to its quota by the kernel (its throttle
counter rises), all of a tenant's calls share the tenant's quota (the tenant's cgroup is throttled while
its calls' own cgroups are not), the ``python`` tool's tenant comes from the call's capability token, the
call's cgroup is gone afterwards, and ``STEPWISE_SANDBOX_CGROUPS=off`` falls back to rlimits.

Needs a cgroup hierarchy with the ``cpu`` controller that this process may write (root on cgroup v1, or a
delegated cgroup v2 subtree): the project's CI machine has one (cgroup v1, root). Elsewhere these tests skip
and say why; the rlimits fallback test runs everywhere."""

from __future__ import annotations

import os
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepwise.llm.base import ToolCall
from stepwise.tools import cgroups
from stepwise.tools.capability import Binding, Capabilities
from stepwise.tools.executor import ActionExecutor
from stepwise.tools.registry import ToolRegistry
from stepwise.tools.sandbox import Sandbox, SandboxLimits, sandbox_python
from stepwise.tools.settings import ToolSettings

ROOT = Path(__file__).resolve().parents[2]
HIERARCHY = cgroups.detect()
needs_cgroups = pytest.mark.skipif(
    HIERARCHY is None, reason="no writable cgroup cpu controller here (not root, no delegation): rlimits only, see docs/security.md"
)
BUSY = "while True:\n    pass"


def stat(group: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in (group / "cpu.stat").read_text().splitlines() if line.strip())}


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private sandbox root for this test, removed afterwards (tenant cgroups persist between calls)."""
    name = f"stepwise-test-{secrets.token_hex(4)}"
    monkeypatch.setenv("STEPWISE_SANDBOX_CGROUP", name)
    yield name
    if HIERARCHY is not None:
        top = HIERARCHY.base / name
        for tenant in top.glob("t-*"):
            tenant.rmdir()  # fails (and fails the test) if a call's cgroup was left behind
        if top.exists():
            top.rmdir()


@needs_cgroups
def test_a_busy_call_is_held_to_its_cpu_quota(root: str) -> None:
    assert HIERARCHY is not None
    limits = SandboxLimits(cpu_seconds=5, wall_seconds=3, cpu_quota=0.01)  # 1 ms of CPU per 100 ms period
    result = Sandbox(limits, tenant="acme", cgroup_root=root).run_python(BUSY)
    assert result.killed == "wall_time"  # 3 s of wall at 1% of a core is far from the 5 CPU seconds
    assert result.cpu["backend"] == f"cgroup-v{HIERARCHY.version}" and result.cpu["cpus"] == 0.01
    assert result.cpu["throttled"] > 0  # the kernel held it back: the quota, not the rlimit, bounded it
    tenant = HIERARCHY.base / root / cgroups.tenant_slug("acme")
    assert HIERARCHY.read_quota(tenant) == 1.0 and list(tenant.glob("c-*")) == []  # the call's cgroup is gone


@needs_cgroups
def test_a_tenants_calls_share_the_tenant_quota(root: str) -> None:
    assert HIERARCHY is not None
    capped = SandboxLimits(cpu_seconds=5, wall_seconds=3, cpu_quota=None, tenant_cpus=0.1)  # no per-call cap; 2 busy calls want 2 cores
    results = []

    def call() -> None:
        results.append(Sandbox(capped, tenant="acme", cgroup_root=root).run_python(BUSY))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other = Sandbox(SandboxLimits(), tenant="globex", cgroup_root=root).run_python("print(6 * 7)")
    acme, globex = (HIERARCHY.base / root / cgroups.tenant_slug(t) for t in ("acme", "globex"))
    assert [r.cpu["throttled"] for r in results] == [0, 0]  # the calls have no quota of their own ...
    assert stat(acme)["nr_throttled"] > 0  # ... the tenant's cgroup, which holds both, was throttled
    assert other.stdout == "42\n" and stat(globex)["nr_throttled"] == 0  # another tenant is not held by acme's cap
    assert HIERARCHY.read_quota(acme) == 0.1 and HIERARCHY.read_quota(globex) == 1.0


@needs_cgroups
def test_a_probe_in_flight_does_not_turn_cgroups_off(root: str) -> None:
    """Two first sandbox calls at once both probed with one name (pid only): the loser's mkdir failed and
    ``None`` was cached, so every later call of the process ran on rlimits alone (a CI failure). Probes are
    now unique and detection runs once, under a lock."""
    assert HIERARCHY is not None
    busy = HIERARCHY.base / f"{root}-probe-{os.getpid()}"  # the name another thread's probe had
    busy.mkdir()
    try:
        assert cgroups.detect(root) == HIERARCHY
        assert cgroups.cached_hierarchy(root) == HIERARCHY
    finally:
        busy.rmdir()
        cgroups._detected.pop(root, None)


@needs_cgroups
def test_the_python_tool_runs_in_its_tenants_cgroup(root: str) -> None:
    assert HIERARCHY is not None
    caps = Capabilities(bytes(range(32)))
    call = ToolCall(id="a", name="python", arguments={"code": "print(sum(range(10)))"})
    token = caps.mint(Binding("initech", "r1", "agent", "k|tool|a", "python", dict(call.arguments)))
    registry = ToolRegistry(settings=ToolSettings.from_env({"STEPWISE_SANDBOX_CGROUP": root}))
    try:
        [out] = ActionExecutor(registry).run([call], key_prefix="k", node="agent", run_id="r1", tenant="initech", grant=lambda i: token)
    finally:
        registry.close()
    assert out.ok and out.result["stdout"] == "45\n"
    assert (HIERARCHY.base / root / cgroups.tenant_slug("initech")).is_dir()  # created for this tenant's call


def test_without_cgroups_the_rlimits_bound_the_call() -> None:
    settings = ToolSettings.from_env({"STEPWISE_SANDBOX_CGROUPS": "off"})
    assert not settings.sandbox_cgroups and cgroups.backend(settings.sandbox_cgroups) == "rlimits"
    result = Sandbox.configured(settings, SandboxLimits(cpu_seconds=1, wall_seconds=300, cpu_quota=0.01), tenant="acme").run_python(BUSY)
    assert result.cpu == {"backend": "rlimits", "cpu_seconds": 1}
    assert result.killed == "cpu_time"  # RLIMIT_CPU ended it after one CPU second (no quota slowed it)


def test_cpu_shares_from_the_environment() -> None:
    env = {"STEPWISE_SANDBOX_CPUS": "0.5", "STEPWISE_SANDBOX_TENANT_CPUS": "none", "STEPWISE_SANDBOX_TOTAL_CPUS": "1.5"}
    limits = SandboxLimits.configured(ToolSettings.from_env(env))
    assert (limits.cpu_quota, limits.tenant_cpus, limits.total_cpus) == (0.5, None, 1.5)
    with pytest.raises(ValueError, match=r"^STEPWISE_SANDBOX_CPUS='half' is not a number of cores ≥ 0\.01 \(0\.5, 2\) or 'none'"):
        ToolSettings.from_env({"STEPWISE_SANDBOX_CPUS": "half"})
    with pytest.raises(ValueError, match=r"^STEPWISE_SANDBOX_CPUS='0\.001' is not a number of cores ≥ 0\.01"):
        ToolSettings.from_env({"STEPWISE_SANDBOX_CPUS": "0.001"})  # under the kernel's 1 ms per 100 ms


@needs_cgroups
def test_a_jailed_stdio_server_runs_in_a_cgroup_of_its_own(root: str) -> None:
    assert HIERARCHY is not None
    site = next(p for p in sys.path if p.endswith("site-packages"))
    shared = str(ROOT / "shared")
    registry = ToolRegistry(builtin=False, settings=ToolSettings.from_env({"STEPWISE_SANDBOX_CGROUP": root}))
    registry.add_server(
        "jailed",
        command=[sandbox_python(), "-m", "stepwise.tools.server"],
        env={"PYTHONPATH": f"{shared}:{site}"},
        sandbox=True,
        sandbox_binds=[site, shared],
        timeout_seconds=60,
    )
    server_group = HIERARCHY.base / root / cgroups.tenant_slug("mcp:jailed")
    try:
        [calc] = ActionExecutor(registry, default_timeout=60).run(
            [ToolCall(id="a", name="jailed/calculator", arguments={"expression": "6 * 7"})], key_prefix="k"
        )
        assert calc.ok and calc.result == 42
        [group] = server_group.glob("c-*")
        assert (group / "cgroup.procs").read_text().split()  # the server (and its jail) run inside it
    finally:
        registry.close()
    assert not group.exists()  # closed: its processes killed, the cgroup removed
