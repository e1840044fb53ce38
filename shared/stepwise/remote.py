"""A client for the Stepwise HTTPS API — `stepwise serve` on a laptop or the deployed API Gateway alike.

    from stepwise.remote import Client

    with Client("http://127.0.0.1:8080", api_key="swk_default_…") as sw:
        sw.register(yaml=open("triage.yaml").read())
        run = sw.execute("triage", {"ticket": "refund"}, background=True)
        for event in sw.stream(run.run_id):          # live: log events and token deltas
            print(event.event, event.data)
        print(sw.run(run.run_id).state)

``AsyncClient`` has the same methods as coroutines (``stream`` is an async iterator). Answers are the
API's own pydantic models (``stepwise.api.models``); an error answer raises ``RemoteError`` with the
API's status, code and message. ``stream`` reconnects after a dropped connection with
``Last-Event-ID``, so no log event is lost. Authentication: ``api_key`` (``x-api-key``) or ``token``
(a JWT, ``Authorization: Bearer``). Needs ``httpx``: the ``remote`` extra (``llm`` installs it too).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from stepwise.api import models as m


class RemoteError(Exception):
    """The API answered with an error: ``status`` (HTTP), ``code`` and ``message`` from its error body."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


@dataclass
class StreamEvent:
    """One server-sent event of a run stream: ``id`` (the log seq) is None for live-only events (token deltas)."""

    event: str
    data: dict[str, Any]
    id: int | None = None


@dataclass
class _SseParser:
    frame: dict[str, str] = field(default_factory=dict)

    def feed(self, line: str) -> StreamEvent | None:
        if line == "":
            frame, self.frame = self.frame, {}
            if "data" not in frame:
                return None
            raw_id = frame.get("id")
            return StreamEvent(event=frame.get("event", "message"), data=json.loads(frame["data"]), id=int(raw_id) if raw_id else None)
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        self.frame[name] = self.frame[name] + "\n" + value if name == "data" and name in self.frame else value
        return None


def _httpx() -> Any:
    from stepwise.extras import needs

    with needs("remote", "the Python client (stepwise.remote)"):  # MissingExtra (an ImportError) naming the 'remote' extra
        import httpx
    return httpx


def _headers(api_key: str | None, token: str | None) -> dict[str, str]:
    headers = {"accept": "application/json", "user-agent": "stepwise-remote"}
    if api_key:
        headers["x-api-key"] = api_key
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


def _raise_for(response: Any) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        raise RemoteError(response.status_code, error.get("code", "error"), error.get("message", ""), error.get("details"))
    except (ValueError, KeyError, TypeError):
        raise RemoteError(response.status_code, "http_error", response.text[:500]) from None


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class _Req(Generic[T]):
    """One API call, built once for both clients: the answer's model, method, path, JSON body, query."""

    model: type[T]
    method: str
    path: str
    body: Any = None
    params: dict[str, Any] | None = None


class _Requests:
    """The request builders ``Client`` and ``AsyncClient`` share (they differ only in how they send)."""

    @staticmethod
    def register(yaml: str | None, graph: dict[str, Any] | None, description: str) -> tuple[_Req[m.VersionResult], _Req[m.VersionResult]]:
        """Register, and the add-a-version fallback when the agent exists."""
        body = _body(yaml=yaml, graph=graph, description=description)
        return _Req(m.VersionResult, "POST", "/agents", body), _Req(
            m.VersionResult, "POST", f"/agents/{_graph_name(yaml, graph)}/versions", body
        )

    @staticmethod
    def execute(agent_id: str, input: dict[str, Any] | None, **fields: Any) -> _Req[m.Run]:
        return _Req(m.Run, "POST", f"/agents/{agent_id}/execute", _body(input=input or {}, **fields))

    @staticmethod
    def runs(limit: int, cursor: str | None, filters: dict[str, Any]) -> _Req[m.RunList]:
        return _Req(m.RunList, "GET", "/runs", params=_body(limit=limit, cursor=cursor, **filters))

    @staticmethod
    def thread(thread_id: str, after: int, limit: int) -> _Req[m.ThreadEvents]:
        return _Req(m.ThreadEvents, "GET", f"/threads/{thread_id}/events", params={"after": after, "limit": limit})

    @staticmethod
    def resume(run_id: str, input: dict[str, Any] | None, wait_seconds: float | None) -> _Req[m.Run]:
        return _Req(m.Run, "POST", f"/runs/{run_id}/resume", _body(input=input or {}, wait_seconds=wait_seconds))

    @staticmethod
    def redrive(run_id: str, wait_seconds: float | None) -> _Req[m.Run]:
        return _Req(m.Run, "POST", f"/runs/{run_id}/redrive", _body(wait_seconds=wait_seconds))

    @staticmethod
    def events(run_id: str, after: int, limit: int) -> _Req[m.EventsPage]:
        return _Req(m.EventsPage, "GET", f"/runs/{run_id}/events", params={"after": after, "limit": limit})

    @staticmethod
    def state(thread_id: str, at: int | None) -> _Req[m.ThreadState]:
        return _Req(m.ThreadState, "GET", f"/threads/{thread_id}/state", params=_body(at=at))

    @staticmethod
    def stream_headers(last: int | None) -> dict[str, str]:
        return {"accept": "text/event-stream", **({"last-event-id": str(last)} if last is not None else {})}


class Client:
    """Synchronous client (httpx). ``transport`` lets tests pass ``httpx.ASGITransport``/``MockTransport``."""

    def __init__(
        self, url: str, *, api_key: str | None = None, token: str | None = None, timeout: float = 60.0, transport: Any = None
    ) -> None:
        httpx = _httpx()
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=_headers(api_key, token), timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, req: _Req[T]) -> T:
        response = self._http.request(req.method, req.path, json=req.body, params=req.params)
        _raise_for(response)
        return req.model.model_validate(response.json())

    # -- agents ----------------------------------------------------------------------------------
    def register(self, *, yaml: str | None = None, graph: dict[str, Any] | None = None, description: str = "") -> m.VersionResult:
        """Register an agent, or add a version if it exists (``live`` moves to it)."""
        first, fallback = _Requests.register(yaml, graph, description)
        try:
            return self._send(first)
        except RemoteError as exc:
            if exc.code != "agent_exists":
                raise
        return self._send(fallback)

    def agents(self) -> m.AgentList:
        return self._send(_Req(m.AgentList, "GET", "/agents"))

    def agent(self, agent_id: str) -> m.Agent:
        return self._send(_Req(m.Agent, "GET", f"/agents/{agent_id}"))

    # -- runs ------------------------------------------------------------------------------------
    def execute(
        self,
        agent_id: str,
        input: dict[str, Any] | None = None,
        *,
        thread_id: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        wait_seconds: float | None = None,
        background: bool | None = None,
        multitask: str | None = None,
    ) -> m.Run:
        req = _Requests.execute(
            agent_id,
            input,
            thread_id=thread_id,
            version=version,
            alias=alias,
            wait_seconds=wait_seconds,
            background=background,
            multitask=multitask,
        )
        return self._send(req)

    def runs(self, *, limit: int = 50, cursor: str | None = None, **filters: Any) -> m.RunList:
        """A page of your runs, newest first (``next_cursor`` continues); filters: status, agent, since,
        until, min_cost, max_cost (the query parameters of ``GET /runs``)."""
        return self._send(_Requests.runs(limit, cursor, filters))

    def thread(self, thread_id: str, after: int = 0, limit: int = 500) -> m.ThreadEvents:
        """A page of a thread's timeline (every run's events by seq) and its runs."""
        return self._send(_Requests.thread(thread_id, after, limit))

    def thread_history(self, thread_id: str) -> list[m.EventOut]:
        """Every event of the thread, following the pages."""
        out: list[m.EventOut] = []
        after: int | None = 0
        while after is not None:
            page = self.thread(thread_id, after=after, limit=1000)
            out.extend(page.events)
            after = page.next_after
        return out

    def run(self, run_id: str) -> m.Run:
        return self._send(_Req(m.Run, "GET", f"/runs/{run_id}"))

    def resume(self, run_id: str, input: dict[str, Any] | None = None, *, wait_seconds: float | None = None) -> m.Run:
        return self._send(_Requests.resume(run_id, input, wait_seconds))

    def redrive(self, run_id: str, *, wait_seconds: float | None = None) -> m.Run:
        """Re-run a failed run from its failed node (``POST /runs/{id}/redrive``)."""
        return self._send(_Requests.redrive(run_id, wait_seconds))

    def cancel(self, run_id: str) -> m.Run:
        return self._send(_Req(m.Run, "POST", f"/runs/{run_id}/cancel"))

    def events(self, run_id: str, after: int = 0, limit: int = 200) -> m.EventsPage:
        return self._send(_Requests.events(run_id, after, limit))

    def history(self, run_id: str) -> list[m.EventOut]:
        """Every event of the run, following the pages."""
        out: list[m.EventOut] = []
        after: int | None = 0
        while after is not None:
            page = self.events(run_id, after=after, limit=1000)
            out.extend(page.events)
            after = page.next_after
        return out

    def stream(self, run_id: str, *, last_event_id: int | None = None, reconnects: int = 5) -> Iterator[StreamEvent]:
        """The run's live events until ``end``; reconnects (up to ``reconnects`` times) from the last id seen."""
        httpx = _httpx()
        last = last_event_id
        for _ in range(reconnects + 1):
            parser = _SseParser()
            try:
                with self._http.stream(
                    "GET", f"/runs/{run_id}/stream", headers=_Requests.stream_headers(last), timeout=httpx.Timeout(None, connect=10)
                ) as r:
                    if r.status_code >= 400:
                        r.read()
                        _raise_for(r)
                    for line in r.iter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        if event.id is not None:
                            last = event.id
                        yield event
                        if event.event == "end":
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                continue
            if self.run(run_id).status in ("succeeded", "failed", "cancelled"):  # a non-streaming gateway answered the backlog
                continue
        raise RemoteError(0, "stream_incomplete", f"the stream of {run_id} ended {reconnects + 1} times before its end event")

    # -- threads ---------------------------------------------------------------------------------
    def state(self, thread_id: str, at: int | None = None) -> m.ThreadState:
        return self._send(_Requests.state(thread_id, at))

    def fork(self, thread_id: str, at: int | None = None) -> m.Forked:
        return self._send(_Req(m.Forked, "POST", f"/threads/{thread_id}/fork", _body(at=at)))


class AsyncClient:
    """The same API as ``Client``, as coroutines; ``stream`` is an async iterator."""

    def __init__(
        self, url: str, *, api_key: str | None = None, token: str | None = None, timeout: float = 60.0, transport: Any = None
    ) -> None:
        httpx = _httpx()
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(api_key, token), timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, req: _Req[T]) -> T:
        response = await self._http.request(req.method, req.path, json=req.body, params=req.params)
        _raise_for(response)
        return req.model.model_validate(response.json())

    async def register(self, *, yaml: str | None = None, graph: dict[str, Any] | None = None, description: str = "") -> m.VersionResult:
        first, fallback = _Requests.register(yaml, graph, description)
        try:
            return await self._send(first)
        except RemoteError as exc:
            if exc.code != "agent_exists":
                raise
        return await self._send(fallback)

    async def agents(self) -> m.AgentList:
        return await self._send(_Req(m.AgentList, "GET", "/agents"))

    async def execute(
        self,
        agent_id: str,
        input: dict[str, Any] | None = None,
        *,
        thread_id: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        wait_seconds: float | None = None,
        background: bool | None = None,
        multitask: str | None = None,
    ) -> m.Run:
        req = _Requests.execute(
            agent_id,
            input,
            thread_id=thread_id,
            version=version,
            alias=alias,
            wait_seconds=wait_seconds,
            background=background,
            multitask=multitask,
        )
        return await self._send(req)

    async def runs(self, *, limit: int = 50, cursor: str | None = None, **filters: Any) -> m.RunList:
        return await self._send(_Requests.runs(limit, cursor, filters))

    async def thread(self, thread_id: str, after: int = 0, limit: int = 500) -> m.ThreadEvents:
        return await self._send(_Requests.thread(thread_id, after, limit))

    async def run(self, run_id: str) -> m.Run:
        return await self._send(_Req(m.Run, "GET", f"/runs/{run_id}"))

    async def resume(self, run_id: str, input: dict[str, Any] | None = None, *, wait_seconds: float | None = None) -> m.Run:
        return await self._send(_Requests.resume(run_id, input, wait_seconds))

    async def redrive(self, run_id: str, *, wait_seconds: float | None = None) -> m.Run:
        """Re-run a failed run from its failed node (``POST /runs/{id}/redrive``)."""
        return await self._send(_Requests.redrive(run_id, wait_seconds))

    async def cancel(self, run_id: str) -> m.Run:
        return await self._send(_Req(m.Run, "POST", f"/runs/{run_id}/cancel"))

    async def events(self, run_id: str, after: int = 0, limit: int = 200) -> m.EventsPage:
        return await self._send(_Requests.events(run_id, after, limit))

    async def state(self, thread_id: str, at: int | None = None) -> m.ThreadState:
        return await self._send(_Requests.state(thread_id, at))

    async def stream(self, run_id: str, *, last_event_id: int | None = None, reconnects: int = 5) -> AsyncIterator[StreamEvent]:
        httpx = _httpx()
        last = last_event_id
        for _ in range(reconnects + 1):
            parser = _SseParser()
            try:
                async with self._http.stream(
                    "GET", f"/runs/{run_id}/stream", headers=_Requests.stream_headers(last), timeout=httpx.Timeout(None, connect=10)
                ) as r:
                    if r.status_code >= 400:
                        await r.aread()
                        _raise_for(r)
                    async for line in r.aiter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        if event.id is not None:
                            last = event.id
                        yield event
                        if event.event == "end":
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                continue
        raise RemoteError(0, "stream_incomplete", f"the stream of {run_id} ended {reconnects + 1} times before its end event")


def _graph_name(yaml_text: str | None, graph: dict[str, Any] | None) -> str:
    if graph is not None:
        return str(graph.get("name", ""))
    import yaml

    data = yaml.safe_load(yaml_text or "") or {}
    return str(data.get("name", "")) if isinstance(data, dict) else ""
