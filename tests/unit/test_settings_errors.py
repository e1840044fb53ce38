"""A bad ``STEPWISE_*`` value is refused in one line naming the variable, its value and what is accepted.

Before, ``Settings``/``ApiSettings`` (and the tool, memory and LLM settings) let pydantic's multi-line
``ValidationError`` through, ``ServeLimits`` raised a bare ``ValueError`` from ``int()``, and the CLI wrapped
all of it as "cannot open the state directory". Every ``from_env`` now goes through one helper
(``stepwise.settings.validated``) that raises ``SettingError``; these check each class, the helper's secret
masking, and the two places a user meets it: ``stepwise run`` and ``stepwise serve``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from stepwise.api.settings import ApiSettings, ServeLimits
from stepwise.errors import SettingError, StepwiseError
from stepwise.graph.limits import Limits, LimitSettingError
from stepwise.llm.settings import LLMSettings
from stepwise.memory.settings import MemorySettings
from stepwise.settings import Settings, validated
from stepwise.tools.settings import ToolSettings

ROOT = Path(__file__).resolve().parents[2]
GRAPH = str(ROOT / "statemachines" / "examples" / "sequential.yaml")

Reader = Callable[[dict[str, str]], object]


@pytest.mark.parametrize(
    ("read", "env", "message"),
    [
        (
            Settings.from_env,
            {"STEPWISE_LOCAL_CONCURRENCY": "abc"},
            "STEPWISE_LOCAL_CONCURRENCY='abc' is not a whole number ≥ 1 (default 256): fix it or unset it",
        ),
        (
            Settings.from_env,
            {"STEPWISE_BACKEND": "sqlite"},
            "STEPWISE_BACKEND='sqlite' is not one of 'embedded', 'memory', 'aws' (default 'embedded'): fix it or unset it",
        ),
        (
            ApiSettings.from_env,
            {"STEPWISE_API_MAX_WAIT_SECONDS": "1000"},
            "STEPWISE_API_MAX_WAIT_SECONDS='1000' is not a number from 0 to 900 (default 25): fix it or unset it",
        ),
        (
            ApiSettings.from_env,
            {"STEPWISE_WEBHOOK_ALLOW_PRIVATE": "maybe"},
            "STEPWISE_WEBHOOK_ALLOW_PRIVATE='maybe' is not true or false (also 1/0, yes/no, on/off) (default false): fix it or unset it",
        ),
        (
            ServeLimits.from_env,
            {"STEPWISE_SERVE_WORKERS": "many"},
            "STEPWISE_SERVE_WORKERS='many' is not a whole number ≥ 1 (default 16): fix it or unset it",
        ),
        (
            ServeLimits.from_env,
            {"STEPWISE_SERVE_HEADER_TIMEOUT": "0"},
            "STEPWISE_SERVE_HEADER_TIMEOUT='0' is not a number > 0 (default 10): fix it or unset it",
        ),
        (
            ToolSettings.from_env,
            {"STEPWISE_SANDBOX_CPUS": "lots"},
            "STEPWISE_SANDBOX_CPUS='lots' is not a number of cores ≥ 0.01 (0.5, 2) or 'none' (default 1): fix it or unset it",
        ),
        (
            MemorySettings.from_env,
            {"STEPWISE_EMBED_THREADS": "two"},
            "STEPWISE_EMBED_THREADS='two' is not a whole number ≥ 1 (default 1): fix it or unset it",
        ),
        (
            MemorySettings.from_env,
            {"STEPWISE_MEMORY_BACKEND": "opensarch"},
            "STEPWISE_MEMORY_BACKEND='opensarch' is not one of 'embedded', 'opensearch' (default 'embedded'): fix it or unset it",
        ),
        (
            MemorySettings.from_env,
            {"STEPWISE_MEMORY_EMBEDDER": "minilm"},
            "STEPWISE_MEMORY_EMBEDDER='minilm' is not auto, minilm-int8, hashing, hashing-DIM, hashing-v2-DIM or "
            "bedrock:MODEL[#DIM] (default 'auto'): fix it or unset it",
        ),
        (
            LLMSettings.from_env,
            {"STEPWISE_LLM_CACHE": "maybe"},
            "STEPWISE_LLM_CACHE='maybe' is not one of 'off', 'exact', 'semantic' (default 'exact'): fix it or unset it",
        ),
        (
            LLMSettings.from_env,
            {"STEPWISE_LLM_RUN_BUDGET_USD": "-3"},
            "STEPWISE_LLM_RUN_BUDGET_USD='-3' is not a number ≥ 0 (default none): fix it or unset it",
        ),
    ],
)
def test_each_settings_class_names_the_bad_variable(read: Reader, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError) as caught:
        read(env)
    assert str(caught.value) == message
    assert caught.value.problems == [message]
    assert isinstance(caught.value, StepwiseError) and isinstance(caught.value, ValueError)


SHAPE = 'JSON like {"default": {"execute": [1, 5], "read": 20}} (tenant -> class -> rate or [rate, burst])'


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"STEPWISE_RATE_LIMITS": "{bad"},
            "STEPWISE_RATE_LIMITS='{bad' is not valid: not JSON (Expecting property name enclosed in double quotes at column 2); "
            f"give {SHAPE} (default none): fix it or unset it",
        ),
        (
            {"STEPWISE_RATE_LIMITS": '{"default": {"read": 0}}'},
            """STEPWISE_RATE_LIMITS='{"default": {"read": 0}}' is not valid: rate limit default/read: rate must be > 0 and burst >= 1, """
            f"got 0; give {SHAPE} (default none): fix it or unset it",
        ),
        (
            {"STEPWISE_RATE_LIMITS": '{"*": {"exec": 5}}'},
            """STEPWISE_RATE_LIMITS='{"*": {"exec": 5}}' is not valid: rate limit */exec: 'exec' is not a route class """
            f"(one of execute, stream, write, read); give {SHAPE} (default none): fix it or unset it",
        ),
        (
            {"STEPWISE_RATE_LIMITS": "[1]"},
            f"STEPWISE_RATE_LIMITS='[1]' is not valid: give {SHAPE} (default none): fix it or unset it",
        ),
        (
            {"STEPWISE_JWT_ALGORITHMS": "HS256"},
            "STEPWISE_JWT_ALGORITHMS='HS256' is not valid: JWT algorithms must be asymmetric, comma-separated "
            "(ES256, ES384, ES512, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512) (default 'RS256,ES256'): fix it or unset it",
        ),
        (
            {"STEPWISE_JWT_ISSUER": "https://issuer.example"},
            "STEPWISE_JWT_ISSUER is set: set STEPWISE_JWT_AUDIENCE too (the app client id in Cognito)",
        ),
    ],
)
def test_api_settings_that_used_to_fail_on_each_request_are_refused_when_read(env: dict[str, str], message: str) -> None:
    """Rate limits and JWT settings were checked when the app was built (serve: a traceback line with the --debug hint)."""
    with pytest.raises(SettingError) as caught:
        ApiSettings.from_env(env)
    assert str(caught.value) == message
    good = ApiSettings.from_env({"STEPWISE_RATE_LIMITS": '{"*": {"read": [1, 2]}}', "STEPWISE_JWT_ALGORITHMS": "ES256, RS256"})
    assert good.jwt_algorithms == ("ES256", "RS256") and good.rate_limits == '{"*": {"read": [1, 2]}}'


def test_good_values_are_read_and_every_bad_one_is_named_at_once() -> None:
    limits = ServeLimits.from_env({"STEPWISE_SERVE_WORKERS": "4", "STEPWISE_SERVE_SCHEDULER": "0", "STEPWISE_SERVE_BACKLOG": ""})
    assert (limits.workers, limits.scheduler, limits.backlog) == (4, False, 2048)  # empty: the default
    with pytest.raises(SettingError) as caught:
        Settings.from_env({"STEPWISE_RUN_LEASE_SECONDS": "-1", "STEPWISE_LOCAL_CONCURRENCY": "0", "STEPWISE_HOME": "/x"})
    assert caught.value.problems == [  # field order, each once
        "STEPWISE_LOCAL_CONCURRENCY='0' is not a whole number ≥ 1 (default 256): fix it or unset it",
        "STEPWISE_RUN_LEASE_SECONDS='-1' is not a number > 0 (default 30): fix it or unset it",
    ]
    assert str(caught.value) == "; ".join(caught.value.problems)


def test_the_limits_share_the_helper() -> None:
    with pytest.raises(SettingError) as caught:
        Limits.from_env({"STEPWISE_MAX_DEPTH": "deep"})
    assert isinstance(caught.value, LimitSettingError)
    assert str(caught.value) == "STEPWISE_MAX_DEPTH='deep' is not a whole number from 1 to 256 (default 64): fix it or unset it"


def test_a_bad_key_of_the_llm_config_file_is_named_with_the_file(tmp_path: Path) -> None:
    config = tmp_path / "llm.yaml"
    config.write_text("cache: exact\ntimeout_seconds: soon\ncolour: blue\n")
    with pytest.raises(SettingError) as caught:
        LLMSettings.from_env({"STEPWISE_LLM_CONFIG": str(config)})
    assert caught.value.problems[0] == f"{config}: timeout_seconds='soon' is not a number > 0 (default 60): fix it or unset it"
    assert caught.value.problems[1].startswith(f"{config}: colour is not a setting: remove it (known: cache, ")
    # the variable wins over the file, and is what the message names
    with pytest.raises(SettingError, match=r"^STEPWISE_LLM_TIMEOUT_SECONDS='-1' is not a number > 0"):
        LLMSettings.from_env({"STEPWISE_LLM_CONFIG": str(config), "STEPWISE_LLM_TIMEOUT_SECONDS": "-1"})
    with pytest.raises(SettingError) as missing:
        LLMSettings.from_env({"STEPWISE_LLM_CONFIG": str(tmp_path / "absent.yaml")})
    assert str(missing.value) == (
        f"STEPWISE_LLM_CONFIG={str(tmp_path / 'absent.yaml')!r} cannot be read as YAML (No such file or directory): fix it or unset it"
    )


class _Secretive(BaseModel):
    api_token: int = 0
    endpoint: int = 0


def test_a_secret_value_is_never_printed() -> None:
    names = {"api_token": "STEPWISE_API_TOKEN", "endpoint": "STEPWISE_ENDPOINT"}
    with pytest.raises(SettingError) as caught:
        validated(_Secretive, {"api_token": "sk-live-123", "endpoint": "redis://user:hunter2@cache:6379"}, names)
    message = str(caught.value)
    assert "sk-live-123" not in message and "hunter2" not in message
    assert caught.value.problems == [
        "STEPWISE_API_TOKEN='***' is not a whole number (default 0): fix it or unset it",
        "STEPWISE_ENDPOINT='redis://user:***@cache:6379' is not a whole number (default 0): fix it or unset it",
    ]


class _Accepted(BaseModel):
    share: float | None = Field(default=None, ge=0.5, lt=2, json_schema_extra={"accepted": "half a core or more"})
    ratio: float = Field(default=0.5, gt=0, lt=1)


def test_what_is_accepted_comes_from_the_field() -> None:
    with pytest.raises(SettingError) as caught:
        validated(_Accepted, {"share": "x", "ratio": "1"}, {"share": "S", "ratio": "R"})
    assert caught.value.problems == [
        "S='x' is not half a core or more (default none): fix it or unset it",
        "R='1' is not a number > 0 and < 1 (default 0.5): fix it or unset it",
    ]


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STEPWISE_")} | env
    code = f"import sys\nfrom stepwise.cli import main\nsys.argv = {['stepwise', *args]!r}\nmain()\n"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def test_run_with_a_bad_setting_prints_one_line_naming_it(tmp_path: Path) -> None:
    proc = _cli(["run", GRAPH, "--home", str(tmp_path / "home")], {"STEPWISE_LOCAL_CONCURRENCY": "abc"}, ROOT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: STEPWISE_LOCAL_CONCURRENCY='abc' is not a whole number ≥ 1 (default 256): fix it or unset it"
    # no --home: the default home is read from the same settings, and the message is the same line
    tools = _cli(["run", GRAPH], {"STEPWISE_HOME": str(tmp_path / "h2"), "STEPWISE_SANDBOX_TOTAL_CPUS": "all"}, ROOT)
    assert tools.returncode == 2, tools.stderr
    assert tools.stderr.strip() == (
        "error: STEPWISE_SANDBOX_TOTAL_CPUS='all' is not a number of cores ≥ 0.01 (0.5, 2) or 'none' (default none): fix it or unset it"
    )


def test_only_a_state_directory_problem_is_called_one(tmp_path: Path) -> None:
    home = tmp_path / "a-file"
    home.write_text("not a directory")
    proc = _cli(["run", GRAPH, "--home", str(home)], {}, ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: cannot open the state directory {home}: ")
    ok = _cli(["run", GRAPH, "--home", str(tmp_path / "home"), "--output", "json"], {"STEPWISE_LOCAL_CONCURRENCY": "4"}, ROOT)
    assert ok.returncode == 0, ok.stderr


def test_other_commands_print_a_bad_setting_in_one_line_too(tmp_path: Path) -> None:
    proc = _cli(["memory", "list", "--home", str(tmp_path / "home")], {"STEPWISE_EMBED_THREADS": "0"}, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: STEPWISE_EMBED_THREADS='0' is not a whole number ≥ 1 (default 1): fix it or unset it"


def test_serve_refuses_to_start_naming_every_bad_setting(tmp_path: Path) -> None:
    """The refusal comes before the server listens (were it to listen, the run's timeout would fail the test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"STEPWISE_SERVE_WORKERS": "x", "STEPWISE_BACKEND": "zz", "STEPWISE_EMBED_THREADS": "0", "STEPWISE_VALKEY_SECRET": "s3cret"}
    proc = _cli(["serve", "--port", str(port), "--home", str(tmp_path / "home")], env, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: STEPWISE_BACKEND='zz' is not one of 'embedded', 'memory', 'aws' (default 'embedded'): fix it or unset it; "
        "STEPWISE_SERVE_WORKERS='x' is not a whole number ≥ 1 (default 16): fix it or unset it; "
        "STEPWISE_EMBED_THREADS='0' is not a whole number ≥ 1 (default 1): fix it or unset it"
    )
    assert "listening" not in proc.stdout and "s3cret" not in proc.stderr


@pytest.mark.parametrize(
    "embedder", ["auto", "minilm-int8", "hashing", "hashing-256", "hashing-v2-512", "bedrock:amazon.titan-embed-text-v2:0#512", "bedrock:"]
)
def test_every_embedder_make_embedder_takes_is_a_valid_setting(embedder: str) -> None:
    assert MemorySettings.from_env({"STEPWISE_MEMORY_EMBEDDER": embedder}).memory_embedder == embedder
