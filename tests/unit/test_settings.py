"""Engine settings are read from the environment once, into ``Settings``, and passed in; only the modules
listed in ENV_EDGES may read ``os.environ`` (each is an edge: a CLI, a deployment adapter, a settings class)."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from stepwise import Stepwise
from stepwise.client import default_home
from stepwise.executors.local import LocalExecutor
from stepwise.settings import Settings

PACKAGE = Path(__file__).resolve().parents[2] / "shared" / "stepwise"

#: Modules that may read the environment, and why. Adding one is a decision: say why it is an edge.
ENV_EDGES = {
    "settings.py": "the engine's settings (STEPWISE_<FIELD>)",
    "llm/settings.py": "the LLM layer's settings class",
    "llm/secrets.py": "provider API keys (the env is one of the key sources)",
    "llm/gateway.py": "provider credentials probed per call from an injectable environ",
    "api/settings.py": "the API server's settings class",
    "api/server.py": "the ASGI server's settings at start-up",
    "api/roles.py": "admin tenants of the roles API",
    "api/keys.py": "the keys CLI: the usage plan a new key is enrolled in (STEPWISE_USAGE_PLAN_ID)",
    "awsclients.py": "endpoint overrides for boto3 clients (injectable environ)",
    "cli.py": "the CLI edge (debug, memory worker)",
    "cli_remote.py": "the remote CLI's profile, URL and credentials",
    "graph/limits.py": "parser limits read when the limits object is built",
    "memory/settings.py": "the memory layer's settings class (MemorySettings)",
    "tools/settings.py": "the tool layer's settings class (ToolSettings)",
    "tools/registry.py": "hands this process's environment on to stdio MCP servers (not configuration: what the MCP SDK does without env)",
    "tools/sandbox_escapes.py": "a probe run inside the sandbox (it must not see the host's environment)",
}


def test_settings_come_from_the_environment_and_are_validated() -> None:
    settings = Settings.from_env({"STEPWISE_LOCAL_CONCURRENCY": "3", "STEPWISE_RUN_LEASE_SECONDS": "12.5", "STEPWISE_HOME": "/x"})
    assert (settings.local_concurrency, settings.run_lease_seconds, settings.home) == (3, 12.5, Path("/x"))
    with pytest.raises(ValidationError, match="local_concurrency"):
        Settings.from_env({"STEPWISE_LOCAL_CONCURRENCY": "0"})
    with pytest.raises(ValidationError, match="run_lease_seconds"):
        Settings.from_env({"STEPWISE_RUN_LEASE_SECONDS": "-1"})


def test_the_client_passes_its_settings_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPWISE_LOCAL_CONCURRENCY", "5")  # ignored: explicit settings win
    client = Stepwise.in_memory(settings=Settings(local_concurrency=3, run_lease_seconds=1000))
    assert isinstance(client.executor, LocalExecutor) and client.executor.max_concurrency == 3
    before = time.time()
    lease = client._lease()["lease_until"]
    after = time.time()
    assert before + 1000 <= lease <= after + 1000


def test_without_settings_the_environment_is_read_at_construction(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STEPWISE_LOCAL_CONCURRENCY", "7")
    monkeypatch.setenv("STEPWISE_HOME", str(tmp_path / "home"))
    assert default_home() == tmp_path / "home"
    client = Stepwise.in_memory()
    assert isinstance(client.executor, LocalExecutor) and client.executor.max_concurrency == 7
    monkeypatch.setenv("STEPWISE_LOCAL_CONCURRENCY", "9")  # read once: a built client does not change
    assert client.executor.max_concurrency == 7


def _reads_environment(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name in ("environ", "getenv") for a in node.names):
            return True
    return False


def test_only_the_listed_edges_read_the_environment() -> None:
    readers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts and _reads_environment(ast.parse(path.read_text(), str(path)))
    }
    unlisted = sorted(readers - set(ENV_EDGES))
    assert not unlisted, (
        f"{unlisted} read os.environ directly: add a field to a settings class and pass it in (or list the module in ENV_EDGES with why)"
    )


def test_the_edge_check_sees_a_planted_read() -> None:
    assert _reads_environment(ast.parse("import os\nx = os.environ.get('STEPWISE_X')"))
    assert _reads_environment(ast.parse("from os import getenv\nx = getenv('STEPWISE_X')"))
    assert not _reads_environment(ast.parse("import os\nx = os.getpid()"))
