"""The memory services a step uses, built from ``MemorySettings`` (read once from the environment where the process
starts) and created lazily.

- LTM: ``STEPWISE_MEMORY_BACKEND=opensearch`` with ``STEPWISE_OPENSEARCH_ENDPOINT`` (OpenSearch Serverless,
  SigV4) or ``STEPWISE_OPENSEARCH_URL`` (any endpoint, e.g. a test double); otherwise the embedded store
  under ``<home>/memory`` (``STEPWISE_HOME``, default ``.stepwise``).
- STM: Valkey at ``STEPWISE_VALKEY_URL`` (ElastiCache with TLS ``rediss://`` on AWS, authenticated with the
  user whose password is in the secret ``STEPWISE_VALKEY_SECRET``), else the process's embedded Valkey.
Every long-term query goes through ``ResilientMemory`` (the retry table's memory row).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepwise.memory.resilient import ResilientMemory
from stepwise.memory.settings import MemorySettings
from stepwise.memory.stm import ShortTermMemory

if TYPE_CHECKING:  # numpy and the embedders load only when long-term memory is used
    from stepwise.memory.ltm import LongTermStore


class MemoryServices:
    """The memory agents use (long-term store, STM, procedural), built lazily from settings."""

    def __init__(
        self,
        *,
        home: str | Path | None = None,
        ltm: LongTermStore | None = None,
        valkey: Any = None,
        settings: MemorySettings | None = None,
    ) -> None:
        """``home``: the embedded store's directory (the engine's ``Settings.home``); ``settings``: the memory
        layer's (default ``MemorySettings()``: embedded everything, nothing read from the environment)."""
        self.settings = settings or MemorySettings()
        self.home = Path(home) if home is not None else Path(".stepwise")
        self._ltm, self._valkey = ltm, valkey
        self._stm: ShortTermMemory | None = None
        self._resilient: ResilientMemory | None = None
        self._procedural: Any = None
        self._lock = threading.Lock()

    @property
    def ltm(self) -> LongTermStore:
        with self._lock:
            if self._ltm is None:
                self._ltm = self._build_ltm()
            return self._ltm

    def _build_ltm(self) -> LongTermStore:
        from stepwise.memory.embedders import make_embedder

        embedder = make_embedder(self.settings.memory_embedder, threads=self.settings.embed_threads)
        if self.settings.memory_backend == "opensearch":
            from stepwise.memory.opensearch import OpenSearchLongTermStore

            return OpenSearchLongTermStore.from_settings(self.settings, embedder=embedder)
        from stepwise.memory.local import EmbeddedLongTermStore

        return EmbeddedLongTermStore(self.home, embedder=embedder)

    @property
    def valkey(self) -> Any:
        if self._valkey is None:
            from stepwise.memory.valkey import client

            self._valkey = client(self.settings.valkey_url, secret=self.settings.valkey_secret)
        return self._valkey

    @property
    def stm(self) -> ShortTermMemory:
        if self._stm is None:
            self._stm = ShortTermMemory(self.valkey)
        return self._stm

    @property
    def resilient(self) -> ResilientMemory:
        if self._resilient is None:
            self._resilient = ResilientMemory(self.ltm)
        return self._resilient

    @property
    def procedural(self) -> Any:
        if self._procedural is None:
            from stepwise.memory.procedural import ProceduralMemory

            self._procedural = ProceduralMemory(self.ltm)
        return self._procedural

    def close(self) -> None:
        if self._ltm is not None:
            self._ltm.close()
            self._ltm = None


_defaults: dict[tuple[MemorySettings, Path], MemoryServices] = {}
_default_lock = threading.Lock()


def default_memory(settings: MemorySettings, home: str | Path) -> MemoryServices:
    """The process-wide memory services for ``settings`` and ``home`` (for steps whose Services carry none)."""
    key = (settings, Path(home))
    with _default_lock:
        found = _defaults.get(key)
        if found is None:
            found = _defaults[key] = MemoryServices(home=home, settings=settings)
        return found
