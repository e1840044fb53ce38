"""The memory layer's settings, read from the environment once (``MemorySettings.from_env``) where a process
starts (``Services``, the memory CLI, the memory Lambda) and passed in: nothing else in ``stepwise.memory`` reads
the environment.

STEPWISE_MEMORY_BACKEND        ``embedded`` (default: files under the engine's home) or ``opensearch``
STEPWISE_OPENSEARCH_ENDPOINT   an OpenSearch Serverless collection (SigV4, region ``AWS_REGION``)
STEPWISE_OPENSEARCH_URL        any OpenSearch endpoint, unsigned (e.g. a self-hosted node)
STEPWISE_OPENSEARCH_INDEX      the index (default ``stepwise-memory``)
STEPWISE_VALKEY_URL/_SECRET    short-term memory's Valkey and the secret with its credentials (else embedded)
STEPWISE_MEMORY_EMBEDDER       ``auto`` (default), ``minilm-int8``, ``hashing[-DIM]`` or ``bedrock:MODEL[#DIM]``
STEPWISE_EMBED_THREADS         onnxruntime threads of the MiniLM embedder (default 1)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stepwise.settings import validated

#: What ``make_embedder`` accepts: checked when the settings are read, so a typo fails in one line naming the
#: variable, not when the memory store first opens.
EMBEDDERS = "auto, minilm-int8, hashing, hashing-DIM, hashing-v2-DIM or bedrock:MODEL[#DIM]"
EMBEDDER = r"^(auto|minilm-int8|hashing|hashing(-v2)?-[1-9][0-9]{0,4}|bedrock:[A-Za-z0-9._:-]*(#[1-9][0-9]{0,4})?)$"


class MemorySettings(BaseModel):
    """Where long- and short-term memory live and how texts are embedded."""

    model_config = ConfigDict(frozen=True)

    memory_backend: Literal["embedded", "opensearch"] = "embedded"
    opensearch_endpoint: str | None = None
    opensearch_url: str | None = None
    opensearch_index: str = "stepwise-memory"
    aws_region: str | None = None
    valkey_url: str | None = None
    valkey_secret: str | None = None
    memory_embedder: str = Field(default="auto", pattern=EMBEDDER, json_schema_extra={"accepted": EMBEDDERS})
    embed_threads: int = Field(default=1, ge=1)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MemorySettings:
        """The settings in ``environ`` (default: this process's environment); ``AWS_REGION`` without the prefix.
        A bad value raises ``SettingError`` naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            name: env[f"STEPWISE_{name.upper()}"] for name in cls.model_fields if env.get(f"STEPWISE_{name.upper()}")
        }
        if env.get("AWS_REGION"):
            values["aws_region"] = env["AWS_REGION"]
        names = {name: f"STEPWISE_{name.upper()}" for name in cls.model_fields} | {"aws_region": "AWS_REGION"}
        return validated(cls, values, names)
