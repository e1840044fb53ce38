"""The run commands against a Stepwise API — `stepwise serve` or a deployed stack.

Every run command of ``stepwise`` (``run``, ``resume``, ``runs``, ``history``, ``state``, ``cancel``) takes
``--url`` / ``--api-key`` / ``--token`` / ``--profile``; with a URL (from a flag, a profile, or
``$STEPWISE_URL``) it talks to that API instead of the local store:

    export STEPWISE_URL=http://127.0.0.1:8080 STEPWISE_API_KEY=swk_default_…     # or --url / --api-key
    stepwise run graph.yaml --input '{"amount": 40}'     # registers (or adds a version), runs, streams
    stepwise resume <run id> --input '{"decision": "yes"}'
    stepwise runs  |  history <thread id>  |  state <thread id>  |  cancel <run id>

``stepwise remote …`` is the same set (plus ``status`` and ``agents``) that always needs a URL.

A profile file keeps several targets: ``~/.stepwise/profiles.json`` = ``{"prod": {"url": …, "api_key": …}}``,
chosen with ``--profile prod`` (or ``STEPWISE_PROFILE``). The key never goes on the command line if it
comes from the environment or a profile.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from stepwise._console import _Console, escape

if TYPE_CHECKING:  # the HTTP client and the API models load with the remote commands, not with every command
    from stepwise.remote import Client

app = typer.Typer(no_args_is_help=True, help="Run, resume and inspect runs on a Stepwise API (stepwise serve or a deployed stack).")
err: Any = _Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

UrlOpt = Annotated[str | None, typer.Option("--url", help="API base URL (or $STEPWISE_URL): run there", rich_help_panel="Remote")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", help="API key (or $STEPWISE_API_KEY)", rich_help_panel="Remote")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="JWT bearer token (or $STEPWISE_TOKEN)", rich_help_panel="Remote")]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", help="A profile of ~/.stepwise/profiles.json (or $STEPWISE_PROFILE)", rich_help_panel="Remote")
]


@dataclass(frozen=True)
class Target:
    """Where the remote commands go, and how they authenticate."""

    url: str
    api_key: str | None = None
    token: str | None = None

    def client(self) -> Client:
        from stepwise.remote import Client

        return Client(self.url, api_key=self.api_key, token=self.token)


def resolve(url: str | None, api_key: str | None, token: str | None, profile: str | None, *, required: bool) -> Target | None:
    """Flags first, then the profile, then the environment; None when no URL is given anywhere (local)."""
    chosen: dict[str, Any] = {}
    name = profile or os.environ.get("STEPWISE_PROFILE")
    if name:
        path = Path(os.environ.get("STEPWISE_PROFILES", Path.home() / ".stepwise" / "profiles.json"))
        try:
            chosen = json.loads(path.read_text())[name]
        except (OSError, KeyError, ValueError) as exc:
            fail(f"profile {name!r} not found in {path} ({type(exc).__name__}); it holds {{name: {{url, api_key | token}}}}")
    url = url or chosen.get("url") or os.environ.get("STEPWISE_URL")
    if not url:
        if required:
            fail("no API URL: pass --url, set STEPWISE_URL, or use --profile")
        return None
    return Target(
        url,
        api_key=api_key or chosen.get("api_key") or os.environ.get("STEPWISE_API_KEY"),
        token=token or chosen.get("token") or os.environ.get("STEPWISE_TOKEN"),
    )


def with_remote(*, required: bool = False) -> Callable[[F], F]:
    """Add ``--url/--api-key/--token/--profile`` to a command; it receives ``remote=Target | None``."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)  # the string annotations, resolved (help texts kept)
        options = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
            for name, annotation in (("url", UrlOpt), ("api_key", KeyOpt), ("token", TokenOpt), ("profile", ProfileOpt))
        ]
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values() if p.name != "remote"]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            target = resolve(kwargs.pop("url"), kwargs.pop("api_key"), kwargs.pop("token"), kwargs.pop("profile"), required=required)
            return fn(*args, remote=target, **kwargs)

        parameters = [*own, *options]
        wrapper.__signature__ = signature.replace(parameters=parameters, return_annotation=None)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__  # typer must read the new signature, not the wrapped function's
        return wrapper  # type: ignore[return-value]

    return decorate


def fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(2)


def json_arg(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--input is not valid JSON ({exc.msg}); pass an object like '{{\"a\": 1}}' or @file.json")
    if not isinstance(value, dict):
        fail("--input must be a JSON object")
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


def _credentials_hint(target: Target) -> str:
    """What the CLI sent on a 401, and where it reads the key from."""
    where = "pass --api-key or set STEPWISE_API_KEY (a JWT: --token or STEPWISE_TOKEN; or a --profile that holds one)"
    if target.api_key is None and target.token is None:
        return f"the CLI sent no key: {where}"
    return "the key sent was refused: the CLI reads --api-key, then the --profile's, then STEPWISE_API_KEY (a JWT: --token, STEPWISE_TOKEN)"


def _call(target: Target, action: Callable[[Client], None]) -> None:
    """Open a client, run ``action``, and turn an API error into a one-line message (exit 2)."""
    from stepwise.extras import MissingExtra, needs
    from stepwise.remote import RemoteError

    try:
        with needs("remote", "commands with --url (the remote client)"):
            import httpx
    except MissingExtra as exc:  # the base install: one line naming the extra, not a ModuleNotFoundError
        fail(escape(str(exc)))  # `[remote]` is text, not rich markup
        return

    with target.client() as sw:
        try:
            action(sw)
        except RemoteError as exc:
            if exc.status == 401:
                fail(escape(f"{exc}; {_credentials_hint(target)}"))
            fail(escape(str(exc)))
        except httpx.TransportError as exc:
            fail(f"cannot reach {target.url} ({type(exc).__name__}: {exc}); check --url and that the server runs")


# -- what each command does against an API (the local commands in cli.py delegate here) ------------
def run(target: Target, file: Path, input: str | None, thread: str | None, multitask: str | None = None) -> None:
    def act(sw: Client) -> None:
        version = sw.register(yaml=file.read_text(encoding="utf-8"))
        err.print(f"[bold]agent[/bold] {version.agent} v{version.version} ({version.ref})", highlight=False)
        started = sw.execute(version.agent, json_arg(input), thread_id=thread, background=True, multitask=multitask)
        err.print(f"[bold]run[/bold] {started.run_id} on {started.thread_id}", highlight=False)
        if started.status == "queued":  # it starts when the runs before it on the thread end
            err.print(f"  [yellow]queued[/yellow] behind the run in flight on {started.thread_id}", highlight=False)
            _print(started)
            return
        _follow(sw, started.run_id)
        _print(sw.run(started.run_id))

    _call(target, act)


def resume(target: Target, run_id: str, input: str | None) -> None:
    _call(target, lambda sw: _print(sw.resume(run_id, json_arg(input), wait_seconds=25)))


def runs(target: Target, thread: str | None, limit: int, cursor: str | None = None) -> None:
    def act(sw: Client) -> None:
        if thread is not None:  # one thread's runs come with its timeline
            page = sw.thread(thread, limit=1)
            _print(_thread_runs(page.runs))
        else:
            _print(sw.runs(limit=limit, cursor=cursor))

    _call(target, act)


def _thread_runs(runs: list[Any]) -> Any:
    from stepwise.api.models import RunList

    return RunList(runs=runs, next_cursor=None, agents=sorted({r.agent for r in runs}))


def history(target: Target, thread_or_run: str) -> None:
    """A thread's events (every run on it, in seq order), one JSON object per line; a run id works too."""
    from stepwise.remote import RemoteError

    def act(sw: Client) -> None:
        try:
            events = sw.thread_history(thread_or_run)
        except RemoteError as exc:
            if exc.code != "thread_not_found":
                raise
            events = sw.history(thread_or_run)
        for event in events:
            sys.stdout.write(event.model_dump_json() + "\n")

    _call(target, act)


def state(target: Target, thread_id: str, at: int | None) -> None:
    _call(target, lambda sw: _print(sw.state(thread_id, at)))


def cancel(target: Target, run_id: str) -> None:
    _call(target, lambda sw: _print(sw.cancel(run_id)))


# -- `stepwise remote …`: the same, always against an API ----------------------------------------------
InputOpt = Annotated[str | None, typer.Option("--input", "-i", help="A JSON object, or @file.json")]


@app.command("run")
@with_remote(required=True)
def run_command(
    file: Path,
    input: InputOpt = None,
    thread: Annotated[
        str | None, typer.Option(help="Run on this thread: continue it from its state, or start a new thread with this id")
    ] = None,
    remote: Target | None = None,
) -> None:
    """Register the graph (or add a version), run it, stream its progress, print the run."""
    assert remote is not None
    run(remote, file, input, thread)


@app.command("resume")
@with_remote(required=True)
def resume_command(run_id: str, input: InputOpt = None, remote: Target | None = None) -> None:
    """Answer a waiting run and print it once it ends or waits again."""
    assert remote is not None
    resume(remote, run_id, input)


@app.command("runs")
@with_remote(required=True)
def runs_command(
    thread: Annotated[str | None, typer.Option(help="Only runs of this thread")] = None,
    limit: int = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
    remote: Target | None = None,
) -> None:
    """Your runs, newest first (one page; --cursor continues)."""
    assert remote is not None
    runs(remote, thread, limit, cursor)


@app.command("status")
@with_remote(required=True)
def status_command(run_id: str, remote: Target | None = None) -> None:
    """A run: status, what it waits for, its thread's state."""
    assert remote is not None
    _call(remote, lambda sw: _print(sw.run(run_id)))


@app.command("history")
@with_remote(required=True)
def history_command(thread_or_run: str, remote: Target | None = None) -> None:
    """A thread's (or one run's) events, oldest first, one JSON object per line."""
    assert remote is not None
    history(remote, thread_or_run)


@app.command("state")
@with_remote(required=True)
def state_command(
    thread_id: str, at: Annotated[int | None, typer.Option(help="Sequence number (default: latest)")] = None, remote: Target | None = None
) -> None:
    """A thread's state, now or at a past seq."""
    assert remote is not None
    state(remote, thread_id, at)


@app.command("cancel")
@with_remote(required=True)
def cancel_command(run_id: str, remote: Target | None = None) -> None:
    """Cancel a running or waiting run."""
    assert remote is not None
    cancel(remote, run_id)


@app.command("agents")
@with_remote(required=True)
def agents_command(remote: Target | None = None) -> None:
    """Your agents."""
    assert remote is not None
    _call(remote, lambda sw: _print(sw.agents()))
