"""Create the AWS state resources in moto from the key schemas documented in ``stepwise.state.dynamodb`` (the runs
table's indexes from its ``RUNS_INDEXES``, as the CDK stack).

The CDK stack creates the same tables; if a schema drifts from the adapters, the contract tests and the
cloud-in-a-box test fail here first.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from stepwise.config import Settings
from stepwise.state.dynamodb_schema import RUNS_INDEXES

TEST_REGION = "us-east-1"
TEST_ACCOUNT = "123456789012"  # moto's default account


def aws_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "backend": "aws",
        "events_table": "test-events",
        "runs_table": "test-runs",
        "registry_table": "test-registry",
        "bucket": "test-stepwise-state",
        "step_function_arn": f"arn:aws:lambda:{TEST_REGION}:{TEST_ACCOUNT}:function:test-step",
        "state_machine_role_arn": f"arn:aws:iam::{TEST_ACCOUNT}:role/test-state-machines",
        "name_prefix": "test",
    }
    return Settings.model_validate(values | overrides)


def create_state_resources(settings: Settings, *, dynamodb: Any, s3: Any) -> None:
    """The events, runs and registry tables and the state bucket, exactly as documented."""
    on_demand = {"BillingMode": "PAY_PER_REQUEST"}
    dynamodb.create_table(
        TableName=settings.events_table,
        KeySchema=[{"AttributeName": "thread_id", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "thread_id", "AttributeType": "S"}, {"AttributeName": "seq", "AttributeType": "N"}],
        **on_demand,
    )
    index_attributes = {(i.partition, i.partition_type) for i in RUNS_INDEXES} | {(i.sort, i.sort_type) for i in RUNS_INDEXES}
    dynamodb.create_table(
        TableName=settings.runs_table,
        KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}]
        + [{"AttributeName": name, "AttributeType": kind} for name, kind in sorted(index_attributes)],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index.name,
                "KeySchema": [{"AttributeName": index.partition, "KeyType": "HASH"}, {"AttributeName": index.sort, "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": index.projection},
            }
            for index in RUNS_INDEXES
        ],
        **on_demand,
    )
    dynamodb.create_table(
        TableName=settings.registry_table,
        KeySchema=[{"AttributeName": "ref", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "ref", "AttributeType": "S"}],
        **on_demand,
    )
    s3.create_bucket(Bucket=settings.bucket)


@contextlib.contextmanager
def serialized_dynamodb_transactions() -> Iterator[None]:
    """Make moto's ``TransactWriteItems`` atomic under concurrency, as DynamoDB's is.

    moto 5.2.1 runs a transaction as: deep-copy the table, apply each action, restore the copy on a
    failed condition — with no lock, so two threads can both pass ``attribute_not_exists`` or a failing
    transaction can restore over a concurrent success. DynamoDB serializes transactions on the items
    they touch; one lock around moto's implementation stands in for that server-side guarantee (our
    adapter's own logic — conditions, conflict mapping, retries — is unchanged and under test).
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            original(self, transact_items)

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoDBBackend.transact_write_items = original  # type: ignore[method-assign]


def create_api_table(table: str, *, dynamodb: Any) -> None:
    """The API store's table, as documented in ``stepwise.store.dynamodb`` (pk S, sk S)."""
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``STEPWISE_*`` environment a Lambda gets from the CDK stack."""
    return {f"STEPWISE_{name.upper()}": str(value) for name, value in settings.model_dump().items()}
