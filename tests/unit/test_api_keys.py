"""API keys: format, hashing at rest, and the create/list/revoke CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stepwise.api.auth import ApiKeyAuthenticator, AuthError, hash_secret, new_key, parse_key, presented_key
from stepwise.api.keys import cli, create_key, list_keys
from stepwise.store.memory import MemoryApiStore
from stepwise.store.sqlite import SqliteApiStore


def test_key_format_and_salted_hash() -> None:
    record, plaintext = new_key("acme", "ci")
    tenant, key_id, secret = parse_key(plaintext)  # type: ignore[misc]
    assert (tenant, key_id) == ("acme", record.key_id) and len(secret) >= 40
    assert record.hash == hash_secret(record.salt, secret) and secret not in record.model_dump_json()
    other, _ = new_key("acme")
    assert other.salt != record.salt and other.key_id != record.key_id


@pytest.mark.parametrize("tenant", ["", "Acme", "a_b", "-x", "x" * 64])
def test_bad_tenant_names_are_refused(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant"):
        new_key(tenant)


@pytest.mark.parametrize(
    "key", ["", "swk_acme", "abc_acme_0123456789abcdef_s", "swk_ACME_0123456789abcdef_s", "swk_acme_xyz_s", "swk_acme_0123456789abcdef_"]
)
def test_malformed_keys_do_not_parse(key: str) -> None:
    assert parse_key(key) is None


def test_headers_x_api_key_or_bearer() -> None:
    assert presented_key({"X-Api-Key": " k1 "}) == "k1"
    assert presented_key({"Authorization": "Bearer k2"}) == "k2"
    assert presented_key({"Authorization": "Basic k3"}) is None


def test_authenticator_maps_a_key_to_its_tenant() -> None:
    store = MemoryApiStore()
    record, plaintext = create_key(store, "acme")
    principal = ApiKeyAuthenticator(store).authenticate({"x-api-key": plaintext}, {})
    assert principal is not None and principal.tenant == "acme" and principal.subject == f"key:{record.key_id}"
    assert ApiKeyAuthenticator(store).authenticate({}, {}) is None
    forged = plaintext.replace("swk_acme_", "swk_globex_")  # a valid key cannot be re-pointed at another tenant
    with pytest.raises(AuthError):
        ApiKeyAuthenticator(store).authenticate({"x-api-key": forged}, {})


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "home"
    created = runner.invoke(cli, ["create", "--tenant", "acme", "--name", "laptop", "--home", str(home)])
    assert created.exit_code == 0, created.output
    made = json.loads(created.stdout.splitlines()[0])
    assert made["api_key"].startswith(f"swk_acme_{made['key_id']}_")

    store = SqliteApiStore(home / "api.db")
    assert [k.key_id for k in list_keys(store, "acme")] == [made["key_id"]]
    assert made["api_key"] not in (home / "api.db").read_bytes().decode("latin-1")

    listed = runner.invoke(cli, ["list", "--tenant", "acme", "--home", str(home)])
    row = json.loads(listed.stdout)
    assert row["name"] == "laptop" and row["revoked_at"] is None and "api_key" not in row

    revoked = runner.invoke(cli, ["revoke", made["key_id"], "--tenant", "acme", "--home", str(home)])
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["revoked_at"]
    with pytest.raises(AuthError, match="revoked"):
        ApiKeyAuthenticator(store).authenticate({"x-api-key": made["api_key"]}, {})

    missing = runner.invoke(cli, ["revoke", "0" * 16, "--tenant", "acme", "--home", str(home)])
    assert missing.exit_code == 1
    bad = runner.invoke(cli, ["create", "--tenant", "Bad_Tenant", "--home", str(home)])
    assert bad.exit_code == 2
