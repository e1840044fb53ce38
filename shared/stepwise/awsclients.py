"""boto3 clients that honour an endpoint override, so every AWS adapter also runs against a stand-in.

- ``AWS_ENDPOINT_URL_<SERVICE_ID>`` or ``AWS_ENDPOINT_URL``: send the calls there (moto's
  ``ThreadedMotoServer``, LocalStack, DynamoDB Local…). The service-specific variable wins. Its name is
  botocore's: ``AWS_ENDPOINT_URL_`` + the service id upper-cased with ``_`` for spaces and dashes —
  ``DYNAMODB``, ``S3``, ``SFN`` (Step Functions), ``LAMBDA``, ``SECRETS_MANAGER``, ``BEDROCK_RUNTIME``,
  ``EVENTBRIDGE`` — so the AWS CLI, CDK tooling and these clients all read the same variables.
- ``STEPWISE_LOCALSTACK=1``: build the client through the ``localstack-client`` package, which knows
  LocalStack's edge endpoint (``LOCALSTACK_HOST``) and its dummy credentials.

Clients retry throttling and 5xx errors in botocore's ``standard`` mode (5 attempts, exponential
backoff with jitter): the "checkpoint write 5× exponential" rule. A conditional-check failure is
never retried here; it is the conflict signal the event store turns into ``ConflictError``.
Each call returns a new client from a fresh session (boto3's default session is not thread-safe to
create, and a fresh session resolves credentials from the current environment); the sessions share
one botocore data loader, so service models are parsed once per process. Callers keep their client.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping
from typing import Any

from stepwise.extras import needs

with needs("aws", "the AWS backend (STEPWISE_BACKEND=aws)"):  # the base install: one line naming the extra
    import boto3
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import UnknownServiceError
    from botocore.loaders import Loader, create_loader

RETRIES = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
_loader: Loader | None = None
_loader_lock = threading.Lock()


def _session() -> boto3.session.Session:
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = create_loader()
        core = botocore.session.get_session()
        core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core)


def region(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


@functools.lru_cache(maxsize=64)
def endpoint_variable(service: str) -> str:
    """botocore's service-specific endpoint variable for a client name (``stepfunctions`` -> ``AWS_ENDPOINT_URL_SFN``)."""
    try:
        service_id = _session()._session.get_service_model(service).service_id
    except UnknownServiceError:
        return "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
    return "AWS_ENDPOINT_URL_" + str(service_id.hyphenize()).replace("-", "_").upper()


def endpoint_for(service: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The endpoint override for ``service``, if any (service-specific variable first)."""
    env = os.environ if environ is None else environ
    return (env.get(endpoint_variable(service)) or env.get("AWS_ENDPOINT_URL") or "").strip() or None


def client(service: str, *, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
    """A boto3 client for ``service`` (``dynamodb``, ``s3``, ``stepfunctions``…) with the override applied."""
    env = os.environ if environ is None else environ
    kwargs.setdefault("config", RETRIES)
    if env.get("STEPWISE_LOCALSTACK", "").lower() in ("1", "true", "yes"):
        from localstack_client.session import Session as LocalStackSession

        return LocalStackSession(region_name=region(env) or "us-east-1").client(service, **kwargs)
    endpoint = endpoint_for(service, env)
    if endpoint is not None:
        kwargs.setdefault("endpoint_url", endpoint)
    if region(env) is not None:
        kwargs.setdefault("region_name", region(env))
    return _session().client(service, **kwargs)
