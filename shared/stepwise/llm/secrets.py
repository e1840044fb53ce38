"""API keys from the environment or AWS Secrets Manager. Keys are returned to the SDK and never logged,
printed or stored in events: errors name the variable or secret id, never the value."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping

from stepwise.errors import StepwiseError

_cache: dict[str, str] = {}
_lock = threading.Lock()


class MissingCredentials(StepwiseError, RuntimeError):
    """No API key in the environment or Secrets Manager for a provider that needs one."""


def api_key(env_var: str, environ: Mapping[str, str], *, required: bool = True) -> str | None:
    """``environ[ENV_VAR]``, else the Secrets Manager secret named by ``environ[STEPWISE_<ENV_VAR>_SECRET]``.

    ``environ``: the credentials read at the process's start (``LLMSettings.credentials``) or a test's mapping.
    The secret may be the bare key or a JSON object with an ``api_key`` field.
    """
    env = environ
    value = env.get(env_var)
    if value:
        return value
    secret_id = env.get(f"STEPWISE_{env_var}_SECRET")
    if secret_id:
        return _from_secrets_manager(secret_id)
    if required:
        raise MissingCredentials(f"no API key: set {env_var}, or STEPWISE_{env_var}_SECRET to a Secrets Manager secret id")
    return None


def _from_secrets_manager(secret_id: str) -> str:
    with _lock:
        if secret_id in _cache:
            return _cache[secret_id]
    from stepwise.extras import needs

    with needs("aws", "model API keys kept in Secrets Manager"):  # lazy: only deployments that keep keys there need boto3
        from stepwise import awsclients

    raw = str(awsclients.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])
    key = raw
    try:
        parsed = json.loads(raw)
        if isinstance(parsed, dict):
            key = str(parsed.get("api_key") or parsed.get("apiKey") or "")
    except json.JSONDecodeError:
        pass
    if not key:
        raise MissingCredentials(f"secret {secret_id!r} holds no api_key field")
    with _lock:
        _cache[secret_id] = key
    return key
