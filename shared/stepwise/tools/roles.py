"""RBAC for tools: each tenant has roles; a role names the tools (``calculator``), whole servers
(``files/*``) or everything (``*``) its holder may call, plus argument constraints such as the hosts
``http_fetch`` may reach. A tenant may call the union of its roles.

Roles are stored beside the API's keys and agents (the ``ApiStore``: SQLite on the embedded default,
DynamoDB on AWS) under ``tenant#<tenant>`` / ``role#<name>``. A tenant with no roles is *unrestricted*
unless ``strict`` is set (``STEPWISE_RBAC=strict``): then it may call nothing until granted.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

ROLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class ArgConstraint(BaseModel):
    """What one argument may hold: URL hosts (``hosts``), glob patterns (``match``), a maximum length."""

    model_config = ConfigDict(extra="forbid")
    hosts: list[str] | None = None
    match: list[str] | None = None
    max_length: int | None = Field(default=None, ge=0)

    def violation(self, arg: str, value: Any) -> str | None:
        """Why ``value`` breaks this constraint, or None."""
        from stepwise.tools.builtin import allowed

        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        if self.hosts is not None and not allowed(text, self.hosts):
            return f"argument {arg}={text!r} is not on a permitted host ({', '.join(self.hosts) or 'none'})"
        if self.match is not None and not any(fnmatch.fnmatchcase(text, p) for p in self.match):
            return f"argument {arg}={text!r} matches none of {self.match}"
        if self.max_length is not None and len(text) > self.max_length:
            return f"argument {arg} is longer than {self.max_length} characters"
        return None


class Role(BaseModel):
    """A named set of tools a tenant's agents may use, with argument constraints."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    #: ``tool`` (built-in), ``server/tool``, ``server/*`` or ``*``.
    tools: list[str] = Field(default_factory=list)
    #: tool pattern → argument name → constraint.
    constraints: dict[str, dict[str, ArgConstraint]] = Field(default_factory=dict)
    #: A tombstone: the store has no delete primitive, so a removed role is kept, marked, and ignored.
    deleted: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ROLE_NAME.match(value):
            raise ValueError("a role name is lowercase letters, digits, '.', '_' or '-' (at most 63), starting with a letter or digit")
        return value

    def covers(self, tool: str) -> bool:
        return any(fnmatch.fnmatchcase(tool, p) for p in self.tools)

    def violation(self, tool: str, arguments: dict[str, Any]) -> str | None:
        for pattern, rules in self.constraints.items():
            if fnmatch.fnmatchcase(tool, pattern):
                for arg, rule in rules.items():
                    why = rule.violation(arg, arguments.get(arg))
                    if why is not None:
                        return f"role {self.name!r}: {why}"
        return None


def decide(roles: Iterable[Role], tool: str, arguments: dict[str, Any] | None, *, strict: bool = False) -> str | None:
    """Why the holder of ``roles`` may not call ``tool`` with ``arguments`` (None: permitted).

    A call is permitted when some role covers the tool and that role's constraints hold; ``arguments=None``
    asks only whether the tool is covered (the registration-time check)."""
    roles = list(roles)
    if not roles:
        return "the tenant has no roles (STEPWISE_RBAC=strict)" if strict else None
    covering = [r for r in roles if r.covers(tool)]
    if not covering:
        names = ", ".join(r.name for r in roles)
        return f"tool {tool!r} is not granted by the tenant's roles ({names})"
    if arguments is None:
        return None
    reasons = [r.violation(tool, arguments) for r in covering]
    if any(why is None for why in reasons):
        return None
    return "; ".join(str(w) for w in reasons)


class RoleStore:
    """Roles per tenant, kept in an ``ApiStore`` (its adapters give SQLite, DynamoDB and in-memory)."""

    def __init__(self, store: Any) -> None:
        """``store``: an ``ApiStore``, or a zero-argument callable that opens one on first use."""
        self._store = store

    @property
    def store(self) -> Any:
        if callable(self._store) and not hasattr(self._store, "_query"):
            self._store = self._store()
        return self._store

    def list(self, tenant: str) -> list[Role]:
        roles = [Role.model_validate(d) for d in self.store._query(f"tenant#{tenant}", "role#")]
        return [r for r in roles if not r.deleted]

    def get(self, tenant: str, name: str) -> Role | None:
        found = self.store._get(f"tenant#{tenant}", f"role#{name}")
        role = Role.model_validate(found[1]) if found else None
        return role if role is not None and not role.deleted else None

    def put(self, tenant: str, role: Role) -> Role:
        """Create or replace (optimistically: a concurrent writer makes this retry)."""
        from stepwise.store.base import CONFLICT_RETRIES, StoreConflict

        for _ in range(CONFLICT_RETRIES):
            found = self.store._get(f"tenant#{tenant}", f"role#{role.name}")
            try:
                self.store._put(f"tenant#{tenant}", f"role#{role.name}", role.model_dump(), found[0] if found else None)
                return role
            except StoreConflict:
                continue
        raise StoreConflict(f"role {role.name!r} kept changing; retry")

    def delete(self, tenant: str, name: str) -> bool:
        if self.get(tenant, name) is None:
            return False
        self.put(tenant, Role(name=name, deleted=True))
        return True
