"""Live run streams: server-sent events from ``GET /runs/{id}/stream``, resumable from the event log.

One stream per run carries two kinds of messages:

- **durable** — every event of the run's log (``run_started``, ``node_update`` = node finished with its
  state delta, ``llm_call``, ``tool_call``, ``interrupt`` = waiting for a human, ``node_failed``,
  ``run_finished``/``run_failed``, and anything other writers log, such as guardrail decisions). Each
  carries ``id: <seq>``, so a client that reconnects with ``Last-Event-ID`` (or ``?after=<seq>``) gets
  exactly what it missed, read back from the log;
- **ephemeral** — what the engine's observer reports between log writes: ``node_started`` and
  ``llm_delta`` (token deltas of a streaming agent). They have no id: a reconnecting client loses
  the deltas it missed, never the result (the ``llm_call`` event holds the whole response).

The stream ends with ``event: end`` once the run is ``succeeded``, ``failed`` or ``cancelled``; a
waiting run keeps its stream open (heartbeat comments every 15 s) until it is resumed and ends.

Wiring: ``RunStreams.observe`` is the engine client's observer (``build_client(observer=...)``);
the engine calls it on worker threads and it hands each event to the subscribers' queues on the
event loop. Runs executed by another process (the CLI, Step Functions) are still streamed: the
stream re-reads the log every ``poll_seconds`` as well as whenever the observer reports progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from stepwise.api.asgi import Receive, Send, send_response
from stepwise.api.errors import ApiError, proxy_error
from stepwise.api.models import public_event
from stepwise.state.events import Event

if TYPE_CHECKING:
    from stepwise.api.facade import StepwiseApi
    from stepwise.state.ports import RunRecord

STREAM_PATH = re.compile(r"^/runs/([A-Za-z0-9_.:-]{1,128})/stream$")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
#: Observer kinds that are not in the log: forwarded as they come.
EPHEMERAL = frozenset({"node_started", "llm_delta", "tool_started", "guardrail"})
QUEUE_SIZE = 1024


def sse(data: Any, *, event: str | None = None, id: int | None = None) -> bytes:
    """One server-sent event frame (data is JSON on a single line, so no field can break the framing)."""
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if event:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str, ensure_ascii=False))
    return ("\n".join(lines) + "\n\n").encode()


def event_frame(e: Event) -> bytes:
    return sse(public_event(e), event=e.type, id=e.seq)


def resume_after(last_event_id: str | None, after: str | None) -> int:
    """The seq a stream resumes after: ``Last-Event-ID`` (what an EventSource sends on reconnect) or ``?after=``."""
    raw = last_event_id if last_event_id not in (None, "") else after
    if raw in (None, ""):
        return 0
    assert raw is not None
    if not raw.strip().isdigit() or len(raw.strip()) > 18:
        raise ApiError(422, "validation_error", "Last-Event-ID / after must be an event seq (a non-negative integer)")
    return int(raw.strip())


def preflight(api: StepwiseApi, event: dict[str, Any], run_id: str) -> tuple[RunRecord, int] | dict[str, Any]:
    """Admit a stream request like any route: the run and the seq to resume after, or the error response."""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    admitted = api.admit("GET", str(event.get("path")), headers, event)
    if isinstance(admitted, dict):
        return admitted
    try:
        run = api.run_of(admitted[0].tenant, run_id)
        after = resume_after(headers.get("last-event-id"), (event.get("queryStringParameters") or {}).get("after"))
    except ApiError as exc:
        return proxy_error(exc.status, exc.code, exc.message)
    return run, after


def backlog(api: StepwiseApi, run_id: str, thread_id: str, after: int) -> tuple[list[Event], str]:
    """The run's log events after ``after`` and the run's status. The status is read *first*: the engine
    appends a run's last event before it sets the final status, so a terminal status read before the
    events guarantees the events read include the last one (read the other way round, a run finishing
    between the two reads would end the stream without its `run_finished`)."""
    run = api.client.get_run(run_id)
    events = [e for e in api.client.services.events.read(thread_id, after=after) if e.run_id == run_id]
    return events, (run.status if run is not None else "failed")


class RunStreams:
    """Subscribers per run id, fed by the engine's observer; serves the SSE responses."""

    def __init__(self, *, poll_seconds: float = 1.0, heartbeat_seconds: float = 15.0, readers: int = 4) -> None:
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="stepwise-stream")
        self.open_streams = 0

    # -- feeding -------------------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def attach(self, api: StepwiseApi) -> None:
        """Chain onto an existing client's observer (for an API built elsewhere)."""
        api.client.services.also_observe(self.observe)

    def observe(self, event: dict[str, Any]) -> None:
        """The engine's observer: called on the thread that runs the step."""
        run_id = event.get("run_id")
        loop = self._loop
        if not run_id or loop is None or run_id not in self._subscribers:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody is listening
            loop.call_soon_threadsafe(self._deliver, str(run_id), dict(event))

    def _deliver(self, run_id: str, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers.get(run_id, ())):
            if queue.full():  # a slow reader loses ephemeral deltas, never log events (it re-reads the log)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)

    def _subscribe(self, run_id: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        with self._lock:
            self._subscribers.setdefault(run_id, set()).add(queue)
        return queue

    def _unsubscribe(self, run_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            queues = self._subscribers.get(run_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._subscribers[run_id]

    @staticmethod
    def _drain(queue: asyncio.Queue[dict[str, Any]], ephemeral_only: bool = True) -> list[dict[str, Any]]:
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return [e for e in items if e.get("kind") in EPHEMERAL] if ephemeral_only else items

    # -- serving -------------------------------------------------------------------------------
    @staticmethod
    def matches(path: str) -> bool:
        return STREAM_PATH.match(path) is not None

    async def serve(self, adapter: Any, event: dict[str, Any], headers: dict[str, str], send: Send, receive: Receive) -> None:
        """Authenticate like any route, then stream until the run ends or the client goes away."""
        api: StepwiseApi = adapter.api
        match = STREAM_PATH.match(event["path"])
        assert match is not None
        run_id = match.group(1)
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        checked = await loop.run_in_executor(self._readers, preflight, api, event, run_id)
        if isinstance(checked, dict):  # an error response (401, 404, 429, 422)
            await send_response(send, int(checked["statusCode"]), checked.get("headers") or {}, str(checked.get("body") or "").encode())
            return
        run, after = checked
        queue = self._subscribe(run_id)  # before the first read: nothing falls between the read and the feed
        self.open_streams += 1
        disconnected = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b"retry: 1000\n\n", "more_body": True})
            idle, reread = 0.0, True
            while not disconnected.is_set():
                if reread:
                    events, status = await loop.run_in_executor(self._readers, backlog, api, run_id, run.thread_id, after)
                    # live events that came in during the read happened before what it returned: send them first
                    early = self._drain(queue)
                    if events or early:
                        after = events[-1].seq if events else after
                        body = b"".join(sse(e, event=str(e.get("kind"))) for e in early) + b"".join(event_frame(e) for e in events)
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                    if status in TERMINAL:
                        await send({"type": "http.response.body", "body": sse({"run_id": run_id, "status": status}, event="end")})
                        return
                # wait for progress: an observer event, the poll interval, or the client leaving
                try:
                    async with asyncio.timeout(self.poll_seconds):  # Queue.get is cancellation-safe: no item is lost
                        first = await queue.get()
                except TimeoutError:
                    reread = True
                    idle += self.poll_seconds
                    if idle >= self.heartbeat_seconds:
                        idle = 0.0
                        await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
                    continue
                idle = 0.0
                pending = [first, *self._drain(queue, ephemeral_only=False)]
                frames = [sse(e, event=str(e.get("kind"))) for e in pending if e.get("kind") in EPHEMERAL]
                if frames:
                    await send({"type": "http.response.body", "body": b"".join(frames), "more_body": True})
                reread = any(e.get("kind") not in EPHEMERAL for e in pending)  # deltas alone: the log did not move
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
            self.open_streams -= 1
            self._unsubscribe(run_id, queue)
