"""Per-run and per-tenant budgets. Spend is checked before a call and added after it, in a ledger shared
by every step (Valkey: the embedded server, or ElastiCache on AWS), so a run on many Lambdas sees one total."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from stepwise.llm.errors import BudgetExceededError


class Ledger(Protocol):
    """Where spend per run and per tenant is counted."""

    def spent(self, tenant: str, run_id: str) -> tuple[float, float]: ...
    def add(self, tenant: str, run_id: str, usd: float) -> None: ...


class MemoryLedger:
    """A spend ledger in this process's memory."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], float] = {}
        self.tenants: dict[str, float] = {}
        self._lock = threading.Lock()

    def spent(self, tenant: str, run_id: str) -> tuple[float, float]:
        return self.runs.get((tenant, run_id), 0.0), self.tenants.get(tenant, 0.0)

    def add(self, tenant: str, run_id: str, usd: float) -> None:
        with self._lock:
            self.runs[(tenant, run_id)] = self.runs.get((tenant, run_id), 0.0) + usd
            self.tenants[tenant] = self.tenants.get(tenant, 0.0) + usd


class ValkeyLedger:
    """Spend counters with INCRBYFLOAT; run counters expire after ``run_ttl``; tenant counters per UTC month."""

    def __init__(self, client: Any, *, prefix: str = "stepwise:budget", run_ttl: int = 30 * 86400) -> None:
        self.client, self.prefix, self.run_ttl = client, prefix, run_ttl

    def _keys(self, tenant: str, run_id: str) -> tuple[str, str]:
        month = time.strftime("%Y-%m", time.gmtime())
        return f"{self.prefix}:{tenant}:run:{run_id}", f"{self.prefix}:{tenant}:month:{month}"

    def spent(self, tenant: str, run_id: str) -> tuple[float, float]:
        run_key, tenant_key = self._keys(tenant, run_id)
        run, total = self.client.mget([run_key, tenant_key])
        return float(run or 0), float(total or 0)

    def add(self, tenant: str, run_id: str, usd: float) -> None:
        if usd <= 0:
            return
        run_key, tenant_key = self._keys(tenant, run_id)
        pipe = self.client.pipeline()
        pipe.incrbyfloat(run_key, usd).expire(run_key, self.run_ttl)
        pipe.incrbyfloat(tenant_key, usd).expire(tenant_key, 40 * 86400)
        pipe.execute()


@dataclass
class Budgets:
    """Spend limits per run and per tenant, in USD."""

    run_usd: float | None = None
    tenant_usd: float | None = None
    tenants: dict[str, float] = field(default_factory=dict)  # per-tenant overrides of tenant_usd

    @property
    def active(self) -> bool:
        return self.run_usd is not None or self.tenant_usd is not None or bool(self.tenants)

    def check(self, ledger: Ledger, tenant: str, run_id: str) -> None:
        """Raise before a call once a budget is used up; the run stops with this message."""
        run, total = ledger.spent(tenant, run_id)
        if self.run_usd is not None and run >= self.run_usd:
            raise BudgetExceededError(
                f"run {run_id} spent ${run:.4f} of its ${self.run_usd:.4f} budget; raise STEPWISE_LLM_RUN_BUDGET_USD "
                "or use a cheaper model (model: auto picks the cheapest tier that fits)"
            )
        limit = self.tenants.get(tenant, self.tenant_usd)
        if limit is not None and total >= limit:
            raise BudgetExceededError(
                f"tenant {tenant!r} spent ${total:.4f} of its ${limit:.4f} monthly budget; raise the tenant budget "
                "(STEPWISE_LLM_TENANT_BUDGET_USD or llm config budgets.tenants) or wait for next month"
            )
