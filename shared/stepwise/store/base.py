"""The ApiStore port: API keys, agents (tenant, name) → immutable versions + aliases, thread owners.

Every record is a JSON document addressed by a partition key and a sort key, with a revision number
for optimistic concurrency. Items of one tenant share the partition ``tenant#<tenant>`` so listing a
tenant's agents or keys is one query; thread ownership is global (``thread#<id>``) so that two tenants
can never both claim a thread. The base class owns all of that; an adapter implements ``_get``,
``_put`` (conditional on the revision) and ``_query``.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from stepwise.errors import StepwiseError

CONFLICT_RETRIES = 8
R = TypeVar("R", bound=BaseModel)


class StoreConflict(StepwiseError, RuntimeError):
    """The item changed (or appeared) since it was read: re-read and retry."""


class ApiKeyRecord(BaseModel):
    """An API key at rest: only a salted hash of its secret is stored, never the secret."""

    key_id: str
    tenant: str
    name: str = ""
    salt: str
    hash: str
    created_at: float = Field(default_factory=time.time)
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class VersionRecord(BaseModel):
    """One stored agent version: its graph ref and metadata."""

    version: int
    ref: str
    created_at: float = Field(default_factory=time.time)
    description: str = ""


class AgentRecord(BaseModel):
    """An agent of one tenant: its versions (immutable graph refs, numbered from 1) and its aliases."""

    tenant: str
    name: str
    description: str = ""
    versions: list[VersionRecord] = Field(default_factory=list)
    aliases: dict[str, int] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    def version(self, number: int) -> VersionRecord | None:
        return self.versions[number - 1] if 1 <= number <= len(self.versions) else None

    def by_ref(self, ref: str) -> VersionRecord | None:
        return next((v for v in self.versions if v.ref == ref), None)


#: Separates a thread's name from the suffix of a tenant's own thread behind a name another tenant owns.
ALIAS_MARK = "~"
_ALIAS_BYTES = 6  # the suffix: 12 hex digits
_ALIAS_SUFFIX = re.compile(rf"{re.escape(ALIAS_MARK)}[0-9a-f]{{{2 * _ALIAS_BYTES}}}(?![0-9a-f])")


def thread_name(thread_id: str) -> str:
    """The name a tenant knows an engine thread by: its id, without an alias suffix (``ApiStore.thread_alias``)."""
    return thread_id.split(ALIAS_MARK, 1)[0]


def thread_names_in(text: str) -> str:
    """``text`` (a message the engine wrote) with every engine thread id in it written as its tenant's name."""
    return _ALIAS_SUFFIX.sub("", text)


def _tenant_pk(tenant: str) -> str:
    return f"tenant#{tenant}"


class ApiStore(ABC):
    """The API's own records (agents, versions, keys, roles, webhooks) over a small key-value port."""

    # -- primitives (adapters) ----------------------------------------------------------------
    @abstractmethod
    def _get(self, pk: str, sk: str) -> tuple[int, dict[str, Any]] | None:
        """The item's (revision, document), or None."""

    @abstractmethod
    def _put(self, pk: str, sk: str, doc: dict[str, Any], expected: int | None) -> int:
        """Write if the current revision is ``expected`` (None: the item must not exist); return the new revision.

        Raise StoreConflict otherwise.
        """

    @abstractmethod
    def _query(self, pk: str, prefix: str) -> list[dict[str, Any]]:
        """Documents of the partition whose sort key starts with ``prefix``, in sort-key order."""

    def _update(self, pk: str, sk: str, model: type[R], change: Callable[[R], bool], conflict: str) -> R | None:
        """Read, change, write back only if nobody wrote in between; re-read and retry when someone did.
        ``change`` edits the record and says whether it needs writing. None when the item does not exist."""
        for _ in range(CONFLICT_RETRIES):
            found = self._get(pk, sk)
            if found is None:
                return None
            revision, doc = found
            record = model.model_validate(doc)
            if not change(record):
                return record
            try:
                self._put(pk, sk, record.model_dump(), revision)
            except StoreConflict:
                continue
            return record
        raise StoreConflict(conflict)

    # -- API keys -----------------------------------------------------------------------------
    def put_key(self, record: ApiKeyRecord) -> None:
        self._put(_tenant_pk(record.tenant), f"apikey#{record.key_id}", record.model_dump(), None)

    def get_key(self, tenant: str, key_id: str) -> ApiKeyRecord | None:
        found = self._get(_tenant_pk(tenant), f"apikey#{key_id}")
        return ApiKeyRecord.model_validate(found[1]) if found else None

    def list_keys(self, tenant: str) -> list[ApiKeyRecord]:
        return [ApiKeyRecord.model_validate(d) for d in self._query(_tenant_pk(tenant), "apikey#")]

    def revoke_key(self, tenant: str, key_id: str) -> ApiKeyRecord | None:
        def revoke(record: ApiKeyRecord) -> bool:
            if record.revoked_at is not None:
                return False
            record.revoked_at = time.time()
            return True

        conflict = f"key {key_id} kept changing while being revoked"
        return self._update(_tenant_pk(tenant), f"apikey#{key_id}", ApiKeyRecord, revoke, conflict)

    # -- agents -------------------------------------------------------------------------------
    def get_agent(self, tenant: str, name: str) -> AgentRecord | None:
        found = self._get(_tenant_pk(tenant), f"agent#{name}")
        return AgentRecord.model_validate(found[1]) if found else None

    def list_agents(self, tenant: str) -> list[AgentRecord]:
        return [AgentRecord.model_validate(d) for d in self._query(_tenant_pk(tenant), "agent#")]

    def create_agent(self, tenant: str, name: str, ref: str, *, description: str = "") -> AgentRecord:
        """A new agent with version 1 aliased ``live``; StoreConflict if the tenant already has this name."""
        record = AgentRecord(tenant=tenant, name=name, description=description)
        record.versions.append(VersionRecord(version=1, ref=ref, description=description))
        record.aliases["live"] = 1
        self._put(_tenant_pk(tenant), f"agent#{name}", record.model_dump(), None)
        return record

    def add_version(
        self, tenant: str, name: str, ref: str, *, description: str = "", promote: bool = True
    ) -> tuple[AgentRecord, VersionRecord, bool]:
        """Append ``ref`` as the next version (or return the existing one with the same ref); move ``live`` if promote.

        Returns (agent, version, created). Raises KeyError if the agent does not exist.
        """
        outcome: dict[str, Any] = {}

        def add(record: AgentRecord) -> bool:
            existing = record.by_ref(ref)
            version = existing or VersionRecord(version=len(record.versions) + 1, ref=ref, description=description)
            outcome.update(version=version, created=existing is None)
            if existing is None:
                record.versions.append(version)
            if promote:
                record.aliases["live"] = version.version
            if existing is not None and not promote:
                return False
            record.updated_at = time.time()
            return True

        record = self._update(_tenant_pk(tenant), f"agent#{name}", AgentRecord, add, f"agent {name!r} kept changing; retry the request")
        if record is None:
            raise KeyError(name)
        return record, outcome["version"], outcome["created"]

    def set_alias(self, tenant: str, name: str, alias: str, version: int) -> AgentRecord:
        """Point ``alias`` at an existing version. KeyError if the agent is missing, ValueError if the version is."""

        def point(record: AgentRecord) -> bool:
            if record.version(version) is None:
                raise ValueError(f"agent {name!r} has versions 1..{len(record.versions)}")
            record.aliases[alias] = version
            record.updated_at = time.time()
            return True

        record = self._update(_tenant_pk(tenant), f"agent#{name}", AgentRecord, point, f"agent {name!r} kept changing; retry the request")
        if record is None:
            raise KeyError(name)
        return record

    # -- threads ------------------------------------------------------------------------------
    def claim_thread(self, tenant: str, thread_id: str) -> str:
        """Make ``tenant`` the owner of ``thread_id`` unless someone owns it already; return the owner."""
        try:
            self._put(f"thread#{thread_id}", "owner", {"tenant": tenant, "created_at": time.time()}, None)
            return tenant
        except StoreConflict:
            owner = self.thread_owner(thread_id)
            assert owner is not None
            return owner

    def thread_owner(self, thread_id: str) -> str | None:
        found = self._get(f"thread#{thread_id}", "owner")
        return str(found[1]["tenant"]) if found else None

    def thread_alias(self, tenant: str, name: str, *, create: bool) -> str | None:
        """The engine thread behind ``tenant``'s thread ``name`` where another tenant owns that name:
        ``<name>~<random>``, made on first use when ``create`` (a name never holds ``~``), else None."""
        pk, sk = f"thread#{name}", f"alias#{tenant}"
        found = self._get(pk, sk)
        if found is None and create:
            with contextlib.suppress(StoreConflict):  # a concurrent first use made it: read theirs
                self._put(pk, sk, {"thread": f"{name}{ALIAS_MARK}{secrets.token_hex(_ALIAS_BYTES)}", "created_at": time.time()}, None)
            found = self._get(pk, sk)
        return str(found[1]["thread"]) if found else None

    # -- one-time claims and small indexes (triggers) -------------------------------------------
    def claim_once(self, pk: str, sk: str, doc: dict[str, Any]) -> bool:
        """Write ``doc`` unless the item exists (a conditional put): True for the first caller only."""
        try:
            self._put(pk, sk, {**doc, "created_at": time.time()}, None)
            return True
        except StoreConflict:
            return False

    def put_index(self, pk: str, sk: str, doc: dict[str, Any]) -> None:
        """Create or overwrite one entry of a small index partition (last writer wins)."""
        for _ in range(CONFLICT_RETRIES):
            found = self._get(pk, sk)
            try:
                self._put(pk, sk, doc, found[0] if found else None)
                return
            except StoreConflict:
                continue
        raise StoreConflict(f"index {pk}/{sk} kept changing; retry")

    def read_index(self, pk: str, prefix: str = "") -> list[dict[str, Any]]:
        return self._query(pk, prefix)

    # -- per-agent webhooks ---------------------------------------------------------------------
    def set_webhook(self, tenant: str, agent: str, hook: dict[str, Any] | None) -> None:
        """The agent's webhook (url, secret, events), or None to remove it; the secret is kept to sign with."""
        self.put_index(_tenant_pk(tenant), f"webhook#{agent}", {"hook": hook})

    def get_webhook(self, tenant: str, agent: str) -> dict[str, Any] | None:
        found = self._get(_tenant_pk(tenant), f"webhook#{agent}")
        return found[1].get("hook") if found else None
