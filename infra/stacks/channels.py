"""Channels out of AWS: the ``channels`` Lambda (functions/channels/handler.py) on the events table's stream.

- Fed by the events table's DynamoDB stream (NEW_IMAGE), INSERT records only (a filter on the event
  source mapping, so guard items and TTL deletions never invoke it); failed batches are bisected and
  retried, then dropped (a live stream is only worth its freshness; the log keeps every event, and
  clients resume from it with ``after``).
- Posts each event to the run's WebSocket subscribers: ``execute-api:ManageConnections`` on this API's
  ``POST @connections`` only. The endpoint comes from each subscription (stored from API Gateway's
  request context when it subscribed), not from this function's environment: the WebSocket API's
  integration is the api function, and nothing here points back at this function, so no cycle.
- Outside the VPC: it reaches DynamoDB and API Gateway only, through their public endpoints.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.stacks.api import Api
from infra.stacks.compute import RUNTIME, RUNTIME_REASON, Compute, nag_resource
from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge
from infra.stacks.storage import StateStorage

ROOT = Path(__file__).resolve().parents[2]


class Channels(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StackConfig, storage: StateStorage, compute: Compute, api: Api) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="channels: read the events stream, the API table's subscriptions, post to WebSocket connections",
        )
        log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=f"{config.name_prefix}-channels",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(ROOT / "functions" / "channels"), exclude=["__pycache__", "*.pyc"]),
            layers=[compute.layer],
            role=self.role,
            memory_size=512,
            timeout=Duration.seconds(60),
            log_group=log_group,
            environment={
                "STEPWISE_API_TABLE": storage.api.table_name,
                "POWERTOOLS_SERVICE_NAME": "stepwise-channels",
            },
            description="Stepwise channels (functions/channels/handler.py): events stream -> WebSocket subscribers",
        )
        acknowledge(self.function, "AwsSolutions-L1", RUNTIME_REASON)
        self.function.add_event_source(
            sources.DynamoEventSource(
                storage.events,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=100,
                max_batching_window=Duration.millis(0),
                bisect_batch_on_error=True,
                retry_attempts=2,
                filters=[lambda_.FilterCriteria.filter({"eventName": lambda_.FilterRule.is_equal("INSERT")})],
            )
        )
        # subscriptions: read them, drop the ones whose connection is gone (410)
        self.role.add_to_policy(iam.PolicyStatement(actions=["dynamodb:Query", "dynamodb:DeleteItem"], resources=[storage.api.table_arn]))
        connections = stack.format_arn(
            service="execute-api",
            resource=api.websocket.api_id,
            resource_name=f"{api.websocket_stage.stage_name}/POST/@connections/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        self.role.add_to_policy(iam.PolicyStatement(actions=["execute-api:ManageConnections"], resources=[connections]))
        ws_id = stack.get_logical_id(api.websocket.node.default_child)  # type: ignore[arg-type]
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[{nag_resource(stack, connections).replace(api.websocket.api_id, f'<{ws_id}>')}]",
            "postToConnection on any connection of this WebSocket API's stage: connection ids exist only at run time",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "dynamodb:ListStreams has no resource-level permissions; Lambda's stream event source mapping needs it",
        )
