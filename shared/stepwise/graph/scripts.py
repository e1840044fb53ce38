"""Scripted-model turns: a node's ``script:`` is a list, or a YAML file the loader inlines into the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["load_script"]


def load_script(script: list[Any] | str | None, base_dir: Path | None = None) -> list[Any]:
    """The script as a list: given inline, or read from a YAML/JSON file relative to ``base_dir``."""
    if script is None:
        return []
    if isinstance(script, list):
        return script
    path = Path(script)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"script file {path} must hold a YAML/JSON list of responses")
    return data
