"""The DynamoDB runs table's indexes as plain data, importable without boto3.

One definition that the adapter (``stepwise.state.dynamodb``) queries, the CDK stack deploys
(infra/stacks/storage.py, which the ``infra`` extra runs without the ``aws`` extra's boto3) and the moto
test tables create (tests/support/aws.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from stepwise.state.ports import IN_LINE


@dataclass(frozen=True)
class TableIndex:
    """A global secondary index: the one definition the adapters query, the CDK stack
    (infra/stacks/storage.py) deploys and the moto tables (tests/support/aws.py) create."""

    name: str
    partition: str
    sort: str
    partition_type: Literal["S", "N"] = "S"
    sort_type: Literal["S", "N"] = "N"
    projection: Literal["ALL", "KEYS_ONLY"] = "ALL"


#: Sparse: only runs in flight carry ``active`` (see ``stepwise.state.dynamodb``'s docstring and ``active_key``).
ACTIVE_INDEX = TableIndex("active-created_at", "active", "created_at", projection="KEYS_ONLY")
RUNS_INDEXES = (
    TableIndex("thread_id-created_at", "thread_id", "created_at"),
    TableIndex("tenant-created_at", "tenant", "created_at"),
    ACTIVE_INDEX,
)
#: ``active`` values per status: a run's shard is fixed by its id, so no write reads first. Four partitions per
#: status spread the index's writes (each run writes it at start, at each wait/resume and at its end).
ACTIVE_SHARDS = 4


def active_key(run_id: str, status: str) -> str | None:
    """The run's ``active`` attribute for ``status``: ``"<status>#<shard>"`` while the run is in flight
    (running, waiting, queued), None (the attribute removed) once it is not."""
    if status not in IN_LINE:
        return None
    return f"{status}#{int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16) % ACTIVE_SHARDS}"
