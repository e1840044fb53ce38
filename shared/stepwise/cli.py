"""The ``stepwise`` command line: validate, compile, draw, run, resume and inspect graphs."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from stepwise import __version__, cli_remote
from stepwise._console import Console, Table, _Console, escape
from stepwise.cli_remote import Target, with_remote
from stepwise.client import Multitask, RunResult, Stepwise, default_home
from stepwise.errors import AnswerError, ConflictingRequestError, SettingError, StepwiseError
from stepwise.extras import MissingExtra, check_graph
from stepwise.graph.answers import example
from stepwise.graph.errors import GraphError
from stepwise.graph.limits import Limits
from stepwise.graph.loader import load_file
from stepwise.graph.spec import END, GraphSpec
from stepwise.graph.topology import locate, topology
from stepwise.state.ports import IN_LINE, RunRecord
from stepwise.state.waits import deadline_of, describe_deadline

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Stepwise: agent graphs compiled to AWS Step Functions, run locally.")


out: Any = _Console(soft_wrap=True)
err: Any = _Console(stderr=True, soft_wrap=True)

HomeOpt = Annotated[Path | None, typer.Option("--home", help="State directory (default .stepwise, or $STEPWISE_HOME)")]
Output = Literal["text", "json"]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="text or json")]


DEBUG = {"on": os.environ.get("STEPWISE_DEBUG", "") not in ("", "0")}


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"stepwise {__version__}\n")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks (also: STEPWISE_DEBUG=1)")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")] = False,
) -> None:
    """Stepwise: agent graphs compiled to AWS Step Functions, run locally."""
    if debug:
        DEBUG["on"] = True


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)  # escaped: `[thing]` in a message is text
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the library's user-facing errors into one clear line on stderr and exit code 2."""
    try:
        yield
    except AnswerError as exc:
        problems = "\n".join(f"  - {p}" for p in exc.problems)
        _fail(f"the answer for {exc.node!r} was refused:\n{problems}\nanswer with: stepwise resume {exc.run_id} --input '{exc.expected}'")
    except ConflictingRequestError as exc:  # thread busy, run already answered/cancelled/running: exit 3
        _fail(str(exc), 3)
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
    except (RecursionError, ValueError) as exc:  # nested thousands deep, or an integer of thousands of digits
        _fail(f"--input is beyond the admission limits ({type(exc).__name__}); flatten it and send big numbers as strings")
    if not isinstance(value, dict):
        _fail(f"--input must be a JSON object (the initial state), not {type(value).__name__}")
    return value  # type: ignore[no-any-return]


def _client(home: Path | None, progress: bool) -> Stepwise:
    """The embedded client; a bad setting is one line naming the variable (SettingError), and only errors of the
    state directory itself (a file system or SQLite error) say so. Anything else is a bug: main() reports it."""

    def observe(event: dict[str, Any]) -> None:
        if event["kind"] == "run_started":  # the run a Ctrl-C would leave running (also with -o json)
            _running["run_id"] = str(event["run_id"])
            if progress:  # its graph, for the progress lines of its fan-outs
                _know_graph(client, _running["run_id"])
        if progress:
            _progress(event)

    with _user_errors():
        where = home or default_home()
        try:
            client = Stepwise.embedded(where, observer=observe)
            return client
        except (OSError, sqlite3.Error) as exc:
            _fail(f"cannot open the state directory {where}: {exc}")
    raise AssertionError("unreachable")


def _check_settings() -> None:
    """Read every settings class ``serve`` uses before it starts: a bad variable refuses to start, in one line
    naming each (after the start the recover thread, the scheduler and every request would fail on it)."""
    from stepwise.api.settings import ApiSettings, ServeLimits
    from stepwise.llm.settings import LLMSettings
    from stepwise.memory.settings import MemorySettings
    from stepwise.settings import Settings
    from stepwise.tools.settings import ToolSettings

    problems: list[str] = []
    for read in (
        Settings.from_env,
        ApiSettings.from_env,
        ServeLimits.from_env,
        ToolSettings.from_env,
        MemorySettings.from_env,
        LLMSettings.from_env,
        Limits.from_env,
    ):
        try:
            read()
        except SettingError as exc:  # a variable several classes read (STEPWISE_BACKEND, _EMBED_THREADS) is named once
            problems += [p for p in exc.problems if p not in problems]
    if problems:
        _fail("; ".join(problems))


_streaming: dict[str, bool] = {"open": False}
#: run id -> its graph, for the progress lines: a node that fans out says where to (the engine's route is the
#: Task's own, which is ``__end__`` for a fan-out or a planner's Map; the compiled Parallel or Map comes after it)
_graphs: dict[str, GraphSpec] = {}
_running: dict[str, str] = {}  # "run_id": the run this command started or continued last


@contextmanager
def _interruptible(client: Stepwise, run_id: str | None = None) -> Iterator[None]:
    """Ctrl-C while a run goes on: exit 130 (as before) with one line on stderr naming the run, which stays
    ``running`` in the store, and how to continue it (``stepwise resume`` goes on from its last node)."""
    if run_id is not None:
        _running["run_id"] = run_id
    try:
        yield
    except KeyboardInterrupt:
        if _streaming["open"]:
            err.file.write("\n")
            _streaming["open"] = False
        run_id = _running.get("run_id")
        status = None
        if run_id is not None:
            try:
                found = client.get_run(run_id)
                status = found.status if found is not None else None
            except Exception:  # noqa: BLE001 - the store mid-interrupt: say what we know
                status = "running"
        if run_id is not None and status == "running":
            err.print(
                f"interrupted: run {run_id} is left running; continue it with `stepwise resume {run_id}` "
                f"(or stop it with `stepwise cancel {run_id}`)",
                highlight=False,
                markup=False,
            )
        else:
            err.print("interrupted", highlight=False, markup=False)
        raise typer.Exit(130) from None


def _know_graph(client: Stepwise, run_id: str) -> None:
    """Remember the graph of ``run_id`` for its progress lines (before it runs, on the command's thread)."""
    try:
        run = client.get_run(run_id)
        if run is not None:
            _graphs[run_id] = client.graph(run.graph_ref)
    except Exception:  # noqa: BLE001 - progress lines only; without the graph they show the engine's route
        pass


def _where_next(event: dict[str, Any]) -> str:
    """Where the run goes after a node, as the progress line shows it: the fan-out's branches, a planner's
    workers then the node after its Map, the next node; nothing when only a branch, a Map worker or an
    inlined subgraph ends there (the run goes on); ``__end__`` only when the run itself ends."""
    node, route = str(event.get("node")), event.get("route")
    spec = _graphs.get(str(event.get("run_id")))
    if spec is not None:
        try:
            owner, local = locate(spec, node)
        except LookupError:
            owner = None
        if owner is not None:
            topo = topology(owner)
            if topo.fanout.get(local):
                return ", ".join(topo.fanout[local])
            if topo.workers.get(local):
                workers = " or ".join(dict.fromkeys(topo.workers[local].values()))
                then = f", then {route}" if route and route != END else ""
                return f"{workers} per subtask{then}"
    if not route:
        return ""
    if route == END and (event.get("scope") or "/" in node):  # a branch, a worker or a subgraph ends, not the run
        return ""
    return str(route)


def _progress(event: dict[str, Any]) -> None:
    kind = event["kind"]
    if kind == "llm_delta":  # token deltas of a streaming agent (config: {stream: true}), as they arrive
        if not _streaming["open"]:
            err.file.write(f"  {event.get('node')}: ")
            _streaming["open"] = True
        err.file.write(str(event.get("text", "")))
        err.file.flush()
        return
    if _streaming["open"]:
        err.file.write("\n")
        _streaming["open"] = False
    e = {k: escape(str(v)) for k, v in event.items()}  # values are text, never rich markup
    where = f" [dim]({e['scope']})[/dim]" if event.get("scope") else ""
    if kind == "run_started":
        err.print(f"[bold]run[/bold] {e['run_id']} on {e['thread_id']} ({e['graph']})", highlight=False)
    elif kind == "node_finished":
        keys = escape(", ".join(sorted(event.get("update") or {})) or "-")
        goes = _where_next(event)
        route = f" → {escape(goes)}" if goes else ""
        err.print(
            f"  [green]✓[/green] {e['node']}{where} [dim]{event['ms']:.1f} ms, wrote {keys}, seq {event['seq']}[/dim]{route}",
            highlight=False,
        )
    elif kind == "node_failed":
        err.print(f"  [red]✗[/red] {e['node']}{where}: {e['error']}", highlight=False)
    elif kind == "waiting":
        err.print(f"  [yellow]⏸[/yellow] {e['node']} waits for input: {e['prompt']}", highlight=False)


def _answer_example(client: Stepwise, result: RunResult) -> str:
    """What `stepwise resume` should be given for the node the run waits at (from its `input:` schema)."""
    if not result.waiting:
        return "{...}"
    run = client.get_run(result.run_id)
    if run is None:
        return "{...}"
    spec, node = locate(client.graph(run.graph_ref), result.waiting["node"])
    return example(spec, node)


def _report(result: RunResult, output: str, answer: str = "{...}") -> None:
    if output == "json":
        data = result.to_json()
        if data.get("error") and not DEBUG["on"]:
            data["error"] = _without_library_frames(data["error"])
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        colour = {"succeeded": "green", "waiting": "yellow", "failed": "red"}.get(result.status, "white")
        out.print(f"[{colour}]{result.status}[/{colour}]  run {result.run_id}  thread {result.thread_id}", highlight=False)
        if result.waiting:
            out.print(
                f"waiting at {result.waiting['node']}: {result.waiting['prompt']}\n"
                f"{_deadline_line(result.waiting)}"
                f"continue with: stepwise resume {result.run_id} --input '{answer}'",
                highlight=False,
                markup=False,
            )
        out.print_json(json.dumps(result.state, default=str))
        if result.error:
            _explain(result.error)
    if result.status == "failed":
        raise typer.Exit(1)


def _deadline_line(waiting: dict[str, Any]) -> str:
    """When a human wait with ``config.timeout_seconds`` times out (empty for one without), and who enforces it."""
    deadline = deadline_of(waiting)
    if deadline is None:
        return ""
    return (
        f"answer by {describe_deadline(deadline)} (config.timeout_seconds: {waiting.get('timeout_seconds')}); after that the run "
        "fails with States.Timeout (on time under `stepwise serve`, else at the next `stepwise runs` or `stepwise resume`)\n"
    )


_LIBRARY = str(Path(__file__).resolve().parent)


def _without_library_frames(error: dict[str, Any]) -> dict[str, Any]:
    """A failed run's error as ``-o json`` shows it without ``--debug``: no traceback, and the ``cause`` (the
    task's error as Step Functions records it) without the frames inside the stepwise package. The frames of
    the user's code stay (``where`` names the innermost one)."""
    shown = {k: v for k, v in error.items() if k != "traceback"}
    cause = shown.get("cause")
    try:
        parsed = json.loads(cause) if isinstance(cause, str) else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("stackTrace"), list):
        frames = [f for f in parsed["stackTrace"] if not (isinstance(f, str) and _library_frame(f))]
        parsed["stackTrace"] = frames
        shown["cause"] = json.dumps(parsed)
    return shown


def _library_frame(frame: str) -> bool:
    """``  File "…/stepwise/runtime/step.py", line 127, in step …``: a frame of this package."""
    if not frame.lstrip().startswith('File "'):
        return False
    path = frame.split('"', 2)[1]
    try:
        return str(Path(path).resolve()).startswith(_LIBRARY + os.sep)
    except (OSError, ValueError):
        return False


def _explain(error: dict[str, Any]) -> None:
    """The real cause of a failed run on stderr: the node, the message, where in the user's code, the fix."""
    node = error.get("node")
    message = error.get("message") or error.get("cause") or error.get("error") or "unknown error"
    head = f"node {node!r} failed: {message}" if node else f"the run failed outside any node: {message}"
    lines = [head]
    if error.get("where"):
        lines.append(f"  at {error['where']}")
    if error.get("fix"):
        lines.append(f"  fix: {error['fix']}")
    err.print(f"[red]error:[/red] {escape(lines[0])}", highlight=False)
    for line in lines[1:]:
        err.print(line, highlight=False, markup=False)
    if error.get("traceback"):
        if DEBUG["on"]:
            err.print(error["traceback"], highlight=False, markup=False)
        else:
            err.print("  (run with --debug for the full traceback)", highlight=False, markup=False)


@app.command()
def validate(file: Path) -> None:
    """Check a graph file; print what is wrong and how to fix it."""
    spec = _load(file)
    out.print(f"[green]ok[/green] {file}: graph {spec.name!r}, {len(spec.graph.nodes)} nodes, version {spec.ref}", highlight=False)


@app.command(name="compile")
def compile_(file: Path, step_arn: Annotated[str | None, typer.Option(help="ARN of the step Lambda")] = None) -> None:
    """Print the Amazon States Language JSON the graph compiles to."""
    spec = _load(file)
    from stepwise.asl.compiler import compile_graph, to_json

    asl = compile_graph(spec, step_arn=step_arn) if step_arn else compile_graph(spec)
    sys.stdout.write(to_json(asl) + "\n")


@app.command()
def graph(file: Path) -> None:
    """Print the graph as a Mermaid flowchart."""
    from stepwise.graph.mermaid import to_mermaid

    sys.stdout.write(to_mermaid(_load(file)))


def _python_tool_ready() -> bool:
    """Whether a graph's ``python`` tool could run here (imported only for a graph that declares it)."""
    from stepwise.tools.sandbox import configured_here

    return configured_here()


@app.command()
@with_remote()
def run(
    file: Path,
    input: Annotated[str | None, typer.Option("--input", "-i", help="Initial state as a JSON object, or @file.json")] = None,
    thread: Annotated[
        str | None, typer.Option(help="Run on this thread: continue it from its state, or start a new thread with this id")
    ] = None,
    output: OutputOpt = "text",
    home: HomeOpt = None,
    multitask: Annotated[
        Multitask | None,
        typer.Option(
            help="Double texting, when --thread has a run in flight: reject (refuse, also a waiting run), enqueue (run after "
            "it), interrupt (cancel it, go on from its state), rollback (cancel it, discard its writes)",
        ),
    ] = None,
    remote: Target | None = None,
) -> None:
    """Run a graph locally, showing progress per node, then the final state (with --url: on that API)."""
    if remote is not None:
        cli_remote.run(remote, file, input, thread, multitask)
        return
    spec = _load(file)
    state = _parse_input(input)
    with _user_errors():
        check_graph(spec, sandbox_ready=_python_tool_ready)  # a missing extra fails here, in one line, before the run starts
    client = _client(home, progress=output != "json")
    if thread is not None and output != "json" and client.head(thread) == 0:  # a typo would start from nothing
        err.print(f"no thread {thread!r} yet: starting a new thread with that id", highlight=False, markup=False)
    with _interruptible(client):
        with _user_errors():
            if multitask == "enqueue" and thread is not None:
                queued = client.enqueue_if_busy(spec, state, thread_id=thread)
                if queued is not None:
                    _report_queued(client, queued, output)
                    return
            elif multitask is not None and thread is not None:
                client.make_room(thread, multitask, cause="run on the thread by `stepwise run`")
            result = client.run(spec, state, thread_id=thread)
        _report_and_drain(client, result, output, _answer_example(client, result))


def _report_queued(client: Stepwise, queued: RunRecord, output: str) -> None:
    """A run recorded behind the runs in flight on its thread; it runs when they end (``_drain``)."""
    ahead = [r.run_id for r in client.services.runs.thread_runs(queued.thread_id, IN_LINE) if r.run_id != queued.run_id]
    if output == "json":
        data = {"run_id": queued.run_id, "thread_id": queued.thread_id, "status": "queued", "behind": ahead}
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        out.print(f"[yellow]queued[/yellow]  run {queued.run_id}  thread {queued.thread_id}", highlight=False)
        out.print(
            f"behind {', '.join(ahead)}: it runs when they end (`stepwise resume`/`cancel` of the run in flight starts it)",
            highlight=False,
            markup=False,
        )
    _drain(client, queued.thread_id)  # the run before it may have ended between the look and the put


def _report_and_drain(client: Stepwise, result: RunResult, output: str, answer: str = "{...}") -> None:
    """A command that ended a run (run, resume, redrive) reports it, then starts the thread's queued runs, even
    when the report exits non-zero for a failed run."""
    try:
        _report(result, output, answer)
    finally:
        _drain(client, result.thread_id)


def _drain(client: Stepwise, thread_id: str) -> None:
    """The CLI's run-end path, as serve's: once nothing is in flight on the thread, run its queued runs (double
    texting ``enqueue``), oldest first, one at a time; each shows its progress and one line with its outcome."""
    with _user_errors():
        for run_id in client.drain_queue(thread_id):
            run = client.get_run(run_id)
            status = run.status if run is not None else "unknown"
            err.print(f"[bold]queued run[/bold] {run_id} on {thread_id}: {status}", highlight=False)


@app.command()
@with_remote()
def resume(
    run_id: str,
    input: Annotated[str | None, typer.Option("--input", "-i", help="The human's answer as a JSON object")] = None,
    output: OutputOpt = "text",
    home: HomeOpt = None,
    interrupt: Annotated[
        str | None, typer.Option("--interrupt", help="The interrupt id being answered (shown while waiting); a stale answer is refused")
    ] = None,
    remote: Target | None = None,
) -> None:
    """Continue a run waiting at a human node (or one whose process died)."""
    if remote is not None:
        cli_remote.resume(remote, run_id, input)
        return
    update = _parse_input(input)
    client = _client(home, progress=output != "json")
    _know_graph(client, run_id)
    with _interruptible(client, run_id):
        with _user_errors():
            result = client.resume(run_id, update if input is not None else None, interrupt_id=interrupt)
        _report_and_drain(client, result, output, _answer_example(client, result))


@app.command()
def redrive(run_id: str, output: OutputOpt = "text", home: HomeOpt = None) -> None:
    """Re-run a failed run from its failed node (completed nodes are not run again)."""
    client = _client(home, progress=output != "json")
    _know_graph(client, run_id)
    with _interruptible(client, run_id):
        with _user_errors():
            result = client.redrive(run_id)
        _report_and_drain(client, result, output)


@app.command()
@with_remote()
def runs(
    thread: Annotated[str | None, typer.Option(help="Only runs of this thread")] = None,
    limit: int = 20,
    output: OutputOpt = "text",
    home: HomeOpt = None,
    stale: Annotated[bool, typer.Option("--stale", help="Only runs whose process died (continue them with `stepwise resume`)")] = False,
    cursor: Annotated[str | None, typer.Option(help="With --url: next_cursor of the previous page")] = None,
    remote: Target | None = None,
) -> None:
    """List recent runs (with --url: your runs on that API, newest first, as JSON)."""
    if remote is not None:
        cli_remote.runs(remote, thread, limit, cursor)
        return
    client = _client(home, False)
    with _user_errors():
        client.expire_overdue()  # no server keeps time here: waits past their deadline fail now (States.Timeout)
    records = client.stale_runs() if stale else client.runs(thread_id=thread, limit=limit)
    if output == "json":
        sys.stdout.write(json.dumps([r.model_dump(exclude={"start_cursor"}) for r in records], default=str) + "\n")
        return
    table = Table()
    table.add_column("run", no_wrap=True, min_width=max((len(r.run_id) for r in records), default=3))  # ids in full: they are
    table.add_column("thread", no_wrap=True, min_width=max((len(r.thread_id) for r in records), default=6))  # what you paste
    table.add_column("graph", overflow="fold")
    table.add_column("status")
    table.add_column("steps")
    for r in records:
        table.add_row(r.run_id, r.thread_id, r.graph_ref, r.status, str(r.steps))
    (out if out.is_terminal else Console(width=200)).print(table)  # piped or captured: never fold an id


@app.command()
@with_remote()
def history(thread_id: str, output: OutputOpt = "text", home: HomeOpt = None, remote: Target | None = None) -> None:
    """Every event of a thread, in order (a run id shows that run's events; with --url: JSON lines from that API)."""
    if remote is not None:
        cli_remote.history(remote, thread_id)
        return
    client = _client(home, False)
    with _user_errors():
        run = client.get_run(thread_id) if client.head(thread_id) == 0 else None
        if run is not None:  # a run id, as with --url: that run's events, and the thread it is on
            events = client.run_events(thread_id)
            if output != "json":
                err.print(
                    f"run {run.run_id} is on thread {run.thread_id}; these are its events "
                    f"(every run on the thread: stepwise history {run.thread_id})",
                    highlight=False,
                    markup=False,
                )
        else:
            events = client.history(thread_id)
    if output == "json":
        sys.stdout.write(json.dumps([e.to_json() for e in events], default=str) + "\n")
        return
    table = Table("seq", "type", "node", "scope", "run", "data")
    for e in events:
        data = json.dumps(e.data.get("update", e.data), default=str)
        table.add_row(str(e.seq), e.type, e.node or "", e.scope, e.run_id, data[:80] + ("…" if len(data) > 80 else ""))
    out.print(table)


@app.command()
@with_remote()
def state(
    thread_id: str,
    at: Annotated[int | None, typer.Option(help="Sequence number (default: latest)")] = None,
    home: HomeOpt = None,
    remote: Target | None = None,
) -> None:
    """The state of a thread, now or at any seq (time travel)."""
    if remote is not None:
        cli_remote.state(remote, thread_id, at)
        return
    with _user_errors():
        seq, value = _client(home, False).state(thread_id, at=at)
    sys.stdout.write(json.dumps({"thread_id": thread_id, "seq": seq, "state": value}, default=str, indent=2) + "\n")


@app.command()
@with_remote()
def cancel(run_id: str, output: OutputOpt = "text", home: HomeOpt = None, remote: Target | None = None) -> None:
    """Cancel a running or waiting run (it stops before its next node)."""
    if remote is not None:
        cli_remote.cancel(remote, run_id)
        return
    client = _client(home, output != "json")
    with _user_errors():
        record = client.cancel(run_id)
    if output == "json":
        sys.stdout.write(record.model_dump_json(exclude={"start_cursor"}) + "\n")
    else:
        out.print(f"run {record.run_id} {record.status}")
    with _interruptible(client):  # the thread's queued runs start now
        _drain(client, record.thread_id)


@app.command()
def fork(thread_id: str, at: Annotated[int, typer.Option(help="Sequence number to fork from")], home: HomeOpt = None) -> None:
    """Start a new thread from the state of THREAD at SEQ."""
    with _user_errors():
        new_thread = _client(home, False).fork(thread_id, at)
    sys.stdout.write(json.dumps({"thread_id": new_thread, "from": thread_id, "at": at}) + "\n")


examples_app = typer.Typer(
    help="The example graphs shipped with Stepwise: list them, copy one out.", invoke_without_command=True, no_args_is_help=False
)
app.add_typer(examples_app, name="examples")


@examples_app.callback()
def examples(ctx: typer.Context) -> None:
    """List the example graphs (``stepwise examples copy NAME`` copies one into the current directory)."""
    if ctx.invoked_subcommand is not None:
        return
    from stepwise.catalog import list_examples

    table = Table("example", "needs", "what it shows")
    for shipped in list_examples():
        needs = ", ".join(f"stepwise[{e}]" for e in shipped.extras) or "-"
        better = "".join(f" (better with stepwise[{e}])" for e in shipped.better_with)
        table.add_row(shipped.name, escape(needs + better), escape(shipped.summary))
    out.print(table)
    out.print("copy one out with: stepwise examples copy NAME [--to DIR], then: stepwise run NAME.yaml", highlight=False)


@examples_app.command("copy")
def examples_copy(
    name: str,
    to: Annotated[Path, typer.Option("--to", help="Directory to copy into (default: the current directory)")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files")] = False,
) -> None:
    """Copy an example graph (and any graph it runs as a subgraph) into a directory."""
    from stepwise.catalog import copy_example, find

    try:
        main_file = to / find(name).path.name
        written = copy_example(name, to, overwrite=force)
    except (KeyError, FileExistsError) as exc:
        _fail(str(exc.args[0]))
        return
    for path in written:
        out.print(f"wrote {path}", highlight=False, markup=False)
    if main_file not in written:
        out.print(f"{main_file} is already there, with the same content", highlight=False, markup=False)
    out.print(f"run it with: stepwise run {main_file}", highlight=False, markup=False)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    home: HomeOpt = None,
    memory_worker: Annotated[bool, typer.Option(help="Consolidate memory in a background thread (or STEPWISE_MEMORY_WORKER=1)")] = False,
    memory_interval: Annotated[float, typer.Option(min=0.1, help="Seconds between the memory worker's passes")] = 60.0,
) -> None:
    """Serve the HTTPS API's handlers over HTTP on this machine, on embedded defaults."""
    import threading

    from stepwise.api.server import serve as serve_api

    _check_settings()  # a bad STEPWISE_* setting refuses to start in one line
    home = home or default_home()
    if memory_worker or os.environ.get("STEPWISE_MEMORY_WORKER") == "1":
        from stepwise.extras import MissingExtra, needs

        try:
            with needs("memory", "the memory worker (serve --memory-worker)"):  # names 'memory' even for numpy (ALSO_IN)
                from stepwise.memory.service import MemoryServices
                from stepwise.memory.worker import ConsolidationWorker
        except MissingExtra as exc:
            _fail(str(exc))
            return
        client = Stepwise.embedded(home)  # reads the settings (engine, tools, memory) from the environment, once
        memory = MemoryServices(home=home, settings=client.services.memory_settings)
        ConsolidationWorker(memory, client.services.events, interval=memory_interval).start()
    # runs whose process died (a crash, a kill) are continued from the log, beside the server starting up
    threading.Thread(target=lambda: Stepwise.embedded(home).recover_stale(), name="stepwise-recover", daemon=True).start()
    with _user_errors():  # e.g. STEPWISE_JWT_ISSUER without the extra PyJWT comes with: one line naming it
        try:
            serve_api(host=host, port=port, home=home)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                _fail(f"port {port} on {host} is in use (another `stepwise serve`?); pass --port with a free port")
            if exc.errno in (errno.EACCES, errno.EADDRNOTAVAIL):
                _fail(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --host or --port")
            raise


def _add_memory_commands() -> None:
    from stepwise.cli_memory import app as memory_app

    app.add_typer(memory_app, name="memory")


_add_memory_commands()


def _add_subcommands() -> None:
    from stepwise.cli_roles import roles_app

    app.add_typer(roles_app, name="roles")
    from stepwise.cli_remote import app as remote_app

    app.add_typer(remote_app, name="remote")


_add_subcommands()


# -- API keys ---------------------------------------------------------------------------------------
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys for `stepwise serve` and the deployed API.")
app.add_typer(keys_app, name="keys")
TenantOpt = Annotated[str, typer.Option(help="Tenant the key belongs to")]


@keys_app.command("create")
def keys_create(tenant: TenantOpt, name: Annotated[str, typer.Option(help="A label, e.g. who uses it")] = "", home: HomeOpt = None) -> None:
    """Create a key and print it once (only its salted hash is stored)."""
    from stepwise.api import keys

    keys.create(tenant=tenant, name=name, home=home)


@keys_app.command("list")
def keys_list(tenant: TenantOpt, home: HomeOpt = None) -> None:
    """List a tenant's keys (never their secrets)."""
    from stepwise.api import keys

    keys.list_(tenant=tenant, home=home)


@keys_app.command("revoke")
def keys_revoke(key_id: str, tenant: TenantOpt, home: HomeOpt = None) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from stepwise.api import keys

    keys.revoke(key_id=key_id, tenant=tenant, home=home)


def main() -> None:
    sys.path.insert(0, os.getcwd())  # graphs reference code in the current project
    args = sys.argv[1:]
    options = args[: args.index("--")] if "--" in args else args
    if "--debug" in options:  # `stepwise run g.yaml --debug` works as well as `stepwise --debug run g.yaml`
        args.remove("--debug")
        args.insert(0, "--debug")
        DEBUG["on"] = True
    try:
        app(args=args, prog_name="stepwise")
    except (MissingExtra, SettingError) as exc:  # raised outside a command's own error handling: one line, exit 2
        if DEBUG["on"]:
            raise
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except Exception as exc:  # a bug or an environment problem: one line, the traceback only with --debug
        if DEBUG["on"]:
            raise
        err.print(f"[red]error:[/red] {escape(f'{type(exc).__name__}: {exc}')}", highlight=False)
        err.print("(run again with --debug for the full traceback)", highlight=False, markup=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
