"""The ``stepwise`` command line: validate, compile, draw, run, resume and inspect graphs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from stepwise.asl.compiler import compile_graph, to_json
from stepwise.client import RunResult, Stepwise, default_home
from stepwise.errors import StepwiseError
from stepwise.graph.errors import GraphError
from stepwise.graph.loader import load_file
from stepwise.graph.mermaid import to_mermaid
from stepwise.graph.spec import GraphSpec

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Stepwise: agent graphs compiled to AWS Step Functions, run locally.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

HomeOpt = Annotated[Path | None, typer.Option("--home", help="State directory (default .stepwise, or $STEPWISE_HOME)")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="text or json")]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the library's user-facing errors into one clear line on stderr and exit code 2."""
    try:
        yield
    except (StepwiseError, GraphError) as exc:
        _fail(str(exc))


def _load(path: Path) -> GraphSpec:
    with _user_errors():
        return load_file(path, check_imports=True)
    raise AssertionError("unreachable")


def _parse_input(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read --input file: {exc}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f'--input is not valid JSON ({exc.msg} at column {exc.colno}); pass an object like \'{{"type": "A"}}\' or @file.json')
    if not isinstance(value, dict):
        _fail(f"--input must be a JSON object (the initial state), not {type(value).__name__}")
    return value  # type: ignore[no-any-return]


def _client(home: Path | None, progress: bool) -> Stepwise:
    observer = _progress if progress else None
    try:
        return Stepwise.embedded(home or default_home(), observer=observer)
    except Exception as exc:
        _fail(f"cannot open the state directory {home or default_home()}: {exc}")
        raise


def _progress(event: dict[str, Any]) -> None:
    kind = event["kind"]
    where = f" [dim]({event['scope']})[/dim]" if event.get("scope") else ""
    if kind == "run_started":
        err.print(f"[bold]run[/bold] {event['run_id']} on {event['thread_id']} ({event['graph']})", highlight=False)
    elif kind == "node_finished":
        keys = ", ".join(sorted(event.get("update") or {})) or "-"
        route = f" → {event['route']}" if event.get("route") and not (event.get("scope") and event["route"] == "__end__") else ""
        err.print(
            f"  [green]✓[/green] {event['node']}{where} [dim]{event['ms']:.1f} ms, wrote {keys}, seq {event['seq']}[/dim]{route}",
            highlight=False,
        )
    elif kind == "node_failed":
        err.print(f"  [red]✗[/red] {event['node']}{where}: {event['error']}", highlight=False)
    elif kind == "waiting":
        err.print(f"  [yellow]⏸[/yellow] {event['node']} waits for input: {event['prompt']}", highlight=False)


def _report(result: RunResult, output: str) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(result.to_json(), default=str) + "\n")
    else:
        colour = {"succeeded": "green", "waiting": "yellow", "failed": "red"}.get(result.status, "white")
        out.print(f"[{colour}]{result.status}[/{colour}]  run {result.run_id}  thread {result.thread_id}", highlight=False)
        if result.waiting:
            out.print(
                f"waiting at {result.waiting['node']}: {result.waiting['prompt']}\n"
                f"continue with: stepwise resume {result.run_id} --input '{{...}}'",
                highlight=False,
            )
        if result.error:
            out.print(
                f"[red]node {result.error.get('node')}: {result.error.get('message') or result.error.get('error')}[/red]", highlight=False
            )
            if result.error.get("traceback"):
                err.print(result.error["traceback"], highlight=False, markup=False)
        out.print_json(json.dumps(result.state, default=str))
    if result.status == "failed":
        raise typer.Exit(1)


@app.command()
def validate(file: Path) -> None:
    """Check a graph file; print what is wrong and how to fix it."""
    spec = _load(file)
    out.print(f"[green]ok[/green] {file}: graph {spec.name!r}, {len(spec.graph.nodes)} nodes, version {spec.ref}", highlight=False)


@app.command(name="compile")
def compile_(file: Path, step_arn: Annotated[str | None, typer.Option(help="ARN of the step Lambda")] = None) -> None:
    """Print the Amazon States Language JSON the graph compiles to."""
    spec = _load(file)
    asl = compile_graph(spec, step_arn=step_arn) if step_arn else compile_graph(spec)
    sys.stdout.write(to_json(asl) + "\n")


@app.command()
def graph(file: Path) -> None:
    """Print the graph as a Mermaid flowchart."""
    sys.stdout.write(to_mermaid(_load(file)))


@app.command()
def run(
    file: Path,
    input: Annotated[str | None, typer.Option("--input", "-i", help="Initial state as a JSON object, or @file.json")] = None,
    thread: Annotated[str | None, typer.Option(help="Continue an existing thread")] = None,
    output: OutputOpt = "text",
    home: HomeOpt = None,
) -> None:
    """Run a graph locally, showing progress per node, then the final state."""
    spec = _load(file)
    state = _parse_input(input)
    client = _client(home, progress=output != "json")
    with _user_errors():
        result = client.run(spec, state, thread_id=thread)
    _report(result, output)


@app.command()
def resume(
    run_id: str,
    input: Annotated[str | None, typer.Option("--input", "-i", help="The human's answer as a JSON object")] = None,
    output: OutputOpt = "text",
    home: HomeOpt = None,
) -> None:
    """Continue a run waiting at a human node (or one whose process died)."""
    update = _parse_input(input)
    client = _client(home, progress=output != "json")
    with _user_errors():
        result = client.resume(run_id, update)
    _report(result, output)


@app.command()
def runs(
    thread: Annotated[str | None, typer.Option(help="Only runs of this thread")] = None,
    limit: int = 20,
    output: OutputOpt = "text",
    home: HomeOpt = None,
) -> None:
    """List recent runs."""
    records = _client(home, False).runs(thread_id=thread, limit=limit)
    if output == "json":
        sys.stdout.write(json.dumps([r.model_dump(exclude={"start_cursor"}) for r in records], default=str) + "\n")
        return
    table = Table("run", "thread", "graph", "status", "steps")
    for r in records:
        table.add_row(r.run_id, r.thread_id, r.graph_ref, r.status, str(r.steps))
    out.print(table)


@app.command()
def history(thread_id: str, output: OutputOpt = "text", home: HomeOpt = None) -> None:
    """Every event of a thread, in order."""
    with _user_errors():
        events = _client(home, False).history(thread_id)
    if output == "json":
        sys.stdout.write(json.dumps([e.to_json() for e in events], default=str) + "\n")
        return
    table = Table("seq", "type", "node", "scope", "run", "data")
    for e in events:
        data = json.dumps(e.data.get("update", e.data), default=str)
        table.add_row(str(e.seq), e.type, e.node or "", e.scope, e.run_id, data[:80] + ("…" if len(data) > 80 else ""))
    out.print(table)


@app.command()
def state(
    thread_id: str, at: Annotated[int | None, typer.Option(help="Sequence number (default: latest)")] = None, home: HomeOpt = None
) -> None:
    """The state of a thread, now or at any seq (time travel)."""
    with _user_errors():
        seq, value = _client(home, False).state(thread_id, at=at)
    sys.stdout.write(json.dumps({"thread_id": thread_id, "seq": seq, "state": value}, default=str, indent=2) + "\n")


@app.command()
def fork(thread_id: str, at: Annotated[int, typer.Option(help="Sequence number to fork from")], home: HomeOpt = None) -> None:
    """Start a new thread from the state of THREAD at SEQ."""
    with _user_errors():
        new_thread = _client(home, False).fork(thread_id, at)
    sys.stdout.write(json.dumps({"thread_id": new_thread, "from": thread_id, "at": at}) + "\n")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    home: HomeOpt = None,
    memory_worker: Annotated[bool, typer.Option(help="Consolidate memory in a background thread (or STEPWISE_MEMORY_WORKER=1)")] = False,
) -> None:
    """Serve the HTTPS API's handlers over HTTP on this machine, on embedded defaults."""
    from stepwise.api.server import serve as serve_api

    if memory_worker or os.environ.get("STEPWISE_MEMORY_WORKER") == "1":
        from stepwise.memory.worker import ConsolidationWorker

        memory_client = Stepwise.embedded(home or default_home())
        ConsolidationWorker(memory_client.services.memory, memory_client.services.events).start()
    serve_api(host=host, port=port, home=home or default_home())


def _add_memory_commands() -> None:
    from stepwise.cli_memory import app as memory_app

    app.add_typer(memory_app, name="memory")


_add_memory_commands()


def main() -> None:
    sys.path.insert(0, os.getcwd())  # graphs reference code in the current project
    app()


if __name__ == "__main__":
    main()
