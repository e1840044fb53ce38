"""``stepwise roles``: list, set and delete the tool roles of a tenant (an operator's command: it writes the
API store directly — SQLite under ``--home`` on the embedded default, the DynamoDB table on AWS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
import yaml
from pydantic import ValidationError

from stepwise._console import _Console

if TYPE_CHECKING:  # the tools layer is imported by the roles commands, not by every `stepwise` command
    from stepwise.tools.roles import RoleStore

roles_app = typer.Typer(no_args_is_help=True, help="Tool roles per tenant (RBAC): which tools and servers a tenant's graphs may call.")
out: Any = _Console(soft_wrap=True)
err: Any = _Console(stderr=True, soft_wrap=True)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="State directory (default .stepwise, or $STEPWISE_HOME)")]
OutputOpt = Annotated[Literal["text", "json"], typer.Option("--output", "-o", help="text or json")]


def _store(home: Path | None) -> RoleStore:
    from stepwise.api.settings import ApiSettings, build_store
    from stepwise.tools.roles import RoleStore

    settings = ApiSettings.from_env()
    if home is not None:
        settings = settings.model_copy(update={"home": home})
    return RoleStore(build_store(settings))


@roles_app.command("list")
def list_roles(
    tenant: str,
    home: HomeOpt = None,
    output: OutputOpt = "text",
) -> None:
    """Show a tenant's roles."""
    roles = _store(home).list(tenant)
    if output == "json":
        out.print_json(json.dumps([r.model_dump(exclude_defaults=True) for r in roles]))
        return
    if not roles:
        out.print(f"tenant {tenant!r} has no roles: it is unrestricted unless STEPWISE_RBAC=strict")
    for r in roles:
        limits = "; ".join(f"{t}.{a}: {c.model_dump(exclude_none=True)}" for t, args in r.constraints.items() for a, c in args.items())
        out.print(f"{r.name}: {', '.join(r.tools) or '(no tools)'}" + (f"  [dim]{limits}[/dim]" if limits else ""))


@roles_app.command("set")
def set_role(
    tenant: str,
    name: str,
    tools: Annotated[str, typer.Option(help="Comma-separated: calculator, files/read, files/*, *")] = "",
    hosts: Annotated[list[str] | None, typer.Option(help="TOOL.ARG=host,*.host (URL host constraint); repeatable")] = None,
    file: Annotated[Path | None, typer.Option(help="A YAML/JSON role document instead of the options")] = None,
    description: str = "",
    home: HomeOpt = None,
) -> None:
    """Create or replace a role, e.g. ``stepwise roles set acme web --tools http_fetch --hosts http_fetch.url=*.acme.com``."""
    from stepwise.tools.roles import ArgConstraint, Role

    try:
        if file is not None:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            role = Role.model_validate({"name": name, **data})
        else:
            constraints: dict[str, dict[str, ArgConstraint]] = {}
            for spec in hosts or []:
                target, _, patterns = spec.partition("=")
                tool, _, arg = target.rpartition(".")
                if not tool or not arg or not patterns:
                    raise typer.BadParameter(f"--hosts {spec!r}: expected TOOL.ARG=host[,host...]")
                constraints.setdefault(tool, {})[arg] = ArgConstraint(hosts=[p.strip() for p in patterns.split(",") if p.strip()])
            role = Role(
                name=name, description=description, tools=[t.strip() for t in tools.split(",") if t.strip()], constraints=constraints
            )
    except ValidationError as exc:
        err.print(f"[red]error:[/red] invalid role: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from None
    _store(home).put(tenant, role)
    out.print(f"role {name!r} of tenant {tenant!r}: {', '.join(role.tools) or '(no tools)'}")


@roles_app.command("delete")
def delete_role(tenant: str, name: str, home: HomeOpt = None) -> None:
    """Delete a role."""
    if not _store(home).delete(tenant, name):
        err.print(f"[red]error:[/red] tenant {tenant!r} has no role {name!r}")
        raise typer.Exit(1)
    out.print(f"deleted role {name!r} of tenant {tenant!r}")
