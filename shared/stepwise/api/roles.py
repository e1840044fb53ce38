"""Tool roles over the API: every tenant reads its own roles; operators (principals of a tenant listed in
``STEPWISE_ADMIN_TENANTS``) create, replace and delete the roles of any tenant. A tenant can never grant
itself tools. See docs/security.md.

No ``from __future__ import annotations``: Powertools reads the route signatures at runtime.
"""

import os
from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from stepwise.tools.roles import Role, RoleStore


class RoleList(BaseModel):
    tenant: str
    roles: list[Role]


class Deleted(BaseModel):
    deleted: bool


def admin_tenants() -> set[str]:
    return {t.strip() for t in os.environ.get("STEPWISE_ADMIN_TENANTS", "").split(",") if t.strip()}


def add_role_routes(app: Any, api: Any, tenant: Callable[[], str], error: Callable[..., Exception], errors: Callable[..., Any]) -> None:
    roles = RoleStore(api.store)

    def operator() -> None:
        if tenant() not in admin_tenants():
            raise error(403, "forbidden", "managing roles needs an operator key (a tenant listed in STEPWISE_ADMIN_TENANTS)")

    @app.get("/roles", summary="Your tenant's tool roles", tags=["roles"], responses=errors())
    def my_roles() -> RoleList:
        return RoleList(tenant=tenant(), roles=roles.list(tenant()))

    @app.get("/tenants/<tenant_id>/roles", summary="A tenant's tool roles (operators)", tags=["roles"], responses=errors(403))
    def tenant_roles(tenant_id: str) -> RoleList:
        operator()
        return RoleList(tenant=tenant_id, roles=roles.list(tenant_id))

    @app.put(
        "/tenants/<tenant_id>/roles/<role>", summary="Create or replace a tool role (operators)", tags=["roles"], responses=errors(403)
    )
    def put_role(tenant_id: str, role: str, body: Annotated[Role, Body()]) -> Role:
        operator()
        if body.name != role:
            raise error(422, "validation_error", f"the body's name is {body.name!r} but the path says {role!r}; make them equal")
        return roles.put(tenant_id, body)

    @app.delete("/tenants/<tenant_id>/roles/<role>", summary="Delete a tool role (operators)", tags=["roles"], responses=errors(403))
    def delete_role(tenant_id: str, role: str) -> Deleted:
        operator()
        if not roles.delete(tenant_id, role):
            raise error(404, "not_found", f"tenant {tenant_id!r} has no role {role!r}")
        return Deleted(deleted=True)
