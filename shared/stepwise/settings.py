"""Deployment settings from the environment (prefix ``STEPWISE_``): which backend, which tables and bucket.

Plain data, imported by the adapters and the executor; ``config.build_client`` assembles a client from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class Settings(BaseModel):
    """Where runs live and how the engine runs them; every field is ``STEPWISE_<FIELD>`` in the environment."""

    backend: Literal["embedded", "memory", "aws"] = "embedded"
    home: Path = Path(".stepwise")
    events_table: str = "stepwise-events"
    runs_table: str = "stepwise-runs"
    registry_table: str = "stepwise-registry"
    bucket: str = "stepwise-state"
    step_function_arn: str = Field(default="arn:aws:lambda:us-east-1:000000000000:function:stepwise-step")
    state_machine_role_arn: str = "arn:aws:iam::000000000000:role/stepwise-state-machine"
    name_prefix: str = "stepwise"
    snapshot_every: int = 200
    #: Threads for blocking Parallel/Map branches in the local engine (``STEPWISE_LOCAL_CONCURRENCY``).
    local_concurrency: int = Field(default=256, ge=1)
    #: A running run's lease; its owner renews it every third of this (``STEPWISE_RUN_LEASE_SECONDS``).
    run_lease_seconds: float = Field(default=30.0, gt=0)
    #: The local engine parks a run (status waiting, continued later) instead of sleeping through a rate-limit
    #: retry at least this long (``STEPWISE_PARK_AFTER_SECONDS``); Step Functions waits those out durably.
    park_after_seconds: float = Field(default=5.0, ge=0)
    #: Events one execution may append before its next top-level node continues in a new execution (0: never).
    #: 3,000 keeps a Step Functions execution far below its 25,000 history events: a top-level step costs
    #: about 5 history events and appends at least one (``STEPWISE_CONTINUE_AFTER_EVENTS``).
    continue_after_events: int = Field(default=3000, ge=0)
    #: Embedded store: the WAL a run that never waits on I/O may grow before it is checkpointed mid-run, in MiB
    #: (a checkpoint's fsync stalls the run's writes for a few ms; runs that wait on LLMs checkpoint during the
    #: wait, stopped runs after their last step) (``STEPWISE_SQLITE_WAL_LIMIT_MB``).
    sqlite_wal_limit_mb: int = Field(default=256, ge=16)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        import os

        env = environ if environ is not None else dict(os.environ)
        values = {name: env[f"STEPWISE_{name.upper()}"] for name in cls.model_fields if f"STEPWISE_{name.upper()}" in env}
        return cls.model_validate(values)
