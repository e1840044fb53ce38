"""Step-scoped capability tokens and tenant roles: minted per call, verified by the executor and by a remote
MCP server, refused when replayed, expired, forged or re-targeted; roles checked at registration (API) and at
call time, with argument constraints; keys from a local file or Secrets Manager (moto); the CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from mcp.server.mcpserver import Context, MCPServer
from moto import mock_aws
from typer.testing import CliRunner

from stepwise.asl.interpreter import FakeClock
from stepwise.client import Stepwise
from stepwise.graph.loader import load_text
from stepwise.llm.base import ChatRequest, ChatResponse, ToolCall
from stepwise.llm.gateway import ModelHub
from stepwise.llm.settings import LLMSettings
from stepwise.state.events import TOOL_CALL, TOOL_DENIED, TOOL_GRANTED
from stepwise.store.memory import MemoryApiStore
from stepwise.tools.capability import (
    Binding,
    Capabilities,
    CapabilityError,
    args_hash,
    local_key,
    secrets_manager_key,
    verify_capability,
)
from stepwise.tools.executor import ToolInvocation
from stepwise.tools.permissions import PermissionManager
from stepwise.tools.ports import CAPABILITY_META
from stepwise.tools.roles import ArgConstraint, Role, RoleStore, decide

KEY = bytes(range(32))
CALL = Binding(tenant="acme", run="r1", node="agent", step="r1||agent|run|0|tool|c0", tool="calculator", arguments={"expression": "1+1"})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_permits_exactly_its_call_once() -> None:
    clock = Clock()
    caps = Capabilities(KEY, ttl=60, clock=clock)
    token = caps.mint(CALL)
    claims = caps.verify(token, CALL)
    assert claims["sub"] == "acme" and claims["tool"] == "calculator" and claims["args"] == args_hash({"expression": "1+1"})
    assert claims["aud"] == "stepwise-tool:calculator" and claims["step"] == CALL.step
    with pytest.raises(CapabilityError) as replay:
        caps.verify(token, CALL)
    assert replay.value.rule == "capability_replayed"


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"tool": "current_time"}, "capability_retargeted"),
        ({"arguments": {"expression": "2**64"}}, "capability_retargeted"),
        ({"run": "r2"}, "capability_retargeted"),
        ({"node": "other"}, "capability_retargeted"),
        ({"step": "r1||agent|run|0|tool|c9"}, "capability_retargeted"),
        ({"tenant": "globex"}, "capability_retargeted"),
    ],
)
def test_a_retargeted_token_is_refused(change: dict[str, Any], rule: str) -> None:
    caps = Capabilities(KEY)
    token = caps.mint(CALL)
    other = Binding(**{**CALL.__dict__, **change})
    with pytest.raises(CapabilityError) as err:
        caps.verify(token, other)
    assert err.value.rule == rule


def test_expired_forged_unsigned_and_missing_tokens_are_refused() -> None:
    clock = Clock()
    caps = Capabilities(KEY, ttl=30, clock=clock)
    token = caps.mint(CALL)
    clock.now += 31
    with pytest.raises(CapabilityError, match="expired"):
        caps.verify(token, CALL)
    forged = Capabilities(bytes(32)).mint(CALL)
    with pytest.raises(CapabilityError) as bad:
        Capabilities(KEY).verify(forged, CALL)
    assert bad.value.rule == "capability_invalid"
    claims = jwt.decode(Capabilities(KEY).mint(CALL), KEY, algorithms=["HS256"], audience="stepwise-tool:calculator")
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(CapabilityError, match="rejected"):
        Capabilities(KEY).verify(unsigned, CALL)
    with pytest.raises(CapabilityError) as missing:
        Capabilities(KEY).verify(None, CALL)
    assert missing.value.rule == "capability_missing"
    with pytest.raises(ValueError, match="256 bits"):
        Capabilities(b"short").mint(CALL)


def test_local_key_is_generated_once_private(tmp_path: Path) -> None:
    key = local_key(tmp_path / "home")
    assert len(key) == 32 and local_key(tmp_path / "home") == key
    assert stat.S_IMODE(os.stat(tmp_path / "home" / "capability.key").st_mode) == 0o600


@mock_aws
def test_key_from_secrets_manager() -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    sm.create_secret(Name="stepwise/capability", SecretString=json.dumps({"key": KEY.hex()}))
    assert secrets_manager_key("stepwise/capability", client=sm) == KEY
    sm.create_secret(Name="raw", SecretString=KEY.hex())
    caps = Capabilities(lambda: secrets_manager_key("raw", client=sm))
    assert verify_capability(caps.mint(CALL), CALL, KEY)["tool"] == "calculator"


# -- roles -----------------------------------------------------------------------------------------
WEB = Role(
    name="web",
    tools=["calculator", "http_fetch", "files/*"],
    constraints={"http_fetch": {"url": ArgConstraint(hosts=["*.acme.com"])}},
)


def test_role_decisions() -> None:
    assert decide([WEB], "calculator", {}) is None
    assert decide([WEB], "files/read", {}) is None
    assert "not granted" in str(decide([WEB], "current_time", {}))
    assert decide([WEB], "http_fetch", {"url": "https://api.acme.com/x"}) is None
    assert "not on a permitted host" in str(decide([WEB], "http_fetch", {"url": "https://evil.example/x"}))
    wide = Role(name="wide", tools=["http_fetch"])
    assert decide([WEB, wide], "http_fetch", {"url": "https://evil.example/x"}) is None  # another role grants it unconstrained
    assert decide([], "anything", {}) is None and "no roles" in str(decide([], "anything", {}, strict=True))
    with pytest.raises(ValueError, match="role name"):
        Role(name="Bad Name")


def test_role_store_put_list_delete() -> None:
    store = RoleStore(MemoryApiStore())
    store.put("acme", WEB)
    store.put("acme", Role(name="clock", tools=["current_time"]))
    assert [r.name for r in store.list("acme")] == ["clock", "web"] and store.list("globex") == []
    assert store.delete("acme", "clock") and not store.delete("acme", "clock")
    assert [r.name for r in store.list("acme")] == ["web"] and store.get("acme", "clock") is None


class Model:
    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)

    def complete(self, request: ChatRequest) -> ChatResponse:
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return reply if isinstance(reply, ChatResponse) else ChatResponse(content=reply, model=request.model)


def asks(*calls: tuple[str, dict[str, Any]]) -> ChatResponse:
    return ChatResponse(tool_calls=[ToolCall(id=f"c{i}", name=n, arguments=a) for i, (n, a) in enumerate(calls)], stop_reason="tool_use")


AGENT = """
name: tenant-agent
state: {messages: append}
graph:
  nodes:
    agent:
      kind: agent
      model: "openai:gpt-4o-mini"
      tools: [calculator, current_time, vault/whoami]
      config: {loop: fused, max_iterations: 3}
  entry: agent
"""


def vault_server(key: bytes) -> Any:
    """A 'remote' MCP server that verifies the capability token it receives in ``_meta``."""
    server = MCPServer("vault")

    @server.tool()
    def whoami(ctx: Context) -> dict[str, Any]:
        meta = ctx.request_context.meta
        token = meta.get(CAPABILITY_META) if isinstance(meta, dict) else getattr(meta, CAPABILITY_META, None)
        from stepwise.tools.ports import IDEMPOTENCY_META

        step = meta.get(IDEMPOTENCY_META) if isinstance(meta, dict) else getattr(meta, IDEMPOTENCY_META, None)
        claims = jwt.decode(token, key, algorithms=["HS256"], audience="stepwise-tool:vault/whoami")
        binding = Binding(tenant=claims["sub"], run=claims["run"], node=claims["node"], step=str(step), tool="vault/whoami", arguments={})
        verified = verify_capability(token, binding, key)
        return {"tenant": verified["sub"], "node": verified["node"]}

    return server


def test_run_grants_each_call_a_token_that_a_remote_server_verifies_and_roles_refuse_the_rest() -> None:
    from stepwise.tools.registry import ToolRegistry

    store = MemoryApiStore()
    roles = RoleStore(store)
    roles.put("acme", Role(name="calc", tools=["calculator", "vault/*"]))
    client = Stepwise.in_memory(clock=FakeClock())
    model = Model(asks(("calculator", {"expression": "6*7"}), ("current_time", {}), ("vault/whoami", {})), "done")
    client.services.models = ModelHub(LLMSettings(cache="off"), clock=FakeClock(), models={"openai:gpt-4o-mini": model})
    client.services.permissions = PermissionManager(roles, Capabilities(KEY))
    registry = ToolRegistry()
    registry.add_server("vault", server=vault_server(KEY))
    client.services.tool_registry = registry
    try:
        result = client.run(load_text(AGENT), {"messages": [{"role": "user", "content": "hi"}]}, tenant="acme")
    finally:
        registry.close()
    assert result.status == "succeeded", result.error
    history = client.history(result.thread_id)
    calls = {e.data["tool"]: e.data for e in history if e.type == TOOL_CALL}
    assert calls["calculator"]["ok"] and calls["calculator"]["result"] == 42
    assert calls["vault/whoami"]["result"] == {"tenant": "acme", "node": "agent"}  # verified remotely
    assert not calls["current_time"]["ok"] and calls["current_time"]["denied"] == "role"
    assert "not granted by the tenant's roles (calc)" in calls["current_time"]["result"]
    assert sorted(e.data["tool"] for e in history if e.type == TOOL_GRANTED) == ["calculator", "vault/whoami"]
    [denied] = [e for e in history if e.type == TOOL_DENIED]
    assert denied.data == {**denied.data, "tool": "current_time", "rule": "role", "tenant": "acme"}


def test_executor_refuses_a_call_without_a_valid_token() -> None:
    manager = PermissionManager(capabilities=Capabilities(KEY))
    inv = ToolInvocation("calculator", {"expression": "1"}, "c", "k|tool|c", "agent", "r1", "acme")
    with pytest.raises(PermissionError) as err:
        manager.check(inv)
    assert getattr(err.value, "rule", None) == "capability_missing"
    inv.meta[CAPABILITY_META] = manager.grant(inv)
    manager.check(inv)
    with pytest.raises(PermissionError, match="replay"):
        manager.check(inv)
    other = ToolInvocation(
        "calculator", {"expression": "2"}, "c", "k|tool|c", "agent", "r1", "acme", meta={CAPABILITY_META: manager.grant(inv)}
    )
    with pytest.raises(PermissionError, match="differs in: args"):
        manager.check(other)


def test_role_constraint_on_http_fetch_host_at_call_time() -> None:
    store = RoleStore(MemoryApiStore())
    store.put("acme", WEB)
    manager = PermissionManager(store, Capabilities(KEY))
    ok = ToolInvocation("http_fetch", {"url": "https://docs.acme.com/a"}, "c", "k|tool|c", "n", "r", "acme")
    assert manager.grant(ok)
    bad = ToolInvocation("http_fetch", {"url": "http://169.254.169.254/latest"}, "d", "k|tool|d", "n", "r", "acme")
    with pytest.raises(PermissionError, match="not on a permitted host"):
        manager.grant(bad)


# -- API and CLI -----------------------------------------------------------------------------------
GRAPH = {
    "name": "clock",
    "state": {"messages": "append"},
    "graph": {"nodes": {"agent": {"kind": "agent", "model": "scripted", "tools": ["current_time"], "script": ["hi"]}}, "entry": "agent"},
}


def test_api_registration_checks_roles_and_only_operators_manage_them() -> None:
    from tests.unit.test_api_routes import make

    from stepwise.api.settings import ApiSettings

    h = make(ApiSettings(backend="memory", admin_tenants=frozenset({"globex"})))
    assert h("POST", "/agents", {"graph": GRAPH}).status == 201  # no roles yet: unrestricted
    assert h("PUT", "/tenants/acme/roles/calc", {"name": "calc", "tools": ["*"]}).status == 403  # acme cannot grant itself
    reply = h("PUT", "/tenants/acme/roles/calc", {"name": "calc", "tools": ["calculator"]}, tenant="globex")
    assert reply.status == 200 and reply.body["tools"] == ["calculator"]
    assert [r["name"] for r in h("GET", "/roles").body["roles"]] == ["calc"]
    refused = h("POST", "/agents", {"graph": {**GRAPH, "name": "clock2"}})
    assert refused.status == 403 and refused.body["error"]["code"] == "tools_not_permitted"
    assert "node 'agent' declares 'current_time'" in refused.body["error"]["message"]
    assert h("DELETE", "/tenants/acme/roles/calc", tenant="globex").status == 200
    assert h("POST", "/agents", {"graph": {**GRAPH, "name": "clock2"}}).status == 201


def test_cli_roles(tmp_path: Path) -> None:
    from stepwise.cli import app

    runner = CliRunner()
    home = str(tmp_path / "home")
    out = runner.invoke(
        app, ["roles", "set", "acme", "web", "--tools", "http_fetch", "--hosts", "http_fetch.url=*.acme.com", "--home", home]
    )
    assert out.exit_code == 0, out.output
    listed = runner.invoke(app, ["roles", "list", "acme", "--home", home, "-o", "json"])
    assert json.loads(listed.output) == [
        {"name": "web", "tools": ["http_fetch"], "constraints": {"http_fetch": {"url": {"hosts": ["*.acme.com"]}}}}
    ]
    manager = PermissionManager.embedded(home)
    with pytest.raises(PermissionError):
        manager.authorize("acme", "calculator", {})
    assert runner.invoke(app, ["roles", "delete", "acme", "web", "--home", home]).exit_code == 0
    assert runner.invoke(app, ["roles", "delete", "acme", "web", "--home", home]).exit_code == 1
    manager.authorize("acme", "calculator", {})
