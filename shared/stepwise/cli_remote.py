"""``stepwise remote …``: the run commands against a Stepwise API — `stepwise serve` or a deployed stack.

    export STEPWISE_URL=http://127.0.0.1:8080 STEPWISE_API_KEY=swk_default_…     # or --url / --api-key
    stepwise remote run graph.yaml --input '{"amount": 40}'     # registers (or adds a version), runs, streams
    stepwise remote resume <run id> --input '{"decision": "yes"}'
    stepwise remote history <run id>  |  state <thread id>  |  cancel <run id>  |  agents

A profile file keeps several targets: ``~/.stepwise/profiles.json`` = ``{"prod": {"url": …, "api_key": …}}``,
chosen with ``--profile prod`` (or ``STEPWISE_PROFILE``). The key never goes on the command line if it
comes from the environment or a profile.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stepwise._console import _Console

if TYPE_CHECKING:  # the HTTP client and the API models load with the `remote` commands, not with every command
    from stepwise.remote import Client, RemoteError
else:
    RemoteError = Exception  # rebound to stepwise.remote.RemoteError by _client(), before any remote call

app = typer.Typer(no_args_is_help=True, help="Run, resume and inspect runs on a Stepwise API (stepwise serve or a deployed stack).")
err: Any = _Console(stderr=True, soft_wrap=True)

UrlOpt = Annotated[str | None, typer.Option("--url", help="API base URL (or $STEPWISE_URL)")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", help="API key (or $STEPWISE_API_KEY)")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="JWT bearer token (or $STEPWISE_TOKEN)")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="A profile of ~/.stepwise/profiles.json (or $STEPWISE_PROFILE)")]


def _client(url: str | None, api_key: str | None, token: str | None, profile: str | None) -> Client:
    global RemoteError
    from stepwise.remote import Client, RemoteError

    chosen: dict[str, Any] = {}
    name = profile or os.environ.get("STEPWISE_PROFILE")
    if name:
        path = Path(os.environ.get("STEPWISE_PROFILES", Path.home() / ".stepwise" / "profiles.json"))
        try:
            chosen = json.loads(path.read_text())[name]
        except (OSError, KeyError, ValueError) as exc:
            _fail(f"profile {name!r} not found in {path} ({type(exc).__name__}); it holds {{name: {{url, api_key | token}}}}")
    url = url or chosen.get("url") or os.environ.get("STEPWISE_URL")
    if not url:
        _fail("no API URL: pass --url, set STEPWISE_URL, or use --profile")
    assert url is not None
    return Client(
        url,
        api_key=api_key or chosen.get("api_key") or os.environ.get("STEPWISE_API_KEY"),
        token=token or chosen.get("token") or os.environ.get("STEPWISE_TOKEN"),
    )


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(2)


def _json_arg(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"--input is not valid JSON ({exc.msg}); pass an object like '{{\"a\": 1}}' or @file.json")
    if not isinstance(value, dict):
        _fail("--input must be a JSON object")
    return value  # type: ignore[no-any-return]


def _print(model: Any) -> None:
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")


def _follow(sw: Client, run_id: str) -> None:
    """Print the run's live stream to stderr: token deltas inline, one line per node, until it ends or waits."""
    open_line = False
    for event in sw.stream(run_id):
        if event.event == "llm_delta":
            sys.stderr.write(("" if open_line else f"  {event.data.get('node')}: ") + str(event.data.get("text", "")))
            sys.stderr.flush()
            open_line = True
            continue
        if open_line:
            sys.stderr.write("\n")
            open_line = False
        if event.event == "node_update":
            err.print(f"  [green]✓[/green] {event.data.get('node')} [dim]seq {event.id}[/dim]", highlight=False)
        elif event.event == "interrupt":
            err.print(f"  [yellow]⏸[/yellow] {event.data.get('node')} waits for input", highlight=False)
            return
        elif event.event == "end":
            return


@app.command()
def run(
    file: Path,
    input: Annotated[str | None, typer.Option("--input", "-i", help="Initial state as a JSON object, or @file.json")] = None,
    thread: Annotated[str | None, typer.Option(help="Continue an existing thread")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    token: TokenOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Register the graph (or add a version), run it, stream its progress, print the run."""
    with _client(url, api_key, token, profile) as sw:
        try:
            version = sw.register(yaml=file.read_text(encoding="utf-8"))
            err.print(f"[bold]agent[/bold] {version.agent} v{version.version} ({version.ref})", highlight=False)
            started = sw.execute(version.agent, _json_arg(input), thread_id=thread, background=True)
            err.print(f"[bold]run[/bold] {started.run_id} on {started.thread_id}", highlight=False)
            _follow(sw, started.run_id)
            _print(sw.run(started.run_id))
        except RemoteError as exc:
            _fail(str(exc))


@app.command()
def resume(
    run_id: str,
    input: Annotated[str | None, typer.Option("--input", "-i", help="The human's answer as a JSON object")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    token: TokenOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Answer a waiting run and print it once it ends or waits again."""
    with _client(url, api_key, token, profile) as sw:
        try:
            _print(sw.resume(run_id, _json_arg(input), wait_seconds=25))
        except RemoteError as exc:
            _fail(str(exc))


@app.command()
def status(run_id: str, url: UrlOpt = None, api_key: KeyOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """A run: status, what it waits for, its thread's state."""
    with _client(url, api_key, token, profile) as sw:
        try:
            _print(sw.run(run_id))
        except RemoteError as exc:
            _fail(str(exc))


@app.command()
def history(run_id: str, url: UrlOpt = None, api_key: KeyOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """A run's events, oldest first, one JSON object per line."""
    with _client(url, api_key, token, profile) as sw:
        try:
            for event in sw.history(run_id):
                sys.stdout.write(event.model_dump_json() + "\n")
        except RemoteError as exc:
            _fail(str(exc))


@app.command()
def state(
    thread_id: str,
    at: Annotated[int | None, typer.Option(help="Sequence number (default: latest)")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    token: TokenOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """A thread's state, now or at a past seq."""
    with _client(url, api_key, token, profile) as sw:
        try:
            _print(sw.state(thread_id, at))
        except RemoteError as exc:
            _fail(str(exc))


@app.command()
def cancel(run_id: str, url: UrlOpt = None, api_key: KeyOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Cancel a running or waiting run."""
    with _client(url, api_key, token, profile) as sw:
        try:
            _print(sw.cancel(run_id))
        except RemoteError as exc:
            _fail(str(exc))


@app.command()
def agents(url: UrlOpt = None, api_key: KeyOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Your agents (the API has no run listing yet: use `status`/`history` with a run id)."""
    with _client(url, api_key, token, profile) as sw:
        try:
            _print(sw.agents())
        except RemoteError as exc:
            _fail(str(exc))
