"""Build a client from settings: embedded defaults on a laptop, DynamoDB/S3/Step Functions on AWS.

Settings come from the environment (prefix ``STEPWISE_``), so a Lambda, ``stepwise serve`` and the
CLI all assemble the same pieces the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from stepwise.client import Stepwise
from stepwise.runtime.services import Observer, Services


class Settings(BaseModel):
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

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        import os

        env = environ if environ is not None else dict(os.environ)
        values = {name: env[f"STEPWISE_{name.upper()}"] for name in cls.model_fields if f"STEPWISE_{name.upper()}" in env}
        return cls.model_validate(values)


def build_client(settings: Settings | None = None, *, observer: Observer | None = None) -> Stepwise:
    settings = settings or Settings.from_env()
    if settings.backend == "embedded":
        return Stepwise.embedded(settings.home, observer=observer)
    if settings.backend == "memory":
        return Stepwise.in_memory(observer=observer)
    # AWS: adapters beside their ports; imported lazily so the embedded default needs no boto3.
    from stepwise.asl.stepfunctions import StepFunctionsExecutor
    from stepwise.state.dynamodb import DynamoEventStore, DynamoRegistry, DynamoRunStore
    from stepwise.state.s3 import S3SnapshotStore

    services = Services(
        events=DynamoEventStore(settings.events_table, bucket=settings.bucket),
        snapshots=S3SnapshotStore(settings.bucket),
        runs=DynamoRunStore(settings.runs_table),
        registry=DynamoRegistry(settings.registry_table),
        observer=observer,
        snapshot_every=settings.snapshot_every,
    )
    executor = StepFunctionsExecutor(services, settings)
    return Stepwise(services, executor=executor)
