"""Engine settings are read from the environment once, into ``Settings``, and passed in; only the modules
listed in ENV_EDGES may read ``os.environ`` (each is an edge: a CLI, a deployment adapter, a settings class)."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from stepwise import Stepwise
from stepwise.api.settings import ApiSettings
from stepwise.client import default_home
from stepwise.errors import SettingError
from stepwise.executors.local import LocalExecutor
from stepwise.llm.settings import LLMSettings
from stepwise.memory.settings import MemorySettings
from stepwise.settings import Settings
from stepwise.tools.sandbox import SandboxLimits
from stepwise.tools.settings import ToolSettings

PACKAGE = Path(__file__).resolve().parents[2] / "shared" / "stepwise"

#: Modules that may read the environment, and why. Adding one is a decision: say why it is an edge.
ENV_EDGES = {
    # settings classes: each reads its variables once, where a process starts, and is passed in from there
    "settings.py": "the engine's settings (Settings: STEPWISE_<FIELD>)",
    "tools/settings.py": "the tool layer's settings class (ToolSettings)",
    "memory/settings.py": "the memory layer's settings class (MemorySettings)",
    "llm/settings.py": "the LLM layer's settings class (LLMSettings, with its credentials snapshot)",
    "api/settings.py": "the API's settings classes (ApiSettings, ServeLimits)",
    "graph/limits.py": "the admission limits' settings class (Limits.from_env), read once per process (process_limits)",
    # process edges: the CLIs read what only a CLI has (flags' env fallbacks, profiles)
    "cli.py": "the CLI edge (STEPWISE_DEBUG, STEPWISE_MEMORY_WORKER)",
    "cli_remote.py": "the remote CLI's profile, URL and credentials",
    # an injectable environ for boto3's endpoint and region overrides (AWS_ENDPOINT_URL_*), used by every adapter
    "awsclients.py": "endpoint overrides for boto3 clients (injectable environ)",
    # handing the environment on, not configuration
    "tools/registry.py": "hands this process's environment on to stdio MCP servers (what the MCP SDK does without env)",
}


def test_settings_come_from_the_environment_and_are_validated() -> None:
    settings = Settings.from_env({"STEPWISE_LOCAL_CONCURRENCY": "3", "STEPWISE_RUN_LEASE_SECONDS": "12.5", "STEPWISE_HOME": "/x"})
    assert (settings.local_concurrency, settings.run_lease_seconds, settings.home) == (3, 12.5, Path("/x"))
    with pytest.raises(SettingError, match=r"^STEPWISE_LOCAL_CONCURRENCY='0' is not a whole number ≥ 1"):
        Settings.from_env({"STEPWISE_LOCAL_CONCURRENCY": "0"})
    with pytest.raises(SettingError, match=r"^STEPWISE_RUN_LEASE_SECONDS='-1' is not a number > 0"):
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


def test_tool_settings_come_from_their_variables_and_are_validated() -> None:
    env = {
        "STEPWISE_HTTP_ALLOWLIST": "api.example.com, *.example.org,",
        "STEPWISE_RBAC": "Strict",
        "STEPWISE_TOOL_WALL_SECONDS": "2.5",
        "STEPWISE_SANDBOX_CGROUPS": "off",
        "STEPWISE_SANDBOX_TOTAL_CPUS": "none",
        "AWS_LAMBDA_FUNCTION_NAME": "step",
    }
    tools = ToolSettings.from_env(env)
    assert tools.http_allowlist == ("api.example.com", "*.example.org") and tools.rbac_strict and tools.on_lambda
    assert tools.budget().wall_seconds == 2.5 and not tools.sandbox_cgroups and SandboxLimits.configured(tools).total_cpus is None
    assert ToolSettings.from_env({}) == ToolSettings()  # no variables: the defaults
    with pytest.raises(SettingError, match=r"^STEPWISE_TOOL_CPU_SECONDS='0' is not a whole number ≥ 1"):
        ToolSettings.from_env({"STEPWISE_TOOL_CPU_SECONDS": "0"})


def test_memory_settings_come_from_their_variables_and_are_validated() -> None:
    memory = MemorySettings.from_env({"STEPWISE_MEMORY_BACKEND": "opensearch", "STEPWISE_EMBED_THREADS": "4", "AWS_REGION": "eu-west-1"})
    assert (memory.memory_backend, memory.embed_threads, memory.aws_region) == ("opensearch", 4, "eu-west-1")
    with pytest.raises(SettingError, match=r"^STEPWISE_EMBED_THREADS='0' is not a whole number ≥ 1"):
        MemorySettings.from_env({"STEPWISE_EMBED_THREADS": "0"})


def test_the_client_reads_every_layers_settings_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPWISE_HTTP_ALLOWLIST", "a.example")
    monkeypatch.setenv("STEPWISE_MEMORY_EMBEDDER", "hashing")
    client = Stepwise.in_memory()
    monkeypatch.setenv("STEPWISE_HTTP_ALLOWLIST", "b.example")  # later changes do not reach a built client
    assert client.services.tool_settings.http_allowlist == ("a.example",)
    assert client.services.memory_settings.memory_embedder == "hashing"
    given = Stepwise.in_memory(tool_settings=ToolSettings(http_allowlist=("c.example",)))
    assert given.services.tool_settings.http_allowlist == ("c.example",)  # explicit settings win


def test_llm_credentials_are_read_once_and_never_printed() -> None:
    env = {"OPENAI_API_KEY": "sk-secret-value", "MY_KEY": "sk-other", "UNRELATED": "x", "STEPWISE_LLM_CONFIG": ""}
    settings = LLMSettings.from_env(env)
    assert settings.credentials == {"OPENAI_API_KEY": "sk-secret-value"}
    assert "sk-secret-value" not in repr(settings) and "sk-secret-value" not in settings.model_dump_json()


def test_api_settings_carry_operators_and_the_usage_plan() -> None:
    api = ApiSettings.from_env({"STEPWISE_ADMIN_TENANTS": "ops, root,", "STEPWISE_USAGE_PLAN_ID": "plan-1"})
    assert api.admin_tenants == {"ops", "root"} and api.usage_plan_id == "plan-1"


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
    stale = sorted(set(ENV_EDGES) - readers)
    assert not stale, f"{stale} no longer read os.environ: take them off ENV_EDGES"


def test_the_edge_check_sees_a_planted_read() -> None:
    assert _reads_environment(ast.parse("import os\nx = os.environ.get('STEPWISE_X')"))
    assert _reads_environment(ast.parse("from os import getenv\nx = getenv('STEPWISE_X')"))
    assert not _reads_environment(ast.parse("import os\nx = os.getpid()"))
