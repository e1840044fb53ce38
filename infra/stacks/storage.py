"""Durable state: the DynamoDB tables the adapters document (stepwise.state.dynamodb, stepwise.store)
and the S3 bucket for snapshots and offloaded payloads, plus the bucket that receives access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as ddb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.stacks.config import StackConfig
from infra.stacks.nag import acknowledge
from stepwise.state.dynamodb_schema import RUNS_INDEXES

S = ddb.AttributeType.STRING
N = ddb.AttributeType.NUMBER


class LogBucket(Construct):
    """Receives S3 server access logs and VPC flow logs; expires them after 90 days."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig) -> None:
        super().__init__(scope, id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(self.bucket, "AwsSolutions-S1", "this is the access-log bucket; logging it into itself would loop")


class StateStorage(Construct):
    def __init__(self, scope: Construct, id: str, *, config: StackConfig, log_bucket: s3.IBucket) -> None:
        super().__init__(scope, id)
        removal = RemovalPolicy.RETAIN if config.production else RemovalPolicy.DESTROY
        common = {
            "billing_mode": ddb.BillingMode.PAY_PER_REQUEST,
            "encryption": ddb.TableEncryption.AWS_MANAGED,
            "point_in_time_recovery_specification": ddb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
            "deletion_protection": config.production,
            "removal_policy": removal,
        }
        # events: the append-only log; the stream feeds WebSocket/webhook fan-out (gateway issue).
        self.events = ddb.Table(
            self,
            "Events",
            partition_key=ddb.Attribute(name="thread_id", type=S),
            sort_key=ddb.Attribute(name="seq", type=N),
            stream=ddb.StreamViewType.NEW_IMAGE,
            time_to_live_attribute="expires_at",
            **common,
        )
        self.runs = ddb.Table(
            self,
            "Runs",
            partition_key=ddb.Attribute(name="run_id", type=S),
            time_to_live_attribute="expires_at",
            **common,
        )
        # the indexes the run store queries, from its one definition (the moto tables use it too): a thread's runs,
        # a tenant's runs newest first (GET /runs), and the sparse keys-only index of runs in flight (recovery and
        # the queued sweep; an item is in it only while it has `active`, see stepwise.state.dynamodb)
        types = {"S": S, "N": N}
        projections = {"ALL": ddb.ProjectionType.ALL, "KEYS_ONLY": ddb.ProjectionType.KEYS_ONLY}
        for index in RUNS_INDEXES:
            self.runs.add_global_secondary_index(
                index_name=index.name,
                partition_key=ddb.Attribute(name=index.partition, type=types[index.partition_type]),
                sort_key=ddb.Attribute(name=index.sort, type=types[index.sort_type]),
                projection_type=projections[index.projection],
            )
        self.registry = ddb.Table(self, "Registry", partition_key=ddb.Attribute(name="ref", type=S), **common)
        # api: API keys (hashes only), the per-tenant agent catalog and thread owners (stepwise.store)
        self.api = ddb.Table(
            self, "Api", partition_key=ddb.Attribute(name="pk", type=S), sort_key=ddb.Attribute(name="sk", type=S), **common
        )
        self.bucket = s3.Bucket(
            self,
            "StateBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=log_bucket,
            server_access_logs_prefix="state-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(noncurrent_version_expiration=Duration.days(30), abort_incomplete_multipart_upload_after=Duration.days(1))
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

    @property
    def tables(self) -> list[ddb.Table]:
        return [self.events, self.runs, self.registry, self.api]
