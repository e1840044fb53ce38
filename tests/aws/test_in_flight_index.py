"""DynamoDB's sparse index of runs in flight, on moto: the ``active`` attribute exists exactly while a run is
running, waiting or queued — set and removed in the same conditional write as the status (``put``, ``update``,
the queued claim) — so the ``active-created_at`` GSI holds only runs in flight, and the backfill indexes runs
written before the index existed. The recover Lambda over 1,005+ runs is in tests/integration/test_recover_aws.py."""

from __future__ import annotations

from typing import Any

import pytest
from tests.aws.test_state_contract import Stores, aws_env, dynamo_stores, run  # noqa: F401 - the adapter fixtures

from stepwise.state.dynamodb import DynamoRunStore
from stepwise.state.dynamodb_schema import ACTIVE_INDEX, ACTIVE_SHARDS, active_key
from stepwise.state.events import RUN_FINISHED, Event
from stepwise.state.ports import RunTransitionError


@pytest.fixture
def dynamo(aws_env: None) -> Stores:  # noqa: F811
    return dynamo_stores()


def _item(stores: Stores, run_id: str) -> dict[str, Any]:
    runs = stores.runs
    assert isinstance(runs, DynamoRunStore)
    item: dict[str, Any] = runs.db.get_item(TableName=runs.table, Key={"run_id": {"S": run_id}}, ConsistentRead=True)["Item"]
    return item


def _indexed(stores: Stores) -> set[str]:
    """Every run id in the GSI, read straight from it (every status, every shard)."""
    runs = stores.runs
    assert isinstance(runs, DynamoRunStore)
    found: set[str] = set()
    for status in ("running", "waiting", "queued"):
        for shard in range(ACTIVE_SHARDS):
            page = runs.db.query(
                TableName=runs.table,
                IndexName=ACTIVE_INDEX.name,
                KeyConditionExpression="#a = :a",
                ExpressionAttributeNames={"#a": "active"},
                ExpressionAttributeValues={":a": {"S": f"{status}#{shard}"}},
            )
            found |= {i["run_id"]["S"] for i in page["Items"]}
    return found


def test_the_active_attribute_follows_the_status_and_disappears_when_the_run_ends(dynamo: Stores) -> None:
    dynamo.runs.put(run("r1", status="running"))
    assert _item(dynamo, "r1")["active"] == {"S": active_key("r1", "running")}
    assert _indexed(dynamo) == {"r1"}

    dynamo.runs.update("r1", expect=("running",), status="waiting", interrupt_id="a" * 16)
    assert _item(dynamo, "r1")["active"] == {"S": active_key("r1", "waiting")}
    dynamo.runs.transition("r1", steps=3)  # no status change: the attribute stays as it is
    assert _item(dynamo, "r1")["active"] == {"S": active_key("r1", "waiting")}

    with pytest.raises(RunTransitionError):  # a refused compare-and-set changes neither
        dynamo.runs.update("r1", expect=("running",), status="succeeded")
    assert _item(dynamo, "r1")["active"] == {"S": active_key("r1", "waiting")}

    dynamo.runs.update("r1", expect=("waiting",), status="succeeded")
    assert "active" not in _item(dynamo, "r1")
    assert _indexed(dynamo) == set()
    assert list(dynamo.runs.in_flight()) == []

    dynamo.runs.put(run("r2", status="succeeded"))  # a put of a finished run adds none
    assert "active" not in _item(dynamo, "r2")
    assert active_key("r2", "failed") is None and str(active_key("r2", "queued")).startswith("queued#")


def test_a_claimed_queued_run_moves_to_running_in_the_index_in_the_claims_write(dynamo: Stores) -> None:
    dynamo.runs.put(run("q1", thread="t-q", status="queued", input={"n": 1}))
    assert _item(dynamo, "q1")["active"] == {"S": active_key("q1", "queued")}
    assert dynamo.runs.queued_threads() == ["t-q"]

    def cursor(r: Any, seq: int) -> dict[str, Any]:
        return {"thread_id": r.thread_id, "run_id": r.run_id, "seq": seq}

    claimed = dynamo.runs.claim_queued(dynamo.events, "t-q", cursor, owner=None)
    assert claimed is not None and claimed.run_id == "q1"
    assert _item(dynamo, "q1")["active"] == {"S": active_key("q1", "running")}
    assert dynamo.runs.queued_threads() == []
    assert [r.run_id for r in dynamo.runs.in_flight()] == ["q1"]
    dynamo.runs.end(dynamo.events, "t-q", Event(type=RUN_FINISHED, run_id="q1", data={}), expect=("running",), status="succeeded")
    assert "active" not in _item(dynamo, "q1") and _indexed(dynamo) == set()


def test_runs_in_flight_from_before_the_index_are_found_only_after_the_backfill(dynamo: Stores) -> None:
    runs = dynamo.runs
    assert isinstance(runs, DynamoRunStore)
    for rid, status in (("old-running", "running"), ("old-waiting", "waiting"), ("old-done", "succeeded"), ("new", "running")):
        runs.put(run(rid, thread=f"t-{rid}", status=status, created=1_700_000_000.0 + len(rid)))
    for rid in ("old-running", "old-waiting", "old-done"):  # written by a version without the index
        runs.db.update_item(TableName=runs.table, Key={"run_id": {"S": rid}}, UpdateExpression="REMOVE active")
    assert [r.run_id for r in runs.in_flight()] == ["new"]

    assert runs.backfill_in_flight_index() == 2
    assert [r.run_id for r in runs.in_flight()] == ["new", "old-running", "old-waiting"]
    assert "active" not in _item(dynamo, "old-done")
    assert runs.backfill_in_flight_index() == 0  # idempotent


def test_in_flight_reads_every_page_and_every_shard(dynamo: Stores) -> None:
    runs = dynamo.runs
    assert isinstance(runs, DynamoRunStore)
    for i in range(230):  # > two BatchGetItem calls; every shard of both statuses gets runs
        runs.put(run(f"r{i:04d}", thread=f"t{i}", created=1_700_000_000.0 + i, status=("running", "waiting", "failed")[i % 3]))
    shards = {_item(dynamo, f"r{i:04d}")["active"]["S"] for i in range(230) if i % 3 != 2}
    assert len(shards) == 2 * ACTIVE_SHARDS
    assert [r.run_id for r in runs.in_flight()] == [f"r{i:04d}" for i in range(230) if i % 3 != 2]
    assert [r.run_id for r in runs.in_flight(("waiting",))] == [f"r{i:04d}" for i in range(230) if i % 3 == 1]
