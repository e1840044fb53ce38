"""Create, list and revoke API keys — as functions, and as a small CLI.

    python -m stepwise.api.keys create --tenant acme --name ci        # embedded: <home>/api.db
    python -m stepwise.api.keys list --tenant acme
    python -m stepwise.api.keys revoke --tenant acme KEY_ID
    STEPWISE_BACKEND=aws STEPWISE_API_TABLE=... python -m stepwise.api.keys create --tenant acme
    python -m stepwise.api.keys plan --tenant acme --plan-id <UsagePlan id>   # API Gateway usage plan (AWS)

On AWS with ``STEPWISE_USAGE_PLAN_ID`` set (the stack's ``CreateApiKeyCommand`` output sets it), ``create``
also puts the tenant in that usage plan (``stepwise.api.authorizer.enroll``); ``plan`` moves a tenant —
one that signs in with JWTs too — to another plan.

The plaintext key is printed once at creation and never stored; only its salted hash is.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from stepwise.api.auth import new_key
from stepwise.api.settings import ApiSettings, build_store
from stepwise.store import ApiKeyRecord, ApiStore


def create_key(store: ApiStore, tenant: str, name: str = "") -> tuple[ApiKeyRecord, str]:
    """Store a new key for ``tenant``; return its record and the plaintext key (show it once)."""
    record, plaintext = new_key(tenant, name)
    store.put_key(record)
    return record, plaintext


def revoke_key(store: ApiStore, tenant: str, key_id: str) -> ApiKeyRecord | None:
    """Revoke a key: every later request with it gets a 401. None if there is no such key."""
    return store.revoke_key(tenant, key_id)


def list_keys(store: ApiStore, tenant: str) -> list[ApiKeyRecord]:
    return store.list_keys(tenant)


cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Manage Stepwise API keys (hashed at rest, one tenant each).")
HomeOpt = Annotated[Path | None, typer.Option(help="state directory of the embedded backend (default: $STEPWISE_HOME or .stepwise)")]
TenantOpt = Annotated[str, typer.Option(help="tenant the key belongs to")]


def _settings(home: Path | None) -> ApiSettings:
    """The API settings of this CLI process (read from the environment here, at the edge), ``--home`` applied."""
    settings = ApiSettings.from_env()
    return settings.model_copy(update={"home": home}) if home is not None else settings


def _store(home: Path | None) -> ApiStore:
    return build_store(_settings(home))


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


@cli.command()
def create(tenant: TenantOpt, name: Annotated[str, typer.Option(help="a label, e.g. who uses it")] = "", home: HomeOpt = None) -> None:
    """Create a key and print it (once)."""
    try:
        settings = _settings(home)
        record, plaintext = create_key(build_store(settings), tenant, name)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    plan_id = settings.usage_plan_id
    if plan_id:
        from stepwise.api.authorizer import enroll

        enroll(tenant, plan_id)
        typer.echo(f"tenant {tenant!r} is in usage plan {plan_id}", err=True)
    typer.echo(json.dumps({"key_id": record.key_id, "tenant": record.tenant, "name": record.name, "api_key": plaintext}))
    typer.echo("Store this key now: only its hash is kept.", err=True)


@cli.command()
def plan(tenant: TenantOpt, plan_id: Annotated[str, typer.Option(help="the API Gateway usage plan id (stack outputs)")]) -> None:
    """Put a tenant in an API Gateway usage plan (and in no other): its first line of rate limiting on AWS."""
    from stepwise.api.authorizer import enroll

    try:
        key_id = enroll(tenant, plan_id)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({"tenant": tenant, "usage_plan_id": plan_id, "usage_key_id": key_id}))


@cli.command("list")
def list_(tenant: TenantOpt, home: HomeOpt = None) -> None:
    """List a tenant's keys (never their secrets)."""
    for r in list_keys(_store(home), tenant):
        typer.echo(json.dumps({"key_id": r.key_id, "name": r.name, "created_at": _iso(r.created_at), "revoked_at": _iso(r.revoked_at)}))


@cli.command()
def revoke(key_id: str, tenant: TenantOpt, home: HomeOpt = None) -> None:
    """Revoke a key; requests with it get 401 from then on."""
    record = revoke_key(_store(home), tenant, key_id)
    if record is None:
        typer.echo(f"error: tenant {tenant!r} has no key {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps({"key_id": record.key_id, "revoked_at": _iso(record.revoked_at)}))


if __name__ == "__main__":
    sys.exit(cli())
