"""Channels out of AWS: the ``channels`` Lambda (functions/channels/handler.py) on the events table's stream.

- Fed by the events table's DynamoDB stream (NEW_IMAGE), INSERT records only (a filter on the event
  source mapping, so guard items and TTL deletions never invoke it); failed batches are bisected and
  retried, then dropped (a live stream is only worth its freshness; the log keeps every event, and
  clients resume from it with ``after``).
- Posts each event to the run's WebSocket subscribers: ``execute-api:ManageConnections`` on this API's
  ``POST @connections`` only. The endpoint comes from each subscription (stored from API Gateway's
  request context when it subscribed), not from this function's environment: the WebSocket API's
  integration is the api function, and nothing here points back at this function, so no cycle.
- Turns events that end a run or make it wait into webhook jobs on the ``Webhooks`` queue for runs that
  have a webhook (stored by the API in the API table); the ``webhooks`` Lambda delivers them: one signed
  POST per receive, retries by message visibility (exponential backoff), then a secret-free record on the
  ``WebhooksDead`` queue (stepwise.api.webhooks_aws). Both queues are SSE-encrypted and TLS-only.
- Both functions run outside the VPC: channels reaches DynamoDB, API Gateway and SQS; the webhooks sender
  reaches the internet and its two queues — no table, no bucket, nothing in the VPC (no SSRF into it).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.stacks.api import Api
from infra.stacks.compute import RUNTIME, RUNTIME_REASON, Compute, nag_resource
from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge
from infra.stacks.storage import StateStorage

ROOT = Path(__file__).resolve().parents[2]
SENDER_TIMEOUT = 60  # seconds: a batch of 5 deliveries with a 10 s timeout each


class Channels(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StackConfig, storage: StateStorage, compute: Compute, api: Api) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.dead_letters = sqs.Queue(
            self,
            "WebhooksDead",
            queue_name=f"{config.name_prefix}-webhooks-dead",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(self.dead_letters, "AwsSolutions-SQS3", "this is the dead-letter queue of the webhooks queue")
        self.queue = sqs.Queue(
            self,
            "Webhooks",
            queue_name=f"{config.name_prefix}-webhooks",
            encryption=sqs.QueueEncryption.SQS_MANAGED,  # the jobs carry the webhook's signing secret
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(6 * SENDER_TIMEOUT),
            retention_period=Duration.days(4),
            # the sender dead-letters by itself after its last try; this only catches a sender that keeps crashing
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=10),
        )
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
                "STEPWISE_WEBHOOK_QUEUE_URL": self.queue.queue_url,
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
        self.queue.grant_send_messages(self.role)
        # the api function queues the webhook of a run it cancels (no log event marks a cancel)
        self.queue.grant_send_messages(compute.api)
        compute.api.add_environment("STEPWISE_WEBHOOK_QUEUE_URL", self.queue.queue_url)
        self.sender = self._sender(config, compute)
        # subscriptions (and run webhooks): read them, drop the ones whose connection is gone (410)
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

    def _sender(self, config: StackConfig, compute: Compute) -> lambda_.Function:
        log_group = logs.LogGroup(self, "WebhooksLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY)
        role = iam.Role(
            self,
            "WebhooksRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="webhooks sender: consume the webhooks queue, write to its dead-letter queue, nothing else",
        )
        log_group.grant_write(role)
        self.dead_letters.grant_send_messages(role)
        sender = lambda_.Function(
            self,
            "WebhooksFunction",
            function_name=f"{config.name_prefix}-webhooks",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(ROOT / "functions" / "webhooks"), exclude=["__pycache__", "*.pyc"]),
            layers=[compute.layer],
            role=role,
            memory_size=256,
            timeout=Duration.seconds(SENDER_TIMEOUT),
            log_group=log_group,
            environment={
                "STEPWISE_WEBHOOK_QUEUE_URL": self.queue.queue_url,
                "STEPWISE_WEBHOOK_DEAD_LETTER_URL": self.dead_letters.queue_url,
                "STEPWISE_WEBHOOK_ATTEMPTS": "5",
                "STEPWISE_WEBHOOK_BACKOFF_SECONDS": "30",
                "POWERTOOLS_SERVICE_NAME": "stepwise-webhooks",
            },
            description="Stepwise webhooks sender (functions/webhooks/handler.py): signed POSTs, retries, dead letters",
        )
        acknowledge(sender, "AwsSolutions-L1", RUNTIME_REASON)
        sender.add_event_source(sources.SqsEventSource(self.queue, batch_size=5, report_batch_item_failures=True))
        return sender
