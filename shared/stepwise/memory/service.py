"""The memory services a step uses, built once per process from the environment and created lazily.

- LTM: ``STEPWISE_MEMORY_BACKEND=opensearch`` with ``STEPWISE_OPENSEARCH_ENDPOINT`` (OpenSearch Serverless,
  SigV4) or ``STEPWISE_OPENSEARCH_URL`` (any endpoint, e.g. a test double); otherwise the embedded store
  under ``<home>/memory`` (``STEPWISE_HOME``, default ``.stepwise``).
- STM: Valkey at ``STEPWISE_VALKEY_URL`` (ElastiCache with TLS ``rediss://`` on AWS, authenticated with the
  user whose password is in the secret ``STEPWISE_VALKEY_SECRET``), else the process's embedded Valkey.
Every long-term query goes through ``ResilientMemory`` (the retry table's memory row).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepwise.memory.resilient import ResilientMemory
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
        environ: dict[str, str] | None = None,
    ) -> None:
        self.env = dict(os.environ if environ is None else environ)
        self.home = Path(home) if home is not None else Path(self.env.get("STEPWISE_HOME", ".stepwise"))
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
        if self.env.get("STEPWISE_MEMORY_BACKEND", "embedded") == "opensearch":
            from stepwise.memory.opensearch import OpenSearchLongTermStore

            return OpenSearchLongTermStore.from_env(self.env)
        from stepwise.memory.local import EmbeddedLongTermStore

        return EmbeddedLongTermStore(self.home)

    @property
    def valkey(self) -> Any:
        if self._valkey is None:
            from stepwise.memory.valkey import client

            self._valkey = client(self.env.get("STEPWISE_VALKEY_URL") or None, self.env)
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


_default: MemoryServices | None = None
_default_lock = threading.Lock()


def default_memory() -> MemoryServices:
    """The process-wide memory services (for steps whose Services carry none)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MemoryServices()
        return _default
