"""The ApiStore port's contract, run against every adapter: memory, SQLite, DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from stepwise.api.auth import new_key
from stepwise.store import ApiStore, StoreConflict, thread_name
from stepwise.store.dynamodb import DynamoApiStore
from stepwise.store.memory import MemoryApiStore
from stepwise.store.sqlite import SqliteApiStore


@pytest.fixture(params=["memory", "sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiStore]:
    if request.param == "memory":
        yield MemoryApiStore()
    elif request.param == "sqlite":
        yield SqliteApiStore(tmp_path / "api.db")
    else:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(name, "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with mock_aws():
            client = boto3.client("dynamodb", region_name="us-east-1")
            client.create_table(
                TableName="api",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            yield DynamoApiStore("api", client=client)


def test_keys_store_only_hashes_and_are_listed_per_tenant(store: ApiStore) -> None:
    record, plaintext = new_key("acme", "ci")
    store.put_key(record)
    other, _ = new_key("globex")
    store.put_key(other)
    got = store.get_key("acme", record.key_id)
    assert got is not None and got.hash == record.hash and got.active
    assert plaintext.rsplit("_", 1)[-1] not in got.model_dump_json()  # the secret is not at rest
    assert [k.key_id for k in store.list_keys("acme")] == [record.key_id]
    assert store.get_key("globex", record.key_id) is None
    with pytest.raises(StoreConflict):
        store.put_key(record)  # key ids are never overwritten


def test_revoke_is_idempotent(store: ApiStore) -> None:
    record, _ = new_key("acme")
    store.put_key(record)
    first = store.revoke_key("acme", record.key_id)
    assert first is not None and first.revoked_at is not None
    again = store.revoke_key("acme", record.key_id)
    assert again is not None and again.revoked_at == first.revoked_at
    assert store.get_key("acme", record.key_id).active is False  # type: ignore[union-attr]
    assert store.revoke_key("acme", "0" * 16) is None


def test_agents_versions_and_aliases(store: ApiStore) -> None:
    created = store.create_agent("acme", "bot", "bot@1", description="d")
    assert created.aliases == {"live": 1} and [v.ref for v in created.versions] == ["bot@1"]
    with pytest.raises(StoreConflict):
        store.create_agent("acme", "bot", "bot@x")
    store.create_agent("globex", "bot", "bot@9")  # same name, other tenant: independent

    record, version, was_new = store.add_version("acme", "bot", "bot@2")
    assert was_new and version.version == 2 and record.aliases["live"] == 2
    record, version, was_new = store.add_version("acme", "bot", "bot@1", promote=False)
    assert not was_new and version.version == 1 and record.aliases["live"] == 2
    record, _, _ = store.add_version("acme", "bot", "bot@3", promote=False)
    assert record.aliases["live"] == 2 and len(record.versions) == 3
    assert store.set_alias("acme", "bot", "canary", 3).aliases == {"live": 2, "canary": 3}
    with pytest.raises(ValueError, match=r"versions 1\.\.3"):
        store.set_alias("acme", "bot", "canary", 4)
    with pytest.raises(KeyError):
        store.add_version("acme", "ghost", "ghost@1")

    stored = store.get_agent("acme", "bot")
    assert stored is not None and [v.ref for v in stored.versions] == ["bot@1", "bot@2", "bot@3"]
    assert [a.name for a in store.list_agents("acme")] == ["bot"]
    assert store.get_agent("globex", "bot").versions[0].ref == "bot@9"  # type: ignore[union-attr]


def test_writes_are_conditional_on_the_revision(store: ApiStore) -> None:
    store.create_agent("acme", "bot", "bot@1")
    revision, doc = store._get("tenant#acme", "agent#bot")  # type: ignore[misc]
    store._put("tenant#acme", "agent#bot", doc, revision)
    with pytest.raises(StoreConflict):
        store._put("tenant#acme", "agent#bot", doc, revision)  # a stale writer loses


def test_add_version_retries_after_a_concurrent_write(store: ApiStore) -> None:
    store.create_agent("acme", "bot", "bot@1")
    real_put = store._put
    raced = []

    def racing_put(pk: str, sk: str, doc: dict, expected: int | None) -> int:  # type: ignore[type-arg]
        if not raced:  # another writer adds a version between our read and our write
            raced.append(True)
            store.__dict__.pop("_put")
            store.add_version("acme", "bot", "bot@2")
            store._put = racing_put  # type: ignore[method-assign]
        return real_put(pk, sk, doc, expected)

    store._put = racing_put  # type: ignore[method-assign]
    record, version, _ = store.add_version("acme", "bot", "bot@3")
    assert version.version == 3 and [v.ref for v in record.versions] == ["bot@1", "bot@2", "bot@3"]


def test_threads_have_one_owner(store: ApiStore) -> None:
    assert store.thread_owner("t1") is None
    assert store.claim_thread("acme", "t1") == "acme"
    assert store.claim_thread("globex", "t1") == "acme"
    assert store.claim_thread("acme", "t1") == "acme"
    assert store.thread_owner("t1") == "acme"


def test_a_tenant_gets_one_thread_of_its_own_behind_a_name_another_tenant_owns(store: ApiStore) -> None:
    assert store.claim_thread("acme", "chat-1") == "acme"
    assert store.thread_alias("globex", "chat-1", create=False) is None  # not made by a read
    made = store.thread_alias("globex", "chat-1", create=True)
    assert made is not None and made.startswith("chat-1~") and thread_name(made) == "chat-1"
    assert store.thread_alias("globex", "chat-1", create=True) == made  # the same one every time
    other = store.thread_alias("initech", "chat-1", create=True)
    assert other is not None and other != made
    assert store.thread_owner("chat-1") == "acme"  # the name itself stays acme's
