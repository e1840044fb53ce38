"""The built-in tools as an MCP server: in-process for agents (no subprocess, no socket), or standalone
over stdio / streamable HTTP for other MCP clients::

    python -m stepwise.tools.server                  # stdio
    python -m stepwise.tools.server --http --port 8931   # streamable HTTP on 127.0.0.1
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from stepwise.tools import builtin, limits
from stepwise.tools.ports import CAPABILITY_META, IDEMPOTENCY_META
from stepwise.tools.settings import ToolSettings


@contextmanager
def _reported() -> Iterator[None]:
    """Anticipated failures (bad input, a refused URL) reach the agent with their message; MCP hides other errors."""
    try:
        yield
    except (ValueError, TypeError, PermissionError, LookupError, limits.ToolLimitError) as exc:
        raise ToolError(str(exc)) from exc


def _sandboxed_python(code: str, tenant: str | None, settings: ToolSettings) -> dict[str, Any]:
    from stepwise.tools.sandbox import SandboxUnavailable, run_python_tool

    if len(code) > 100_000:
        raise ValueError("code longer than 100,000 characters")
    try:
        return run_python_tool(code, tenant, settings)
    except SandboxUnavailable as exc:
        raise LookupError(str(exc)) from None


def build_server(settings: ToolSettings | None = None, *, allowlist: list[str] | None = None, name: str = "stepwise-builtin") -> MCPServer:
    """The built-ins as an MCP server configured by ``settings`` (default: ``ToolSettings()``, no env read);
    ``allowlist`` overrides ``settings.http_allowlist``."""
    settings = settings or ToolSettings()
    hosts = list(allowlist if allowlist is not None else settings.http_allowlist)
    budget = settings.budget()
    server: MCPServer = MCPServer(name, instructions="Stepwise built-in tools", log_level="WARNING")

    @server.tool(description="Evaluate an arithmetic expression (+ - * / // % ** and parentheses)")
    async def calculator(expression: str) -> int | float:
        with _reported():  # CPU-bound: a child process with a wall and CPU budget (tools/limits.py)
            return await limits.arun_bounded("calculator", {"expression": expression}, budget)  # type: ignore[no-any-return]

    @server.tool(description="The current time in ISO 8601, in an IANA timezone (default UTC)")
    def current_time(timezone: str = "UTC") -> str:
        with _reported():
            return builtin.current_time(timezone)

    @server.tool(
        description="Select a value from JSON data with a path ($.a.b[0]) or reshape it with a template "
        "whose keys ending in .$ are paths ({'name.$': '$.user.name'})"
    )
    async def json_transform(data: Any, template: dict[str, Any] | None = None, path: str | None = None) -> Any:
        with _reported():
            return await limits.arun_bounded("json_transform", {"data": data, "template": template, "path": path}, budget)

    @server.tool(description="HTTP GET a URL on the allowlist; returns status, content_type and body (first 200 kB)")
    async def http_fetch(url: str) -> dict[str, Any]:
        with _reported():
            return await limits.within_wall(builtin.http_fetch(url, hosts), "http_fetch", budget)

    @server.tool(
        description=(
            "Run Python 3 code in an isolated sandbox (no network, no files but a private scratch directory, CPU, memory "
            "and wall-time limits); print what you want back. Returns exit_code, stdout and stderr."
        )
    )
    async def python(code: str, ctx: Context) -> dict[str, Any]:
        import anyio

        with _reported():  # the call's tenant (from its capability token) picks the CPU cgroup it shares
            return await anyio.to_thread.run_sync(_sandboxed_python, code, _tenant(ctx), settings)

    @server.tool(description="Echo the text back with the idempotency key the caller sent (for checking MCP wiring)")
    def echo(text: str, ctx: Context) -> dict[str, Any]:
        meta = ctx.request_context.meta or {}
        key = meta.get(IDEMPOTENCY_META) if isinstance(meta, dict) else getattr(meta, IDEMPOTENCY_META, None)
        return {"text": text, "idempotency_key": key}

    return server


def _tenant(ctx: Context) -> str | None:
    """The ``sub`` of the call's capability token, for grouping its sandbox's CPU quota with its tenant's.

    Read without verifying: in-process the executor verified the token before the call; a standalone server
    that does not verify tokens lets a caller choose its quota group, i.e. share (never exceed) a tenant's cap.
    """
    meta = ctx.request_context.meta
    token = meta.get(CAPABILITY_META) if isinstance(meta, dict) else getattr(meta, CAPABILITY_META, None)
    if not isinstance(token, str):
        return None
    import jwt

    try:
        sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return None
    return sub if isinstance(sub, str) else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stepwise.tools.server", description=__doc__)
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--port", type=int, default=8931)
    args = parser.parse_args(argv)
    server = build_server(ToolSettings.from_env())  # a process edge: the settings are read here, once
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.port)
    else:
        server.run()


if __name__ == "__main__":
    main()
