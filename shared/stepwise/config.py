"""Build a client from settings: embedded defaults on a laptop, DynamoDB/S3/Step Functions on AWS.

Settings come from the environment (prefix ``STEPWISE_``), so a Lambda, ``stepwise serve`` and the
CLI all assemble the same pieces the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stepwise.client import Stepwise
from stepwise.runtime.services import Observer, Services
from stepwise.settings import Settings
from stepwise.tools.settings import ToolSettings

if TYPE_CHECKING:
    from stepwise.tools.permissions import PermissionManager

__all__ = ["Settings", "build_client"]


def build_client(settings: Settings | None = None, *, observer: Observer | None = None) -> Stepwise:
    settings = settings or Settings.from_env()
    if settings.backend == "embedded":
        return Stepwise.embedded(settings.home, observer=observer, settings=settings)
    if settings.backend == "memory":
        return Stepwise.in_memory(observer=observer, settings=settings)
    # AWS: adapters beside their ports; imported lazily so the embedded default needs no boto3.
    from stepwise.extras import needs

    with needs("aws", "the AWS backend (STEPWISE_BACKEND=aws)"):
        from stepwise.executors.stepfunctions import StepFunctionsExecutor
        from stepwise.state.dynamodb import DynamoEventStore, DynamoRegistry, DynamoRunStore
        from stepwise.state.s3 import S3SnapshotStore

    tool_settings = ToolSettings.from_env()  # read once, here: the Lambda's or server's start
    services = Services(
        events=DynamoEventStore(settings.events_table, bucket=settings.bucket),
        snapshots=S3SnapshotStore(settings.bucket),
        runs=DynamoRunStore(settings.runs_table),
        registry=DynamoRegistry(settings.registry_table),
        observer=observer,
        snapshot_every=settings.snapshot_every,
        permissions=_aws_permissions(tool_settings),
        settings=settings,
        tool_settings=tool_settings,
    )
    executor = StepFunctionsExecutor(services, settings)
    return Stepwise(services, executor=executor)


def _aws_permissions(settings: ToolSettings) -> PermissionManager:
    """Roles in the API's table (STEPWISE_API_TABLE); the token key from STEPWISE_CAPABILITY_SECRET."""
    from stepwise.tools.permissions import PermissionManager

    return PermissionManager.aws(settings)
