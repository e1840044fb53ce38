"""A registry of MCP servers: the built-ins in-process, plus stdio commands and streamable-HTTP URLs.

Graphs name tools ``server/tool`` (bare names are built-ins). Each server gets one long-lived MCP session,
opened on first use inside a background event loop (MCP is async; steps are not), with its capabilities
checked and its tool schemas cached. Configure servers in code or with ``STEPWISE_MCP_CONFIG``::

    servers:
      files: {command: ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/data"]}
      search: {url: "http://127.0.0.1:8931/mcp", headers: {Authorization: "Bearer ..."}}
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stepwise.errors import StepwiseError
from stepwise.llm.base import ToolSpec
from stepwise.tools.ports import IDEMPOTENCY_META
from stepwise.tools.settings import ToolSettings

T = TypeVar("T")
BUILTIN = "builtin"


class ToolError(StepwiseError):
    """The tool ran and reported failure (MCP ``isError``): goes back to the agent, never retried."""


class UnknownTool(StepwiseError, LookupError):
    """An agent named a tool that no registered server or builtin provides."""


class ServerConfig(BaseModel):
    """One MCP server: a command (stdio) or a URL (HTTP), and its environment."""

    model_config = ConfigDict(extra="forbid")
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=30.0, gt=0)
    #: Start this stdio server inside the tool sandbox (``sandbox.py``): no network unless ``sandbox_network``,
    #: a private scratch directory as its cwd, read-only ``sandbox_binds`` (its code), CPU/memory limits.
    sandbox: bool = False
    sandbox_network: bool = False
    sandbox_binds: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_transport(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server is either {command: [...]} (stdio) or {url: http://...} (streamable HTTP)")
        return self


class _Portal:
    """One background thread running an asyncio loop, shared by every registry in the process."""

    _instance: _Portal | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="stepwise-mcp", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _Portal:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Portal()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class _Connection:
    """An open MCP session, owned by one task of the portal loop (MCP contexts must exit where they entered)."""

    def __init__(self, name: str, target: Any, timeout: float) -> None:
        self.name, self.target, self.timeout = name, target, timeout
        self.client: Any = None
        self.tools: dict[str, ToolSpec] = {}
        self.capabilities: Any = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._hold())
        await self._ready.wait()
        if self._error is not None:
            raise ConnectionError(f"MCP server {self.name!r} did not start: {type(self._error).__name__}: {self._error}") from self._error

    async def _hold(self) -> None:
        from mcp import Client

        try:
            async with Client(self.target, read_timeout_seconds=self.timeout) as client:
                self.client = client
                self.capabilities = client.server_capabilities
                if self.capabilities is None or self.capabilities.tools is None:
                    raise ConnectionError(f"MCP server {self.name!r} does not offer tools (capabilities: {self.capabilities})")
                await self.refresh()
                self._ready.set()
                await self._closing.wait()
        except BaseException as exc:  # noqa: BLE001 - reported to open() or swallowed at shutdown
            self._error = exc
            self._ready.set()
        finally:
            self.client = None

    async def refresh(self) -> None:
        """(Re)load the tool schemas: negotiated once per session, cached until refreshed."""
        listed = await self.client.list_tools()
        self.tools = {
            t.name: ToolSpec(
                name=f"{self.name}/{t.name}" if self.name != BUILTIN else t.name,
                description=t.description or "",
                parameters=dict(t.input_schema or {}),
            )
            for t in listed.tools
        }

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)


class ToolRegistry:
    """The MCP tool servers (built-ins in-process, others by config), connected on first use."""

    def __init__(
        self,
        servers: dict[str, ServerConfig] | None = None,
        *,
        builtin: bool = True,
        http_allowlist: list[str] | None = None,
        settings: ToolSettings | None = None,
    ) -> None:
        """``settings``: the tool layer's configuration (default ``ToolSettings()``: nothing read from the environment)."""
        self.settings = settings or ToolSettings()
        self.configs: dict[str, ServerConfig] = dict(servers or {})
        self.inprocess: dict[str, Any] = {}
        if builtin:
            from stepwise.tools.server import build_server

            self.inprocess[BUILTIN] = build_server(self.settings, allowlist=http_allowlist)
        self._connections: dict[str, _Connection] = {}
        self._lock = threading.Lock()
        self._opening: dict[str, asyncio.Future[_Connection]] = {}
        self._scratch: list[Path] = []
        self._cgroups: list[Any] = []  # sandboxed servers' CPU cgroups (tools/cgroups.py)

    @classmethod
    def from_settings(cls, settings: ToolSettings) -> ToolRegistry:
        """The built-ins plus the servers of ``settings.mcp_config`` (``STEPWISE_MCP_CONFIG``), if any."""
        servers: dict[str, ServerConfig] = {}
        if settings.mcp_config is not None:
            data = yaml.safe_load(settings.mcp_config.read_text(encoding="utf-8")) or {}
            servers = {name: ServerConfig.model_validate(conf) for name, conf in (data.get("servers") or {}).items()}
        return cls(servers, settings=settings)

    def add_server(
        self,
        name: str,
        *,
        command: list[str] | None = None,
        url: str | None = None,
        server: Any = None,
        env: dict[str, str] | None = None,
        timeout_seconds: float = 30.0,
        sandbox: bool = False,
        sandbox_binds: list[str] | None = None,
    ) -> None:
        """Register a stdio command (``sandbox=True``: started jailed), a streamable-HTTP URL, or an in-process ``MCPServer``."""
        if "/" in name:
            raise ValueError(f"server name {name!r} cannot contain '/' (tools are named server/tool)")
        if server is not None:
            self.inprocess[name] = server
        else:
            self.configs[name] = ServerConfig(
                command=command,
                url=url,
                env=env or {},
                timeout_seconds=timeout_seconds,
                sandbox=sandbox,
                sandbox_binds=list(sandbox_binds or []),
            )

    @staticmethod
    def split(name: str) -> tuple[str, str]:
        server, sep, tool = name.partition("/")
        return (server, tool) if sep else (BUILTIN, name)

    # -- connections --------------------------------------------------------------------------------
    def _target(self, server: str) -> tuple[Any, float]:
        if server in self.inprocess:
            return self.inprocess[server], 30.0
        conf = self.configs.get(server)
        if conf is None:
            known = ", ".join(sorted([*self.inprocess, *self.configs])) or "none"
            raise UnknownTool(f"no MCP server {server!r} is registered (known: {known}); add it to STEPWISE_MCP_CONFIG")
        if conf.command is not None and conf.sandbox:
            return self._sandboxed(server, conf), conf.timeout_seconds
        if conf.command is not None:
            from mcp import StdioServerParameters

            # handing our environment on to the server (not configuration): as the MCP SDK does without ``env``
            env = {**os.environ, **conf.env} if conf.env else None
            return StdioServerParameters(command=conf.command[0], args=conf.command[1:], env=env, cwd=conf.cwd), conf.timeout_seconds
        if conf.headers:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(str(conf.url), http_client=httpx2.AsyncClient(headers=conf.headers)), conf.timeout_seconds
        return str(conf.url), conf.timeout_seconds

    def _sandboxed(self, server: str, conf: ServerConfig) -> Any:
        """The stdio parameters that start ``conf.command`` jailed (in a CPU cgroup of its own, as a tenant
        named after the server, where cgroups are available); its scratch directory and cgroup go when we close."""
        from mcp import StdioServerParameters

        from stepwise.tools.sandbox import Sandbox, SandboxLimits

        cpu_seconds = max(60, int(conf.timeout_seconds) * 10)
        limits = replace(SandboxLimits.configured(self.settings), cpu_seconds=cpu_seconds, wall_seconds=float("inf"))
        box = Sandbox.configured(
            self.settings,
            limits,
            network=conf.sandbox_network,
            ro_binds=list(conf.sandbox_binds),
            env=dict(conf.env),
            tenant=f"mcp:{server}",
        )
        scratch, uid = box.prepare()
        self._scratch.append(scratch)
        cmd = box.command(conf.command or [], scratch, uid)
        group = box.cpu_group()
        if group is not None:
            self._cgroups.append(group)
            cmd = group.enter(cmd)
        return StdioServerParameters(command=cmd[0], args=cmd[1:], env={"PATH": "/usr/bin:/bin"})

    async def connection(self, server: str) -> _Connection:
        found = self._connections.get(server)
        if found is not None and found.client is not None:
            return found
        pending = self._opening.get(server)
        if pending is not None:
            return await pending
        future: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()
        self._opening[server] = future
        try:
            target, timeout = self._target(server)
            conn = _Connection(server, target, timeout)
            await conn.open()
            self._connections[server] = conn
            future.set_result(conn)
            return conn
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            self._opening.pop(server, None)

    # -- the public, synchronous surface --------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return _Portal.get().run(coro, timeout)

    def specs(self, names: list[str]) -> list[ToolSpec]:
        """Schemas for the tools a node names, in its order (cached per session)."""
        return self.run(self.aspecs(names))

    async def aspecs(self, names: list[str]) -> list[ToolSpec]:
        out = []
        for name in names:
            server, tool = self.split(name)
            conn = await self.connection(server)
            spec = conn.tools.get(tool)
            if spec is None:
                await conn.refresh()
                spec = conn.tools.get(tool)
            if spec is None:
                raise UnknownTool(f"MCP server {server!r} has no tool {tool!r}; it offers: {', '.join(sorted(conn.tools)) or 'nothing'}")
            out.append(spec)
        return out

    async def acall(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        idempotency_key: str,
        timeout: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Any:
        """Call a tool; the idempotency key (and any capability token in ``meta``) travels in the request's
        ``_meta`` so servers can dedupe and verify."""
        server, tool = self.split(name)
        conn = await self.connection(server)
        result = await conn.client.call_tool(
            tool, arguments, read_timeout_seconds=timeout, meta={**(meta or {}), IDEMPOTENCY_META: idempotency_key}
        )
        text = "".join(getattr(c, "text", "") for c in result.content or [])
        if result.is_error:
            raise ToolError(text or f"tool {name} failed")
        structured = result.structured_content
        if isinstance(structured, dict):
            return structured["result"] if set(structured) == {"result"} else structured
        try:  # tools without a structured schema send their JSON-encoded value as text
            return json.loads(text)
        except ValueError:
            return text

    def close(self) -> None:
        async def close_all() -> None:
            for conn in list(self._connections.values()):
                await conn.close()
            self._connections.clear()

        if self._connections:
            self.run(close_all(), timeout=10)
        import shutil

        for scratch in self._scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        self._scratch.clear()
        for group in self._cgroups:
            group.close()  # kills whatever the server left running, removes the cgroup
        self._cgroups.clear()
