"""The API's own records: API keys, the per-tenant agent catalog and thread ownership.

``base.py`` is the port (``ApiStore``): it owns the protocol (models, optimistic concurrency, retries)
over three small primitives that each adapter implements — ``memory.py`` (tests), ``sqlite.py`` (the
embedded default, ``stepwise serve``) and ``dynamodb.py`` (AWS).
"""

from stepwise.store.base import AgentRecord, ApiKeyRecord, ApiStore, StoreConflict, VersionRecord, thread_name, thread_names_in

__all__ = ["AgentRecord", "ApiKeyRecord", "ApiStore", "StoreConflict", "VersionRecord", "thread_name", "thread_names_in"]
