"""One contract for every adapter of the state ports: in-memory, SQLite + files, DynamoDB + S3 (moto).

Whatever backend a deployment picks, the step sees the same behaviour: dense sequence numbers, a
conflicting writer gets ``StateConflictError`` and writes nothing, an idempotency key is used once, large
values round-trip, run records update field by field, graph versions never change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.aws import TEST_REGION, aws_settings, create_state_resources, serialized_dynamodb_transactions

from stepwise import awsclients
from stepwise.errors import StateConflictError
from stepwise.state.dynamodb import DynamoEventStore, DynamoRegistry, DynamoRunStore, guard_seq
from stepwise.state.events import NODE_UPDATE, RUN_STARTED, Event
from stepwise.state.files import FileSnapshotStore
from stepwise.state.memory import MemoryEventStore, MemoryRegistry, MemoryRunStore, MemorySnapshotStore
from stepwise.state.ports import DuplicateKeyError, EventStore, Registry, RunQuery, RunRecord, RunStore, SnapshotStore
from stepwise.state.s3 import S3SnapshotStore
from stepwise.state.sqlite import SqliteDatabase, SqliteEventStore, SqliteRegistry, SqliteRunStore


@dataclass
class Stores:
    kind: str
    events: EventStore
    snapshots: SnapshotStore
    runs: RunStore
    registry: Registry
    aws: dict[str, Any] | None = None


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3", "STEPWISE_LOCALSTACK", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    with serialized_dynamodb_transactions(), mock_aws():
        yield


def dynamo_stores(offload_bytes: int = 100_000) -> Stores:
    settings = aws_settings()
    dynamodb, s3 = awsclients.client("dynamodb"), awsclients.client("s3")
    create_state_resources(settings, dynamodb=dynamodb, s3=s3)
    return Stores(
        "dynamodb",
        DynamoEventStore(settings.events_table, bucket=settings.bucket, offload_bytes=offload_bytes, client=dynamodb, s3=s3),
        S3SnapshotStore(settings.bucket, client=s3),
        DynamoRunStore(settings.runs_table, client=dynamodb),
        DynamoRegistry(settings.registry_table, client=dynamodb),
        aws={"settings": settings, "dynamodb": dynamodb, "s3": s3},
    )


@pytest.fixture(params=["memory", "sqlite", "dynamodb"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Stores:
    if request.param == "memory":
        return Stores("memory", MemoryEventStore(), MemorySnapshotStore(), MemoryRunStore(), MemoryRegistry())
    if request.param == "sqlite":
        db = SqliteDatabase(tmp_path / "stepwise.db")
        return Stores("sqlite", SqliteEventStore(db), FileSnapshotStore(tmp_path / "snapshots"), SqliteRunStore(db), SqliteRegistry(db))
    request.getfixturevalue("aws_env")
    return dynamo_stores()


def ev(update: dict[str, Any], *, key: str | None = None, node: str | None = "n", scope: str = "", kind: str = NODE_UPDATE) -> Event:
    return Event(type=kind, run_id="run-1", node=node, scope=scope, key=key, data={"update": update})


def updates(store: EventStore, thread: str, **kwargs: Any) -> list[dict[str, Any]]:
    return [e.data["update"] for e in store.read(thread, **kwargs)]


# -- EventStore ---------------------------------------------------------------------------------
def test_an_unknown_thread_is_empty(stores: Stores) -> None:
    assert stores.events.head("nope") == 0
    assert stores.events.read("nope") == []
    assert stores.events.by_key("nope", "k") is None


def test_append_assigns_dense_seqs_and_reads_round_trip(stores: Stores) -> None:
    events = stores.events
    written = events.append("t", 0, [ev({"a": 1}, kind=RUN_STARTED, node=None), ev({"b": [1, 2.5, "é"]}, key="k1", scope="p:s/0")])
    assert [e.seq for e in written] == [1, 2]
    events.append("t", 2, [ev({"c": {"nested": None, "flag": True}})])
    read = events.read("t")
    assert [e.seq for e in read] == [1, 2, 3] and events.head("t") == 3
    assert [e.data["update"] for e in read] == [{"a": 1}, {"b": [1, 2.5, "é"]}, {"c": {"nested": None, "flag": True}}]
    first, second = read[0], read[1]
    assert (first.type, first.node, first.scope, first.key, first.run_id) == (RUN_STARTED, None, "", None, "run-1")
    assert (second.type, second.node, second.scope, second.key) == (NODE_UPDATE, "n", "p:s/0", "k1")
    assert abs(second.ts - time.time()) < 3600  # a real timestamp, stored with the event


def test_read_ranges(stores: Stores) -> None:
    stores.events.append("t", 0, [ev({"i": i}) for i in range(1, 6)])
    assert updates(stores.events, "t", after=2) == [{"i": 3}, {"i": 4}, {"i": 5}]
    assert updates(stores.events, "t", after=1, upto=3) == [{"i": 2}, {"i": 3}]
    assert updates(stores.events, "t", after=3, upto=3) == []
    assert updates(stores.events, "t", after=5) == []


def test_a_stale_writer_gets_a_conflict_and_writes_nothing(stores: Stores) -> None:
    stores.events.append("t", 0, [ev({"a": 1})])
    stores.events.append("t", 1, [ev({"a": 2})])
    for expected in (0, 1):
        with pytest.raises(StateConflictError) as caught:
            stores.events.append("t", expected, [ev({"stale": expected}), ev({"more": 1})])
        assert caught.value.thread_id == "t" and caught.value.expected == expected
    assert updates(stores.events, "t") == [{"a": 1}, {"a": 2}]


def test_a_writer_ahead_of_the_head_gets_a_conflict(stores: Stores) -> None:
    """No gaps: appending after a seq that does not exist yet is refused."""
    stores.events.append("t", 0, [ev({"a": 1})])
    with pytest.raises(StateConflictError):
        stores.events.append("t", 5, [ev({"a": 2})])
    with pytest.raises(StateConflictError):
        stores.events.append("fresh", 3, [ev({"a": 2})])
    assert stores.events.head("t") == 1 and stores.events.head("fresh") == 0


def test_an_idempotency_key_is_used_once_per_thread(stores: Stores) -> None:
    events = stores.events
    events.append("t", 0, [ev({"a": 1}, key="step-1")])
    with pytest.raises(DuplicateKeyError):
        events.append("t", 1, [ev({"record": 1}), ev({"a": 2}, key="step-1")])
    assert updates(events, "t") == [{"a": 1}]  # the whole batch was refused, not just the keyed event
    found = events.by_key("t", "step-1")
    assert found is not None and found.seq == 1 and found.data["update"] == {"a": 1}
    events.append("other", 0, [ev({"a": 3}, key="step-1")])  # keys are per thread
    assert events.by_key("other", "step-1").data["update"] == {"a": 3}  # type: ignore[union-attr]
    assert events.by_key("t", "step-2") is None


def test_threads_lists_every_thread(stores: Stores) -> None:
    for thread in ("b", "a", "c"):
        stores.events.append(thread, 0, [ev({"x": 1}, key=f"k-{thread}"), ev({"y": 2})])
    assert stores.events.threads() == ["a", "b", "c"]


def test_large_values_round_trip(stores: Stores) -> None:
    big = {"blob": "x" * 300_000, "tail": list(range(1000))}
    stores.events.append("t", 0, [ev({"small": 1}), ev(big, key="big")])
    assert updates(stores.events, "t") == [{"small": 1}, big]
    assert stores.events.by_key("t", "big").data["update"] == big  # type: ignore[union-attr]


def test_concurrent_writers_never_overwrite_each_other(stores: Stores) -> None:
    """Writers race at the head: each retries on StateConflictError; every event lands exactly once."""
    writers, per_writer = 4, 5
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for i in range(per_writer):
                while True:
                    head = stores.events.head("t")
                    try:
                        stores.events.append("t", head, [ev({"w": w, "i": i}, key=f"{w}-{i}")])
                        break
                    except StateConflictError:
                        continue
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    read = stores.events.read("t")
    assert [e.seq for e in read] == list(range(1, writers * per_writer + 1))
    assert sorted((u["w"], u["i"]) for u in (e.data["update"] for e in read)) == [(w, i) for w in range(writers) for i in range(per_writer)]


# -- SnapshotStore ------------------------------------------------------------------------------
def test_snapshots_keep_the_latest_state(stores: Stores) -> None:
    snaps = stores.snapshots
    assert snaps.latest("t") is None
    snaps.put("t", 4, {"a": 1, "nested": {"list": [1, 2]}})
    assert snaps.latest("t") == (4, {"a": 1, "nested": {"list": [1, 2]}})
    snaps.put("t", 9, {"a": 2})
    assert snaps.latest("t") == (9, {"a": 2})
    assert snaps.latest("t", at_most=9) == (9, {"a": 2})
    # at or before seq 8: a store that keeps only the latest state has none (older states come from the log);
    # one that keeps its earlier records (the snapshot file) gives the state at 4
    assert snaps.latest("t", at_most=8) in (None, (4, {"a": 1, "nested": {"list": [1, 2]}}))
    assert snaps.latest("other") is None


# -- RunStore -----------------------------------------------------------------------------------
def run(run_id: str, thread: str = "t", created: float = 1_700_000_000.0, **fields: Any) -> RunRecord:
    return RunRecord(run_id=run_id, thread_id=thread, graph_ref="g@abc", created_at=created, updated_at=created, **fields)


def test_run_records_round_trip(stores: Stores) -> None:
    record = run("r1", input={"q": "é", "n": [1, 2.5]}, start_cursor={"thread_id": "t", "seq": 1}, tenant="acme", steps=3)
    stores.runs.put(record)
    assert stores.runs.get("r1") == record
    assert stores.runs.get("missing") is None


def test_run_updates_change_only_the_given_fields(stores: Stores) -> None:
    stores.runs.put(run("r1", input={"q": 1}))
    waiting = {"node": "approve", "token": "tok-123", "prompt": "ok?", "payload": {"node": "approve"}}
    updated = stores.runs.update("r1", status="waiting", waiting=waiting)
    assert updated.status == "waiting" and updated.waiting == waiting and updated.input == {"q": 1}
    assert updated.updated_at > 1_700_000_000.0
    done = stores.runs.update("r1", status="succeeded", waiting=None, finished_at=1_800_000_000.5, steps=7)
    assert stores.runs.get("r1") == done
    assert (done.status, done.waiting, done.finished_at, done.steps) == ("succeeded", None, 1_800_000_000.5, 7)
    with pytest.raises(KeyError):
        stores.runs.update("missing", status="failed")


def test_runs_list_newest_first_per_thread(stores: Stores) -> None:
    for i, thread in enumerate(["t1", "t2", "t1", "t1"]):
        stores.runs.put(run(f"r{i}", thread=thread, created=1_700_000_000.0 + i))
    stores.runs.complete_token("some-token", {"x": 1})  # token outputs are not runs
    assert [r.run_id for r in stores.runs.list(thread_id="t1")] == ["r3", "r2", "r0"]
    assert [r.run_id for r in stores.runs.list(thread_id="t1", limit=2)] == ["r3", "r2"]
    assert [r.run_id for r in stores.runs.list()] == ["r3", "r2", "r1", "r0"]
    assert [r.run_id for r in stores.runs.list(limit=1)] == ["r3"]
    assert stores.runs.list(thread_id="none") == []


def _all_pages(store: RunStore, **filters: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = store.query(RunQuery(**filters, cursor=cursor))
        pages.append([r.run_id for r in page.runs])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_runs_query_filters_and_pages_one_tenant(stores: Stores) -> None:
    base = 1_700_000_000.0
    for i in range(12):  # two runs per second, so pages split inside a created_at tie
        tenant = "acme" if i % 4 else "other"
        status = "failed" if i % 3 == 0 else "succeeded"
        graph = ("triage" if i % 2 else "draft") + "@abc"
        stores.runs.put(
            RunRecord(
                run_id=f"r{i:02}",
                thread_id=f"t{i % 5}",
                graph_ref=graph,
                created_at=base + i // 2,
                tenant=tenant,
                status=status,
                cost_usd=i / 100,
            )
        )
    stores.runs.complete_token("some-token", {"x": 1})  # token outputs are not runs
    acme = ["r11", "r10", "r09", "r07", "r06", "r05", "r03", "r02", "r01"]  # newest first, ties by run_id
    assert _all_pages(stores.runs, tenant="acme", limit=4) == [acme[:4], acme[4:8], acme[8:]]
    assert _all_pages(stores.runs, tenant="acme", limit=9) == [acme]
    assert _all_pages(stores.runs, tenant="other") == [["r08", "r04", "r00"]]  # a tenant sees only its own
    assert _all_pages(stores.runs, tenant="nobody") == [[]]
    assert _all_pages(stores.runs, tenant="acme", status="failed") == [["r09", "r06", "r03"]]
    assert _all_pages(stores.runs, tenant="acme", agent="triage", limit=2) == [["r11", "r09"], ["r07", "r05"], ["r03", "r01"]]
    assert _all_pages(stores.runs, tenant="acme", since=base + 2, until=base + 5) == [["r09", "r07", "r06", "r05"]]
    assert _all_pages(stores.runs, tenant="acme", min_cost=0.05, max_cost=0.09) == [["r09", "r07", "r06", "r05"]]
    assert _all_pages(stores.runs, tenant="acme", thread_id="t1") == [["r11", "r06", "r01"]]
    with pytest.raises(ValueError, match="cursor"):
        stores.runs.query(RunQuery(tenant="acme", cursor="not-ours"))


def test_task_tokens(stores: Stores) -> None:
    token = "AQCEAAAAKgAAAAMAAAAAAAAAA" + "x" * 600  # Step Functions tokens are long
    assert stores.runs.token_output(token) is None
    stores.runs.complete_token(token, {"seq": 4, "route": "publish"})
    assert stores.runs.token_output(token) == {"seq": 4, "route": "publish"}
    assert stores.runs.token_output(token + "y") is None


# -- Registry -----------------------------------------------------------------------------------
def test_registry_versions_and_latest(stores: Stores) -> None:
    reg = stores.registry
    assert reg.get("g@1") is None and reg.latest("g") is None
    spec1, asl1 = {"name": "g", "v": 1}, {"StartAt": "a", "States": {"a": {"Type": "Succeed"}}}
    reg.put("g@1", "g", spec1, asl1)
    assert reg.get("g@1") == (spec1, asl1) and reg.latest("g") == "g@1"
    reg.put("g@2", "g", {"name": "g", "v": 2}, asl1)
    assert reg.latest("g") == "g@2"
    assert reg.get("g@1") == (spec1, asl1)
    reg.put("h@1", "h", {"name": "h"}, asl1)
    assert reg.latest("g") == "g@2" and reg.latest("h") == "h@1"


def test_registry_versions_are_immutable(stores: Stores) -> None:
    stores.registry.put("g@1", "g", {"v": 1}, {"a": 1})
    stores.registry.put("g@1", "g", {"v": "tampered"}, {"a": "tampered"})
    assert stores.registry.get("g@1") == ({"v": 1}, {"a": 1})


# -- DynamoDB/S3 specifics ------------------------------------------------------------------------
def test_dynamodb_items_follow_the_documented_schema(aws_env: None) -> None:
    s = dynamo_stores()
    assert s.aws is not None
    db, settings = s.aws["dynamodb"], s.aws["settings"]
    s.events.append("t", 0, [ev({"a": 1}, key="k1")])
    items = db.scan(TableName=settings.events_table)["Items"]
    by_seq = {int(i["seq"]["N"]): i for i in items}
    assert set(by_seq) == {1, guard_seq("k1")} and guard_seq("k1") < 0
    assert by_seq[1]["thread_id"] == {"S": "t"} and by_seq[1]["key"] == {"S": "k1"} and "data" in by_seq[1]
    assert by_seq[guard_seq("k1")]["guard_key"] == {"S": "k1"} and by_seq[guard_seq("k1")]["ref_seq"] == {"N": "1"}

    s.runs.put(run("r1", thread="t"))
    s.runs.complete_token("tok", {"x": 1})
    gsi = db.query(
        TableName=settings.runs_table,
        IndexName="thread_id-created_at",
        KeyConditionExpression="thread_id = :t",
        ExpressionAttributeValues={":t": {"S": "t"}},
    )["Items"]
    assert [i["run_id"]["S"] for i in gsi] == ["r1"]

    s.registry.put("g@1", "g", {"v": 1}, {"a": 1})
    refs = {i["ref"]["S"] for i in db.scan(TableName=settings.registry_table)["Items"]}
    assert refs == {"g@1", "alias#g"}


def test_dynamodb_offloads_large_event_data_to_s3(aws_env: None) -> None:
    s = dynamo_stores(offload_bytes=1_000)
    assert s.aws is not None
    db, s3, settings = s.aws["dynamodb"], s.aws["s3"], s.aws["settings"]
    big = {"text": "y" * 5_000}
    s.events.append("t", 0, [ev({"small": 1}), ev(big, key="k")])
    items = {int(i["seq"]["N"]): i for i in db.scan(TableName=settings.events_table)["Items"]}
    assert "data" in items[1] and "data_ref" not in items[1]
    assert "data" not in items[2] and int(items[2]["data_bytes"]["N"]) > 5_000
    key = items[2]["data_ref"]["S"]
    assert key.startswith("blobs/") and s3.head_object(Bucket=settings.bucket, Key=key)["ContentLength"] < 1_000  # compressed
    # a fresh store (another Lambda container, cold cache) reads it back transparently
    cold = DynamoEventStore(settings.events_table, bucket=settings.bucket)
    assert [e.data["update"] for e in cold.read("t")] == [{"small": 1}, big]
    assert cold.by_key("t", "k").data["update"] == big  # type: ignore[union-attr]


def test_dynamodb_refuses_oversized_data_without_a_bucket(aws_env: None) -> None:
    s = dynamo_stores()
    assert s.aws is not None
    store = DynamoEventStore(s.aws["settings"].events_table, offload_bytes=1_000)
    with pytest.raises(ValueError, match="STEPWISE_BUCKET"):
        store.append("t", 0, [ev({"text": "z" * 2_000})])
    assert store.head("t") == 0
