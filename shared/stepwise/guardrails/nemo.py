"""NeMo Guardrails as a rail (optional extra ``nemo``): ``{check: nemo, config_path: ./rails}``.

The text goes through ``LLMRails.check`` with the rails config at ``config_path``: the ``output`` stage runs
the config's output rails on it as the bot message, every other stage (input, tool arguments and results,
memory) runs its input rails on it as the user message. ``blocked`` is a hit whose kind names the NeMo rail
that fired (``nemo:self check input``); ``modified`` (a rail rewrote the text, e.g. masked it) is a hit the
``redact`` action replaces with NeMo's text. The LLM the rails use is whatever the config names (any
OpenAI-compatible endpoint through ``parameters.base_url``).

NeMo runs on its own event loop in one background thread: ``LLMRails`` keeps HTTP clients bound to the
loop that first used them, and a rail may be checked from inside the local engine's own loop, where
NeMo's synchronous ``check`` refuses to run. Each config directory is loaded once per process.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from stepwise.graph.guardrails import RailSpec
from stepwise.guardrails.checks import Finding, Hit

_LOCK = threading.Lock()
_LOOP: asyncio.AbstractEventLoop | None = None
_RAILS: dict[str, Any] = {}


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP
    with _LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="stepwise-nemo", daemon=True).start()
            _LOOP = loop
        return _LOOP


def _rails(config_path: str) -> Any:
    from stepwise.extras import NEMO_RAILS, needs

    with needs("nemo", NEMO_RAILS):
        from nemoguardrails import LLMRails, RailsConfig
    path = Path(config_path).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"nemo rail: config_path {config_path!r} is not a directory (it must hold a NeMo Guardrails config.yml)")
    key = str(path)
    with _LOCK:
        if key not in _RAILS:
            _RAILS[key] = LLMRails(RailsConfig.from_path(key))
        return _RAILS[key]


def forget() -> None:
    """Drop the loaded configs (tests and long-lived processes that edit a config directory)."""
    with _LOCK:
        _RAILS.clear()


def nemo_check(rail: RailSpec, text: str, stage: str = "input") -> Hit | None:
    from stepwise.extras import NEMO_RAILS, needs

    with needs("nemo", NEMO_RAILS):  # without the extra: one line naming it, not a ModuleNotFoundError
        from nemoguardrails.rails.llm.options import RailStatus, RailType

    if not rail.config_path:
        raise ValueError("a nemo rail needs config_path (a NeMo Guardrails config directory)")
    rails = _rails(rail.config_path)
    kind = RailType.OUTPUT if stage == "output" else RailType.INPUT
    if not getattr(rails.config.rails, kind.value).flows:
        raise ValueError(
            f"nemo rail at stage {stage!r}: the config at {rail.config_path!r} has no rails.{kind.value}.flows; "
            f"add one (e.g. 'self check {kind.value}') or use the nemo rail only at "
            + ("the output stage" if kind is RailType.INPUT else "input/tool/memory stages")
        )
    role = "assistant" if kind is RailType.OUTPUT else "user"
    future = asyncio.run_coroutine_threadsafe(rails.check_async([{"role": role, "content": text}], rail_types=[kind]), _loop())
    result = future.result()
    if result.status == RailStatus.BLOCKED:
        return Hit([Finding(f"nemo:{result.rail or 'blocked'}", 0, len(text))], spans=False)
    if result.status == RailStatus.MODIFIED:
        return Hit([Finding("nemo:modified", 0, len(text))], spans=True, detail=result.content)
    return None
