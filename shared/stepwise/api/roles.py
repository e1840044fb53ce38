"""Tool roles over the API: every tenant reads its own roles; operators (principals of a tenant listed in
``STEPWISE_ADMIN_TENANTS``) create, replace and delete the roles of any tenant. A tenant can never grant
itself tools. See docs/security.md.

No ``from __future__ import annotations``: Powertools reads the route signatures at runtime.
"""

from functools import partial
from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import APIGatewayRouter as Router
from pydantic import BaseModel

from stepwise.api.auth import tenant_of
from stepwise.api.errors import ApiError, documented
from stepwise.api.facade import StepwiseApi
from stepwise.tools.roles import Role, RoleStore


class RoleList(BaseModel):
    """A tenant's tool roles."""

    tenant: str
    roles: list[Role]


class Deleted(BaseModel):
    """The answer of a delete."""

    deleted: bool


def router(api: StepwiseApi) -> Router:
    """Every tenant reads its own tool roles; operators manage any tenant's."""
    router = Router()
    tenant = partial(tenant_of, router)
    roles = RoleStore(api.store)

    def operator() -> None:
        if tenant() not in api.settings.admin_tenants:
            raise ApiError(403, "forbidden", "managing roles needs an operator key (a tenant listed in STEPWISE_ADMIN_TENANTS)")

    @router.get("/roles", summary="Your tenant's tool roles", tags=["roles"], responses=documented())
    def my_roles() -> RoleList:
        return RoleList(tenant=tenant(), roles=roles.list(tenant()))

    @router.get("/tenants/<tenant_id>/roles", summary="A tenant's tool roles (operators)", tags=["roles"], responses=documented(403))
    def tenant_roles(tenant_id: str) -> RoleList:
        operator()
        return RoleList(tenant=tenant_id, roles=roles.list(tenant_id))

    @router.put(
        "/tenants/<tenant_id>/roles/<role>",
        summary="Create or replace a tool role (operators)",
        tags=["roles"],
        responses=documented(403, body=True),
    )
    def put_role(tenant_id: str, role: str, body: Annotated[Role, Body()]) -> Role:
        operator()
        if body.name != role:
            raise ApiError(422, "validation_error", f"the body's name is {body.name!r} but the path says {role!r}; make them equal")
        return roles.put(tenant_id, body)

    @router.delete("/tenants/<tenant_id>/roles/<role>", summary="Delete a tool role (operators)", tags=["roles"], responses=documented(403))
    def delete_role(tenant_id: str, role: str) -> Deleted:
        operator()
        if not roles.delete(tenant_id, role):
            raise ApiError(404, "not_found", f"tenant {tenant_id!r} has no role {role!r}")
        return Deleted(deleted=True)

    return router
