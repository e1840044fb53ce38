"""``stepwise memory …``: review, search, edit and forget long-term memories; run consolidation.

Every command acts inside one tenant (``--tenant``, default ``default`` — the tenant of local runs)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from stepwise._console import Table, _Console, escape
from stepwise.memory.records import Strategy

if TYPE_CHECKING:
    from stepwise.memory.service import MemoryServices

app = typer.Typer(no_args_is_help=True, help="Long-term memory: search, list, history, edit, forget, consolidate.")
out: Any = _Console(soft_wrap=True)
err: Any = _Console(stderr=True, soft_wrap=True)

TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant whose memories to use")]
HomeOpt = Annotated[Path | None, typer.Option("--home", help="State directory (default .stepwise, or $STEPWISE_HOME)")]
Output = Literal["text", "json"]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json")]


def _memory(home: Path | None) -> MemoryServices:
    from stepwise.client import default_home
    from stepwise.extras import MissingExtra, needs
    from stepwise.memory.service import MemoryServices
    from stepwise.memory.settings import MemorySettings

    mem = MemoryServices(home=home or default_home(), settings=MemorySettings.from_env())  # a CLI command: a process edge
    try:
        with needs("memory", "the memory commands (stepwise memory)"):  # names 'memory' even for numpy (extras.ALSO_IN)
            mem.ltm  # noqa: B018 -- opens the store now, so a missing module is one line naming the extra
    except MissingExtra as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    return mem


def _when(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        err.print(f"[red]error:[/red] --as-of {text!r} is neither epoch seconds nor an ISO date/time (2026-12-01T09:00)")
        raise typer.Exit(2) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _guard(call: Any) -> Any:
    from stepwise.memory.records import MemoryError_

    try:
        return call()
    except (MemoryError_, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _show(records: list[Any], output: str, scores: list[float] | None = None) -> None:
    if output == "json":
        rows = [r.model_dump(mode="json") | ({"score": round(scores[i], 4)} if scores else {}) for i, r in enumerate(records)]
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table("id", "namespace", "strategy", "key", "text", "valid from", "valid to", *(["score"] if scores else []))
    for i, r in enumerate(records):
        extra = [f"{scores[i]:.3f}"] if scores else []
        table.add_row(r.id[:12], r.namespace, r.strategy, r.key or "-", r.text, _stamp(r.valid_from), _stamp(r.valid_to), *extra)
    out.print(table)


def _stamp(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M") if t else "-"


@app.command()
def search(
    query: str,
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Namespace prefix (repeatable); default: the tenant")
    ] = None,
    strategy: Annotated[
        list[str] | None, typer.Option("--strategy", "-s", help="semantic, summary, preference, episode, procedural")
    ] = None,
    top_k: int = 5,
    as_of: Annotated[str | None, typer.Option(help="What was true then: epoch seconds or ISO time")] = None,
    tenant: TenantOpt = "default",
    home: HomeOpt = None,
    output: OutputOpt = "text",
) -> None:
    """Search memories by meaning."""
    from stepwise.memory.records import MemoryQuery

    mem = _memory(home)
    q = _guard(
        lambda: MemoryQuery.model_validate(
            {"text": query, "namespaces": namespace or [tenant], "strategies": strategy, "top_k": top_k, "as_of": _when(as_of)}
        )
    )
    hits = _guard(lambda: mem.ltm.search(tenant, q))
    _show([h.record for h in hits], output, [h.score for h in hits])


@app.command("list")
def list_(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    strategy: Annotated[list[str] | None, typer.Option("--strategy", "-s")] = None,
    history: Annotated[bool, typer.Option("--history", help="Include superseded versions")] = False,
    as_of: Annotated[str | None, typer.Option(help="Epoch seconds or ISO time")] = None,
    limit: int = 100,
    tenant: TenantOpt = "default",
    home: HomeOpt = None,
    output: OutputOpt = "text",
) -> None:
    """List memories (active ones, or every version with --history)."""
    mem = _memory(home)
    found = _guard(lambda: mem.ltm.list(tenant, namespace, strategies=strategy, include_history=history, as_of=_when(as_of), limit=limit))
    _show(found, output)


@app.command()
def history(record_id: str, tenant: TenantOpt = "default", home: HomeOpt = None, output: OutputOpt = "text") -> None:
    """Every version of a memory, oldest first."""
    mem = _memory(home)
    _show(_guard(lambda: mem.ltm.history(tenant, _full_id(mem, tenant, record_id))), output)


@app.command()
def remember(
    text: str,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="e.g. default/assistant/dana")],
    strategy: Annotated[Strategy, typer.Option("--strategy", "-s")] = "semantic",
    key: Annotated[str | None, typer.Option(help="Topic key: a new memory with the same key supersedes the old")] = None,
    ttl: Annotated[float | None, typer.Option(help="Expire after this many seconds")] = None,
    tenant: TenantOpt = "default",
    home: HomeOpt = None,
    output: OutputOpt = "text",
) -> None:
    """Store a memory by hand."""
    mem = _memory(home)
    _show([_guard(lambda: mem.ltm.remember(tenant, namespace, text, strategy=strategy, key=key, ttl_seconds=ttl))], output)


@app.command()
def edit(record_id: str, text: str, tenant: TenantOpt = "default", home: HomeOpt = None, output: OutputOpt = "text") -> None:
    """Correct a memory: the new text supersedes it (the old version stays in history)."""
    mem = _memory(home)
    _show([_guard(lambda: mem.ltm.edit(tenant, _full_id(mem, tenant, record_id), text))], output)


@app.command()
def forget(
    record_id: Annotated[str | None, typer.Argument(help="Memory id (or a unique prefix)")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Forget everything under this namespace")] = None,
    tenant: TenantOpt = "default",
    home: HomeOpt = None,
) -> None:
    """Delete a memory and all its versions, or a whole namespace. This is the only hard delete."""
    mem = _memory(home)
    if (record_id is None) == (namespace is None):
        err.print("[red]error:[/red] give a memory id or --namespace (one of them)")
        raise typer.Exit(2)
    if record_id is not None:
        gone = _guard(lambda: mem.ltm.forget(tenant, _full_id(mem, tenant, record_id)))
    else:
        gone = _guard(lambda: mem.ltm.forget_namespace(tenant, str(namespace)))
    sys.stdout.write(json.dumps({"forgotten": gone}) + "\n")


@app.command()
def consolidate(
    thread: Annotated[str | None, typer.Option(help="Consolidate this thread now (needs --namespace and --budget)")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    budget: Annotated[int | None, typer.Option(help="STM token budget")] = None,
    tenant: TenantOpt = "default",
    home: HomeOpt = None,
) -> None:
    """Run consolidation: the threads agents registered as pending, or one --thread."""
    from stepwise.client import Stepwise, default_home
    from stepwise.memory.consolidate import consolidate_thread
    from stepwise.memory.stm import messages_from_events
    from stepwise.memory.worker import run_pass

    client = Stepwise.embedded(home or default_home())
    mem = _memory(home)
    if thread is None:
        reports = run_pass(mem, client.services.events)
    else:
        if namespace is None or budget is None:
            err.print("[red]error:[/red] --thread needs --namespace and --budget")
            raise typer.Exit(2)
        messages = messages_from_events(client.services.events.read(thread))
        reports = [
            _guard(
                lambda: consolidate_thread(
                    tenant=tenant, thread_id=thread, stm=mem.stm, ltm=mem.ltm, namespace=namespace, budget=budget, thread_messages=messages
                )
            )
        ]
    sys.stdout.write(json.dumps([r.to_json() for r in reports]) + "\n")


@app.command()
def expire(tenant: TenantOpt = "default", home: HomeOpt = None) -> None:
    """Delete memories whose TTL has passed (searches already hide them)."""
    mem = _memory(home)
    sys.stdout.write(json.dumps({"expired": mem.ltm.expire(tenant)}) + "\n")


def _full_id(mem: Any, tenant: str, prefix: str) -> str:
    if len(prefix) >= 32:
        return prefix
    matches: list[str] = [r.id for r in mem.ltm.list(tenant, include_history=True, limit=100_000) if r.id.startswith(prefix)]
    if len(matches) != 1:
        err.print(f"[red]error:[/red] {'no' if not matches else 'more than one'} memory id starts with {prefix!r} in tenant {tenant!r}")
        raise typer.Exit(2)
    return matches[0]
