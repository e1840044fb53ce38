"""The permission manager: who may call which tool, with which arguments, proven per call by a token.

Three checks, in this order, every one journalled when it refuses (``tool_denied`` with the rule):

1. ``declared_tools``: the node's own ``tools:`` (in the action executor, always on);
2. ``role``: the run's tenant's roles (``roles.py``) grant the tool and its arguments fit the constraints;
   checked when a graph version is registered (``check_graph``) and again for every call;
3. ``capability_*``: the step mints a token bound to (tenant, run, node, step, tool, args hash)
   (``grant``, journalled as ``tool_granted``), the executor verifies it (``check``) and MCP servers get
   it in ``_meta`` (``capability.py`` documents the format).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from stepwise.tools.capability import Binding, Capabilities, CapabilityError, spent_tokens
from stepwise.tools.executor import ToolDenied, ToolInvocation
from stepwise.tools.ports import CAPABILITY_META
from stepwise.tools.roles import Role, RoleStore, decide
from stepwise.tools.settings import ToolSettings


class PermissionManager:
    """A ``ToolPolicy`` (``check``) plus the step's side (``grant``) and the registration check."""

    def __init__(self, roles: RoleStore | None = None, capabilities: Capabilities | None = None, *, strict: bool = False) -> None:
        self.roles = roles
        self.capabilities = capabilities or Capabilities(secrets.token_bytes(32))
        self.strict = strict

    # -- construction per backend -----------------------------------------------------------------
    @classmethod
    def embedded(cls, home: str | Path, settings: ToolSettings | None = None) -> PermissionManager:
        """Roles in ``<home>/api.db`` (the API's store), key generated into ``<home>/capability.key``; RBAC mode
        and the spent-token store from ``settings`` (default ``ToolSettings()``)."""
        from stepwise.store.sqlite import SqliteApiStore
        from stepwise.tools.capability import local_key

        settings = settings or ToolSettings()
        home = Path(home)
        caps = Capabilities(lambda: local_key(home), spent=spent_tokens(settings))
        return cls(RoleStore(lambda: SqliteApiStore(home / "api.db")), caps, strict=settings.rbac_strict)

    @classmethod
    def aws(cls, settings: ToolSettings) -> PermissionManager:
        """Roles in the API's DynamoDB table (``settings.api_table``); the key from the Secrets Manager secret
        ``settings.capability_secret`` (an ephemeral key when none is set: tokens are then verifiable only inside
        this process, never by a remote server)."""
        from stepwise.store.dynamodb import DynamoApiStore
        from stepwise.tools.capability import secrets_manager_key

        table, secret = settings.api_table, settings.capability_secret
        caps = Capabilities(lambda: secrets_manager_key(secret), spent=spent_tokens(settings)) if secret else None
        return cls(RoleStore(lambda: DynamoApiStore(table)), caps, strict=settings.rbac_strict)

    # -- RBAC ---------------------------------------------------------------------------------------
    def roles_of(self, tenant: str) -> list[Role]:
        return self.roles.list(tenant) if self.roles is not None else []

    def authorize(self, tenant: str, tool: str, arguments: dict[str, Any] | None) -> None:
        if self.roles is None and not self.strict:
            return
        why = decide(self.roles_of(tenant), tool, arguments, strict=self.strict)
        if why is not None:
            raise ToolDenied(f"tenant {tenant!r}: {why}", "role")

    def check_graph(self, spec: Any, tenant: str) -> list[str]:
        """Problems (one line each) when the graph declares tools the tenant's roles do not grant."""
        if self.roles is None and not self.strict:
            return []
        roles = self.roles_of(tenant)
        problems = []
        for name, node in spec.graph.nodes.items():
            for tool in node.tools:
                why = decide(roles, tool, None, strict=self.strict)
                if why is not None:
                    problems.append(f"node {name!r} declares {tool!r}: {why}")
            sub = getattr(node, "subgraph_spec", None)
            if sub is not None:
                problems.extend(self.check_graph(sub, tenant))
        return problems

    # -- capability tokens ---------------------------------------------------------------------------
    def grant(self, inv: ToolInvocation) -> str:
        """The step's side: authorize, then mint the token for exactly this call."""
        self.authorize(inv.tenant, inv.name, inv.arguments)
        return self.capabilities.mint(_binding(inv))

    def check(self, inv: ToolInvocation) -> None:
        """The executor's side: the token must be present, genuine, unexpired, unspent and bound to this call;
        the roles are read again (a role revoked since the grant takes effect now)."""
        try:
            self.capabilities.verify(inv.meta.get(CAPABILITY_META), _binding(inv))
        except CapabilityError as exc:
            raise ToolDenied(str(exc), exc.rule) from None
        self.authorize(inv.tenant, inv.name, inv.arguments)


def _binding(inv: ToolInvocation) -> Binding:
    return Binding(tenant=inv.tenant, run=inv.run_id, node=inv.node, step=inv.idempotency_key, tool=inv.name, arguments=inv.arguments)
