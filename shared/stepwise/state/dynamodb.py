"""DynamoDB adapters for the state ports: event log (+ S3 offload), run records and task tokens, registry.

Table key schemas — the CDK stack creates exactly these (names come from ``Settings``):

``events`` table (``STEPWISE_EVENTS_TABLE``, default ``stepwise-events``)
    partition key ``thread_id`` (S), sort key ``seq`` (N).

    - Event items, ``seq`` >= 1, dense per thread: ``type`` (S), ``run_id`` (S), ``scope`` (S), ``ts`` (N),
      optional ``node`` (S) and ``key`` (S, the idempotency key), and the event's delta either inline as
      ``data`` (S, compact JSON) or, when it is larger than ``offload_bytes`` (100 KB by default), as
      ``data_ref`` (S, an S3 key in the state bucket, see ``state/s3.py``) plus ``data_bytes`` (N).
    - Idempotency-key guards, ``seq`` < 0: ``seq = -(first 112 bits of sha256(key)) - 1``, attributes
      ``guard_key`` (S) and ``ref_seq`` (N, the event holding the key). A guard sits in its event's
      partition, is written in the same transaction, so a key can be used once per thread. Readers of
      the stream (WebSocket, webhooks) skip items with ``seq`` < 1.

    ``append`` is one ``TransactWriteItems``: a ``ConditionCheck`` that ``seq = expected`` exists (no
    gaps), a ``Put`` per event with ``attribute_not_exists(seq)`` (a concurrent writer of the same seq
    fails → ``ConflictError``, nothing is overwritten) and a ``Put`` per key guard with the same
    condition (→ ``DuplicateKeyError``). All reads are strongly consistent ``Query``/``GetItem`` calls.

``runs`` table (``STEPWISE_RUNS_TABLE``, default ``stepwise-runs``)
    partition key ``run_id`` (S); global secondary indexes (``RUNS_INDEXES`` in ``dynamodb_schema``, which the CDK stack and the
    moto test tables are built from):

    - ``thread_id-created_at``: partition key ``thread_id`` (S), sort key ``created_at`` (N), projection ALL.
    - ``tenant-created_at``: partition key ``tenant`` (S), sort key ``created_at`` (N), projection ALL: a
      tenant's runs list (``query``) reads only that tenant's runs in the time range, newest first.
    - ``active-created_at``, sparse: partition key ``active`` (S), sort key ``created_at`` (N), projection
      KEYS_ONLY. ``active = "<status>#<shard>"`` (shard = sha256(run_id) mod ``ACTIVE_SHARDS``, 4) exists only
      while the run is running, waiting or queued: ``put``, ``update`` with a ``status`` and the queued claim
      set it, or REMOVE it, in the same conditional write as the status, so it cannot drift. ``in_flight``
      (recovery, the queued sweep) queries the 4 partitions of each status it wants, every page, and reads
      the records by consistent ``BatchGetItem``: the cost follows the runs in flight, never the table.
      Keys only, so the step's heartbeats and step counters do not rewrite the index. Runs written before
      the index existed lack ``active`` until ``backfill_in_flight_index`` (docs/reliability.md).

    - Run items: one attribute per ``RunRecord`` field; ``input``, ``start_cursor``, ``error`` and
      ``waiting`` (which holds the task token) are JSON strings. ``update`` is an ``UpdateItem`` of just
      the given fields, so the step Lambda and the API never overwrite each other's fields.
    - Task-token outputs (the local engine's stand-in for ``SendTaskSuccess``): ``run_id =
      "token#" + sha256(token)``, ``output`` (S). They have no ``thread_id``, so they stay out of the index.

``registry`` table (``STEPWISE_REGISTRY_TABLE``, default ``stepwise-registry``)
    partition key ``ref`` (S).

    - Versions: ``ref = "<name>@<hash>"``, ``name`` (S), ``spec`` and ``asl`` (B, zlib-compressed JSON),
      ``created_at`` (N). Written with ``attribute_not_exists(ref)``: a version never changes.
    - Aliases: ``ref = "alias#<name>"``, ``target`` (S, the latest version's ref), ``updated_at`` (N).
      Graph names cannot contain ``#`` or ``@``, so the two kinds never collide.
"""

from __future__ import annotations

import builtins
import hashlib
import heapq
import itertools
import json
import time
import zlib
from collections.abc import Callable, Collection, Iterator
from typing import Any

from stepwise import awsclients
from stepwise.errors import StateConflictError
from stepwise.state.dynamodb_schema import ACTIVE_INDEX, ACTIVE_SHARDS, RUNS_INDEXES, active_key
from stepwise.state.events import RUN_STARTED, Event
from stepwise.state.ports import (
    ACTIVE,
    IN_LINE,
    DuplicateKeyError,
    EventStore,
    Registry,
    Row,
    RunPage,
    RunQuery,
    RunRecord,
    RunStatus,
    RunStore,
    RunTransitionError,
    check_expected,
    in_line,
    page_cursor,
)
from stepwise.state.s3 import S3Blobs

#: ``data`` larger than this goes to S3 (a DynamoDB item holds at most 400 KB).
OFFLOAD_BYTES = 100_000
#: A transaction carries at most 4 MB; offload more eagerly than that to stay clear of it.
TRANSACTION_BUDGET = 3_500_000
MAX_ACTIONS = 100
_FAR = 10**30  # an upper bound for seq in range queries


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def guard_seq(key: str) -> int:
    """Sort key of an idempotency-key guard: negative, so event queries (seq > 0) never see it."""
    return -int(hashlib.sha256(key.encode()).hexdigest()[:28], 16) - 1


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float | int) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _pages(call: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    while True:
        page = call(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class DynamoEventStore(EventStore):
    """The event log in DynamoDB (large payloads in S3), appended with conditions."""

    def __init__(
        self,
        table_name: str,
        *,
        bucket: str | None = None,
        client: Any = None,
        s3: Any = None,
        offload_bytes: int = OFFLOAD_BYTES,
    ) -> None:
        self.table = table_name
        self.db = client or awsclients.client("dynamodb")
        self.blobs = S3Blobs(bucket, client=s3) if bucket else None
        self.offload_bytes = offload_bytes

    # -- writes -------------------------------------------------------------------------------
    def _insert(self, thread_id: str, expected_seq: int, rows: list[Row]) -> None:
        items = self._items(thread_id, rows)
        actions: list[dict[str, Any]] = []
        if expected_seq > 0:
            actions.append(
                {
                    "ConditionCheck": {
                        "TableName": self.table,
                        "Key": {"thread_id": _s(thread_id), "seq": _n(expected_seq)},
                        "ConditionExpression": "attribute_exists(#s)",
                        "ExpressionAttributeNames": {"#s": "seq"},
                    }
                }
            )
        first_guard = len(actions) + len(items)
        actions += [self._put(item) for item in items]
        for row in rows:
            if row[5] is not None:
                guard = {"thread_id": _s(thread_id), "seq": _n(guard_seq(row[5])), "guard_key": _s(row[5]), "ref_seq": _n(row[0])}
                actions.append(self._put(guard))
        if len(actions) > MAX_ACTIONS:
            raise ValueError(f"one append may write at most {MAX_ACTIONS} items (events + keys), got {len(actions)}; split the records")
        try:
            self.db.transact_write_items(TransactItems=actions)
        except Exception as exc:
            if _code(exc) != "TransactionCanceledException":
                raise
            reasons = [r.get("Code", "None") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
            if any(code not in ("None", "ConditionalCheckFailed") for code in reasons):
                raise StateConflictError(thread_id, expected_seq) from None  # TransactionConflict: a writer raced us
            if reasons and all(code == "None" for code in reasons[:first_guard]) and "ConditionalCheckFailed" in reasons[first_guard:]:
                raise DuplicateKeyError(f"an event with one of these idempotency keys is already in thread {thread_id!r}") from None
            raise StateConflictError(thread_id, expected_seq) from None

    def _put(self, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(#s)",
                "ExpressionAttributeNames": {"#s": "seq"},
            }
        }

    def _items(self, thread_id: str, rows: list[Row]) -> list[dict[str, Any]]:
        items = []
        for seq, kind, run_id, node, scope, key, ts, data in rows:
            item = {"thread_id": _s(thread_id), "seq": _n(seq), "type": _s(kind), "run_id": _s(run_id), "scope": _s(scope), "ts": _n(ts)}
            if node is not None:
                item["node"] = _s(node)
            if key is not None:
                item["key"] = _s(key)
            item["data"] = _s(data)
            items.append(item)
        # offload every large payload, then the largest ones until the transaction fits its 4 MB cap
        sizes = sorted(((len(item["data"]["S"].encode()), i) for i, item in enumerate(items)), reverse=True)
        total = sum(size for size, _ in sizes)
        for size, i in sizes:
            if size <= self.offload_bytes and total <= TRANSACTION_BUDGET:
                break
            self._offload(thread_id, items[i], size)
            total -= size
        return items

    def _offload(self, thread_id: str, item: dict[str, Any], size: int) -> None:
        if self.blobs is None:
            raise ValueError(
                f"event data of {size} bytes is too large for a DynamoDB item; configure a bucket "
                "(STEPWISE_BUCKET) so large values are offloaded to S3"
            )
        item["data_ref"] = _s(self.blobs.put(thread_id, item.pop("data")["S"]))
        item["data_bytes"] = _n(size)

    # -- reads --------------------------------------------------------------------------------
    def _row(self, item: dict[str, Any]) -> Row:
        if "data_ref" in item:
            if self.blobs is None:
                raise ValueError("this event's data is offloaded to S3 but the store has no bucket configured")
            data = self.blobs.get(item["data_ref"]["S"])
        else:
            data = item["data"]["S"]
        return (
            int(item["seq"]["N"]),
            item["type"]["S"],
            item["run_id"]["S"],
            item.get("node", {}).get("S"),
            item["scope"]["S"],
            item.get("key", {}).get("S"),
            float(item["ts"]["N"]),
            data,
        )

    def head(self, thread_id: str) -> int:
        page = self.db.query(
            TableName=self.table,
            KeyConditionExpression="thread_id = :t AND #s > :z",
            ExpressionAttributeNames={"#s": "seq"},
            ExpressionAttributeValues={":t": _s(thread_id), ":z": _n(0)},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
            ProjectionExpression="#s",
        )
        items = page.get("Items", [])
        return int(items[0]["seq"]["N"]) if items else 0

    def _select(self, thread_id: str, after: int, upto: int | None) -> list[Row]:
        hi = _FAR if upto is None else upto
        if hi <= after:
            return []
        items = _pages(
            self.db.query,
            TableName=self.table,
            KeyConditionExpression="thread_id = :t AND #s BETWEEN :lo AND :hi",
            ExpressionAttributeNames={"#s": "seq"},
            ConsistentRead=True,
            ExpressionAttributeValues={":t": _s(thread_id), ":lo": _n(after + 1), ":hi": _n(hi)},
        )
        return [self._row(item) for item in items]

    def last_started(self, thread_id: str, upto: int) -> str | None:
        """The run id of the thread's latest ``run_started`` at or below ``upto``: a consistent ``Query`` of
        the log backwards (the runs table's thread index is only eventually consistent)."""
        if upto <= 0:
            return None
        items = _pages(
            self.db.query,
            TableName=self.table,
            KeyConditionExpression="thread_id = :t AND #s BETWEEN :lo AND :hi",
            FilterExpression="#ty = :rs",
            ExpressionAttributeNames={"#s": "seq", "#ty": "type", "#r": "run_id"},
            ExpressionAttributeValues={":t": _s(thread_id), ":lo": _n(1), ":hi": _n(upto), ":rs": _s(RUN_STARTED)},
            ProjectionExpression="#r",
            ScanIndexForward=False,
            ConsistentRead=True,
        )
        for item in items:
            return str(item["run_id"]["S"])
        return None

    def _select_key(self, thread_id: str, key: str) -> Row | None:
        guard = self.db.get_item(
            TableName=self.table,
            Key={"thread_id": _s(thread_id), "seq": _n(guard_seq(key))},
            ConsistentRead=True,
        ).get("Item")
        if guard is None or guard["guard_key"]["S"] != key:
            return None
        item = self.db.get_item(
            TableName=self.table,
            Key={"thread_id": _s(thread_id), "seq": guard["ref_seq"]},
            ConsistentRead=True,
        ).get("Item")
        return self._row(item) if item else None

    def threads(self) -> list[str]:
        """Every thread id (a table Scan: for the CLI and admin tools, not for hot paths)."""
        items = _pages(
            self.db.scan,
            TableName=self.table,
            FilterExpression="#s = :one",
            ExpressionAttributeNames={"#s": "seq"},
            ExpressionAttributeValues={":one": _n(1)},
            ProjectionExpression="thread_id",
        )
        return sorted({item["thread_id"]["S"] for item in items})


# -- runs -------------------------------------------------------------------------------------
_JSON_FIELDS = frozenset({"input", "start_cursor", "error", "waiting"})
_NUMBER_FIELDS = frozenset({"created_at", "updated_at", "finished_at", "steps", "lease_until", "cost_usd", "tokens"})
_INT_FIELDS = frozenset({"steps", "tokens"})
_TOKEN_PREFIX = "token#"


def _encode_field(name: str, value: Any) -> dict[str, str]:
    if name in _JSON_FIELDS:
        return _s(json.dumps(value, separators=(",", ":"), default=str))
    if name in _NUMBER_FIELDS:
        return _n(value)
    return _s(str(value))


def _decode_run(item: dict[str, Any]) -> RunRecord:
    data: dict[str, Any] = {}
    for name, attr in item.items():
        if name not in RunRecord.model_fields:
            continue
        if name in _JSON_FIELDS:
            data[name] = json.loads(attr["S"])
        elif name in _NUMBER_FIELDS:
            number = float(attr["N"])
            data[name] = int(number) if name in _INT_FIELDS else number
        else:
            data[name] = attr["S"]
    return RunRecord.model_validate(data)


def _run_filters(q: RunQuery) -> tuple[dict[str, str], dict[str, Any], list[str]]:
    """The FilterExpression parts of a runs query (everything but tenant and time)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    filters: list[str] = []
    if q.status is not None:
        names["#st"], values[":st"] = "status", _s(q.status)
        filters.append("#st = :st")
    if q.thread_id is not None:
        names["#th"], values[":th"] = "thread_id", _s(q.thread_id)
        filters.append("#th = :th")
    if q.agent is not None:
        names["#g"], values[":g"] = "graph_ref", _s(q.agent + "@")
        filters.append("begins_with(#g, :g)")
    if q.min_cost:  # a record from before cost_usd existed spent nothing as far as the list knows
        names["#cost"], values[":lc"] = "cost_usd", _n(float(q.min_cost))
        filters.append("#cost >= :lc")
    if q.max_cost is not None:
        names["#cost"], values[":hc"] = "cost_usd", _n(float(q.max_cost))
        filters.append("(#cost <= :hc OR attribute_not_exists(#cost))")
    return names, values, filters


class DynamoRunStore(RunStore):
    """Run records in DynamoDB, with thread and tenant indexes."""

    INDEX = RUNS_INDEXES[0].name
    TENANT_INDEX = RUNS_INDEXES[1].name
    #: BatchGetItem reads at most 100 keys a call.
    BATCH_GET = 100

    def __init__(self, table_name: str, *, client: Any = None) -> None:
        self.table = table_name
        self.db = client or awsclients.client("dynamodb")

    def put(self, run: RunRecord) -> None:
        item = {name: _encode_field(name, value) for name, value in run.model_dump(mode="json").items() if value is not None}
        active = active_key(run.run_id, run.status)
        if active is not None:
            item[ACTIVE_INDEX.partition] = _s(active)
        self.db.put_item(TableName=self.table, Item=item)

    def get(self, run_id: str) -> RunRecord | None:
        item = self.db.get_item(TableName=self.table, Key={"run_id": _s(run_id)}, ConsistentRead=True).get("Item")
        return _decode_run(item) if item and "thread_id" in item else None

    def update(
        self, run_id: str, *, expect: Collection[str] | None = None, expect_interrupt: str | None = None, **fields: Any
    ) -> RunRecord:
        """Set only ``fields`` (and ``updated_at``) in one ``UpdateItem``; None removes a field. With
        ``expect``, the status check is part of the condition expression: a compare-and-set."""
        unknown = {name for name in fields if name not in RunRecord.model_fields or name == "run_id"}
        if unknown:
            raise ValueError(f"cannot update run field(s) {sorted(unknown)}")
        checked = RunRecord.model_validate({"run_id": run_id, "thread_id": "-", "graph_ref": "-", **fields})
        values = {name: getattr(checked, name) for name in fields} | {"updated_at": time.time()}
        sets, removes, names, attrs = [], [], {}, {}
        for i, (name, value) in enumerate(sorted(values.items())):
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
            else:
                sets.append(f"#f{i} = :v{i}")
                attrs[f":v{i}"] = _encode_field(name, value)
        if "status" in fields:  # the sparse index follows the status in this same conditional write
            names["#act"] = ACTIVE_INDEX.partition
            active = active_key(run_id, checked.status)
            if active is None:
                removes.append("#act")
            else:
                sets.append("#act = :act")
                attrs[":act"] = _s(active)
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        names["#id"] = "run_id"
        condition = "attribute_exists(#id)"
        if expect is not None:
            names["#status"] = "status"
            marks = []
            for i, status in enumerate(expect):
                attrs[f":e{i}"] = _s(status)
                marks.append(f":e{i}")
            condition += f" AND #status IN ({', '.join(marks)})"
        if expect_interrupt is not None:
            names["#iid"] = "interrupt_id"
            attrs[":iid"] = _s(expect_interrupt)
            condition += " AND #iid = :iid"
        try:
            out = self.db.update_item(
                TableName=self.table,
                Key={"run_id": _s(run_id)},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=attrs,
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                current = self.get(run_id)
                if current is None:
                    raise KeyError(run_id) from None
                check_expected(current, expect, expect_interrupt)
                raise RunTransitionError(run_id, current.status, expect or ()) from None
            raise
        return _decode_run(out["Attributes"])

    def list(self, *, thread_id: str | None = None, limit: int = 50) -> list[RunRecord]:
        if thread_id is not None:
            runs: list[RunRecord] = []
            for item in _pages(
                self.db.query,
                TableName=self.table,
                IndexName=self.INDEX,
                KeyConditionExpression="thread_id = :t",
                ExpressionAttributeValues={":t": _s(thread_id)},
                ScanIndexForward=False,
                Limit=max(1, limit),
            ):
                runs.append(_decode_run(item))
                if len(runs) >= limit:
                    break
            return runs
        # every run, newest first: a Scan, for the CLI and admin tools (tenant listings get their own index)
        items = _pages(self.db.scan, TableName=self.table, FilterExpression="attribute_exists(thread_id)")
        return sorted((_decode_run(i) for i in items), key=lambda r: r.created_at, reverse=True)[:limit]

    def thread_runs(self, thread_id: str, statuses: Collection[str]) -> builtins.list[RunRecord]:
        """A ``Query`` of the thread index with the statuses as a ``FilterExpression``, every page."""
        values = {":t": _s(thread_id)} | {f":s{i}": _s(status) for i, status in enumerate(statuses)}
        items = _pages(
            self.db.query,
            TableName=self.table,
            IndexName=self.INDEX,
            KeyConditionExpression="thread_id = :t",
            FilterExpression=f"#st IN ({', '.join(v for v in values if v != ':t')})",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues=values,
        )
        return sorted((_decode_run(i) for i in items), key=lambda r: (r.created_at, r.run_id))

    def in_flight(self, statuses: Collection[RunStatus] = ACTIVE) -> Iterator[RunRecord]:
        """A ``Query`` of each ``<status>#<shard>`` partition of the sparse ``active-created_at`` index (keys only,
        every page, oldest first), merged by created_at (ties by run_id), then the records by consistent
        ``BatchGetItem``, 100 at a time: a record that left the statuses since the index saw it is dropped."""
        wanted = in_line(statuses)
        streams = [self._active_keys(f"{status}#{shard}") for status in wanted for shard in range(ACTIVE_SHARDS)]
        batch: builtins.list[str] = []
        for _, ties in itertools.groupby(heapq.merge(*streams, key=lambda k: k[0]), key=lambda k: k[0]):
            for run_id in sorted({run_id for _, run_id in ties}):  # one run seen under two statuses (index lag): once
                batch.append(run_id)
                if len(batch) == self.BATCH_GET:
                    yield from self._consistent(batch, wanted)
                    batch = []
        yield from self._consistent(batch, wanted)

    def _active_keys(self, partition: str) -> Iterator[tuple[float, str]]:
        items = _pages(
            self.db.query,
            TableName=self.table,
            IndexName=ACTIVE_INDEX.name,
            KeyConditionExpression="#a = :a",
            ExpressionAttributeNames={"#a": ACTIVE_INDEX.partition},
            ExpressionAttributeValues={":a": _s(partition)},
            ScanIndexForward=True,
        )
        for item in items:
            yield float(item["created_at"]["N"]), item["run_id"]["S"]

    def _consistent(self, run_ids: builtins.list[str], wanted: Collection[str]) -> Iterator[RunRecord]:
        """The records of ``run_ids`` (in that order) whose status is still one of ``wanted``, read consistently;
        unprocessed keys (throttling) are asked again with a growing pause."""
        found: dict[str, RunRecord] = {}
        request: dict[str, Any] = {self.table: {"Keys": [{"run_id": _s(r)} for r in run_ids], "ConsistentRead": True}} if run_ids else {}
        for attempt in itertools.count():
            if not request:
                break
            if attempt:
                time.sleep(min(0.05 * 2**attempt, 2.0))
            out = self.db.batch_get_item(RequestItems=request)
            for item in out.get("Responses", {}).get(self.table, []):
                if "thread_id" in item:
                    record = _decode_run(item)
                    found[record.run_id] = record
            request = out.get("UnprocessedKeys") or {}
        for run_id in run_ids:
            run = found.get(run_id)
            if run is not None and run.status in wanted:
                yield run

    def backfill_in_flight_index(self) -> int:
        """Give ``active`` to the runs in flight that lack it (written before the index existed), so recovery
        and the queued sweep see them: a ``Scan`` filtered to such runs, then per run a conditional
        ``UpdateItem`` (only while its status is still the one read, and it still lacks the attribute: a
        concurrent status change sets or removes it itself). Returns how many runs it marked. Run once after
        upgrading (docs/reliability.md); a second run finds none."""
        names = {"#st": "status", "#a": ACTIVE_INDEX.partition, "#id": "run_id"}
        statuses = {f":s{i}": _s(status) for i, status in enumerate(IN_LINE)}
        items = _pages(
            self.db.scan,
            TableName=self.table,
            FilterExpression=f"#st IN ({', '.join(statuses)}) AND attribute_not_exists(#a) AND attribute_exists(thread_id)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=statuses,
            ProjectionExpression="#id, #st",
        )
        marked = 0
        for item in list(items):
            run_id, status = item["run_id"]["S"], item["status"]["S"]
            try:
                self.db.update_item(
                    TableName=self.table,
                    Key={"run_id": _s(run_id)},
                    UpdateExpression="SET #a = :a",
                    ConditionExpression="#st = :seen AND attribute_not_exists(#a)",
                    ExpressionAttributeNames={"#st": "status", "#a": ACTIVE_INDEX.partition},
                    ExpressionAttributeValues={":a": _s(str(active_key(run_id, status))), ":seen": _s(status)},
                )
            except Exception as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
                continue  # its status changed meanwhile, and that write set (or removed) the attribute
            marked += 1
        return marked

    def recent_rivals(self, events: EventStore, thread_id: str, head: int) -> builtins.list[RunRecord]:
        """The run of the thread's latest ``run_started`` (read from the log and the table consistently),
        because the ``thread_id-created_at`` index may not show a run begun or claimed a moment ago."""
        if not isinstance(events, DynamoEventStore):
            return []
        run_id = events.last_started(thread_id, head)
        run = self.get(run_id) if run_id is not None else None
        return [run] if run is not None else []

    def _claim(
        self,
        events: EventStore,
        run: RunRecord,
        head: int,
        started: Event,
        cursor: Callable[[RunRecord, int], dict[str, Any]],
        fields: dict[str, Any],
    ) -> RunRecord:
        """One ``TransactWriteItems``: the run's compare-and-set (``queued`` -> ``running``, the lease and the
        start cursor) and its ``run_started`` at exactly head + 1 (head there, head + 1 not). Cancelled as a
        whole when either condition fails: StateConflictError (the thread moved) or RunTransitionError."""
        if not isinstance(events, DynamoEventStore):
            return super()._claim(events, run, head, started, cursor, fields)
        rows = EventStore._numbered([started], head)
        values = {**fields, "status": "running", "start_cursor": cursor(run, started.seq), "updated_at": time.time()}
        checked = RunRecord.model_validate({**run.model_dump(), **values})
        names, attrs, sets = {"#st": "status", "#act": ACTIVE_INDEX.partition}, {":q": _s("queued")}, ["#act = :act"]
        attrs[":act"] = _s(str(active_key(run.run_id, "running")))
        for i, name in enumerate(sorted(values)):
            value = getattr(checked, name)
            if value is None:
                continue
            names[f"#f{i}"], attrs[f":v{i}"] = name, _encode_field(name, value)
            sets.append(f"#f{i} = :v{i}")
        actions: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"run_id": _s(run.run_id)},
                    "UpdateExpression": "SET " + ", ".join(sets),
                    "ConditionExpression": "#st = :q",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": attrs,
                }
            }
        ]
        if head > 0:
            actions.append(
                {
                    "ConditionCheck": {
                        "TableName": events.table,
                        "Key": {"thread_id": _s(run.thread_id), "seq": _n(head)},
                        "ConditionExpression": "attribute_exists(#s)",
                        "ExpressionAttributeNames": {"#s": "seq"},
                    }
                }
            )
        actions += [events._put(item) for item in events._items(run.thread_id, rows)]
        try:
            self.db.transact_write_items(TransactItems=actions)
        except Exception as exc:
            if _code(exc) != "TransactionCanceledException":
                raise
            reasons = [r.get("Code", "None") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise RunTransitionError(run.run_id, "not queued", ("queued",)) from None
            raise StateConflictError(run.thread_id, head) from None
        return checked

    def query(self, q: RunQuery) -> RunPage:
        """A ``Query`` of the ``tenant-created_at`` index (newest first, the time range in the key
        condition) with the other filters as a ``FilterExpression``; pages until ``limit`` runs match."""
        names, values, filters = _run_filters(q)
        names.update({"#t": "tenant", "#c": "created_at"})
        values.update({":t": _s(q.tenant), ":lo": _n(float(q.since or 0.0)), ":hi": _n(float(q.until if q.until is not None else 1e12))})
        if q.until is not None:
            filters.append("#c < :hi")  # BETWEEN includes its end; `until` does not
        args: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": self.TENANT_INDEX,
            "KeyConditionExpression": "#t = :t AND #c BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": max(q.limit + 1, 50),
        }
        if filters:
            args["FilterExpression"] = " AND ".join(filters)
        position = q.position()
        if position is not None:
            args["ExclusiveStartKey"] = {"run_id": _s(position[1]), "tenant": _s(q.tenant), "created_at": _n(position[0])}
        runs: list[RunRecord] = []
        more = False
        for item in _pages(self.db.query, **args):
            if len(runs) == q.limit:
                more = True
                break
            runs.append(_decode_run(item))
        return RunPage(runs=runs, next_cursor=page_cursor(runs[-1]) if more else None)

    @staticmethod
    def _token_id(token: str) -> str:
        return _TOKEN_PREFIX + hashlib.sha256(token.encode()).hexdigest()

    def complete_token(self, token: str, output: dict[str, Any]) -> None:
        self.db.put_item(TableName=self.table, Item={"run_id": _s(self._token_id(token)), "output": _s(json.dumps(output))})

    def token_output(self, token: str) -> dict[str, Any] | None:
        item = self.db.get_item(TableName=self.table, Key={"run_id": _s(self._token_id(token))}, ConsistentRead=True).get("Item")
        return json.loads(item["output"]["S"]) if item else None


# -- registry ---------------------------------------------------------------------------------
_ALIAS_PREFIX = "alias#"


def _pack(value: dict[str, Any]) -> dict[str, bytes]:
    return {"B": zlib.compress(json.dumps(value, separators=(",", ":"), sort_keys=True).encode(), 6)}


def _unpack(attr: dict[str, Any]) -> dict[str, Any]:
    return json.loads(zlib.decompress(attr["B"]))  # type: ignore[no-any-return]


class DynamoRegistry(Registry):
    """Graph versions and their ASL in DynamoDB."""

    def __init__(self, table_name: str, *, client: Any = None) -> None:
        self.table = table_name
        self.db = client or awsclients.client("dynamodb")

    def put(self, ref: str, name: str, spec: dict[str, Any], asl: dict[str, Any]) -> None:
        now = _n(time.time())
        try:
            self.db.put_item(
                TableName=self.table,
                Item={"ref": _s(ref), "name": _s(name), "spec": _pack(spec), "asl": _pack(asl), "created_at": now},
                ConditionExpression="attribute_not_exists(#r)",
                ExpressionAttributeNames={"#r": "ref"},
            )
        except Exception as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise  # an existing version stays as it was: versions are immutable
        self.db.put_item(TableName=self.table, Item={"ref": _s(_ALIAS_PREFIX + name), "target": _s(ref), "updated_at": now})

    def get(self, ref: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        if ref.startswith(_ALIAS_PREFIX):
            return None
        item = self.db.get_item(TableName=self.table, Key={"ref": _s(ref)}, ConsistentRead=True).get("Item")
        return (_unpack(item["spec"]), _unpack(item["asl"])) if item else None

    def latest(self, name: str) -> str | None:
        item = self.db.get_item(TableName=self.table, Key={"ref": _s(_ALIAS_PREFIX + name)}, ConsistentRead=True).get("Item")
        return item["target"]["S"] if item else None
