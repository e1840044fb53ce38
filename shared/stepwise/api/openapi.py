"""The OpenAPI document, generated from the routes and models (Powertools' generator).

    python -m stepwise.api.openapi > docs/openapi.json

The committed docs/openapi.json is checked in a test to equal what this prints.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from stepwise.api.app import create_app
from stepwise.api.settings import ApiSettings
from stepwise.store.memory import MemoryApiStore


def document() -> dict[str, Any]:
    def no_client() -> Any:
        raise RuntimeError("generating the OpenAPI document needs no engine client")

    return create_app(no_client, store=MemoryApiStore(), settings=ApiSettings(backend="memory")).openapi()


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
