"""Deployment settings from the environment (prefix ``STEPWISE_``): which backend, which tables and bucket.

Plain data, imported by the adapters and the executor; ``config.build_client`` assembles a client from it.

Every settings class of every layer reads its variables through :func:`validated`: a bad value raises
``SettingError`` with one line naming each bad variable, its value (``'***'`` for a secret) and what is accepted,
e.g. ``STEPWISE_LOCAL_CONCURRENCY='abc' is not a whole number ≥ 1 (default 256): fix it or unset it``.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from stepwise.errors import SettingError

M = TypeVar("M", bound=BaseModel)

#: A variable whose name holds one of these is secret: a bad value of it is shown as ``'***'``, never itself.
SECRET_MARKS = ("SECRET", "KEY", "TOKEN", "PASSWORD", "CREDENTIAL", "AUTH")
_URL_PASSWORD = re.compile(r"(://[^/@\s]*?:)[^/@\s]*@")


def validated(model: type[M], values: Mapping[str, object], names: Mapping[str, str], *, error: type[SettingError] = SettingError) -> M:
    """``model`` built from ``values`` (field -> value as read), or ``error`` naming every bad value in one line.

    ``names`` maps a field to where its value came from (``STEPWISE_X``, or a config file's key); the message says
    what the field accepts, from its type and bounds (or ``Field(json_schema_extra={"accepted": ...})``)."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise error(*refusals(model, exc, values, names)) from None


def refusals(model: type[BaseModel], exc: ValidationError, values: Mapping[str, object], names: Mapping[str, str]) -> list[str]:
    """A sentence per bad variable of a settings ``ValidationError``: its value, what it accepts, how to fix it."""
    parts: dict[str, str] = {}
    for error in exc.errors():
        loc = error["loc"]
        field = str(loc[0]) if loc else ""
        if field in parts:
            continue
        name = names.get(field, field)
        info = model.model_fields.get(field)
        reason = str(error["ctx"]["error"]) if error["type"] == "value_error" and "ctx" in error else None
        if not loc:  # a rule across fields (a model validator): its own sentence names the variables
            parts[field] = reason or error["msg"]
        elif info is None:  # an unknown key (a config file's; the environment's unknown variables are not read)
            parts[field] = f"{name} is not a setting: remove it (known: {', '.join(model.model_fields)})"
        elif len(loc) > 1:  # inside a mapping/list value: pydantic's own words for the part that is wrong
            inner = ".".join(str(p) for p in loc[1:])
            parts[field] = f"{name}: {inner}={_shown(field, name, error.get('input'))} is wrong ({error['msg']}): fix it or remove it"
        else:
            value = values.get(field, error.get("input"))
            said = accepted(info, reason)
            parts[field] = f"{name}={_shown(field, name, value)} is not {said} (default {_default(info)}): fix it or unset it"
    return list(parts.values())


def _shown(field: str, name: str, value: object) -> str:
    label = f"{field} {name.rsplit(': ', 1)[-1]}".upper()  # a config file's key, not its path
    if any(mark in label for mark in SECRET_MARKS):
        return "'***'"
    text = _URL_PASSWORD.sub(r"\1***@", value) if isinstance(value, str) else value
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "...'"


def accepted(info: FieldInfo, reason: str | None = None) -> str:
    """What a settings field accepts, in words: ``a whole number from 1 to 256``, ``one of 'a', 'b'``; ``reason``:
    a field validator's own sentence (its ``ValueError``), said after ``accepted``."""
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("accepted"), str):
        return str(extra["accepted"])
    if reason:
        return f"valid: {reason}"
    kind = info.annotation
    if get_origin(kind) in (Union, types.UnionType):
        kind = next((a for a in get_args(kind) if a is not type(None)), kind)
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(kind))
    if kind is bool:
        return "true or false (also 1/0, yes/no, on/off)"
    if kind is int:
        return "a whole number" + _bounds(info, whole=True)
    if kind is float:
        return "a number" + _bounds(info, whole=False)
    return "a valid value"


def _bounds(info: FieldInfo, *, whole: bool) -> str:
    low = high = None
    low_open = high_open = False
    for bound in info.metadata:
        if getattr(bound, "ge", None) is not None:
            low = bound.ge
        if getattr(bound, "gt", None) is not None:
            low, low_open = (bound.gt + 1, False) if whole else (bound.gt, True)
        if getattr(bound, "le", None) is not None:
            high = bound.le
        if getattr(bound, "lt", None) is not None:
            high, high_open = (bound.lt - 1, False) if whole else (bound.lt, True)
    if low is not None and high is not None and not (low_open or high_open):
        return f" from {_number(low)} to {_number(high)}"
    words = []
    if low is not None:
        words.append(f"{'>' if low_open else '≥'} {_number(low)}")
    if high is not None:
        words.append(f"{'<' if high_open else '≤'} {_number(high)}")
    return (" " + " and ".join(words)) if words else ""


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,g}"


def _default(info: FieldInfo) -> str:
    value = info.get_default(call_default_factory=True)
    if value is None or (isinstance(value, tuple | frozenset | list | dict) and not value):
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, tuple | frozenset | list):
        return repr(",".join(str(v) for v in value))
    return repr(str(value))


def read_env(model: type[M], env: Mapping[str, str], fields: Mapping[str, str] | None = None, *, skip_empty: bool = False) -> M:
    """``model`` from ``STEPWISE_<FIELD>`` variables (or the ``fields`` map: field -> variable), validated."""
    names = fields if fields is not None else {f: f"STEPWISE_{f.upper()}" for f in model.model_fields}
    given = {f: env[v] for f, v in names.items() if v in env and not (skip_empty and not env[v].strip())}
    return validated(model, given, names)


class Settings(BaseModel):
    """Where runs live and how the engine runs them; every field is ``STEPWISE_<FIELD>`` in the environment."""

    backend: Literal["embedded", "memory", "aws"] = "embedded"
    home: Path = Path(".stepwise")
    events_table: str = "stepwise-events"
    runs_table: str = "stepwise-runs"
    registry_table: str = "stepwise-registry"
    bucket: str = "stepwise-state"
    step_function_arn: str = Field(default="arn:aws:lambda:us-east-1:000000000000:function:stepwise-step")
    state_machine_role_arn: str = "arn:aws:iam::000000000000:role/stepwise-state-machine"
    name_prefix: str = "stepwise"
    snapshot_every: int = 200
    #: Threads for blocking Parallel/Map branches in the local engine (``STEPWISE_LOCAL_CONCURRENCY``).
    local_concurrency: int = Field(default=256, ge=1)
    #: A running run's lease; its owner renews it every third of this (``STEPWISE_RUN_LEASE_SECONDS``).
    run_lease_seconds: float = Field(default=30.0, gt=0)
    #: The local engine parks a run (status waiting, continued later) instead of sleeping through a rate-limit
    #: retry at least this long (``STEPWISE_PARK_AFTER_SECONDS``); Step Functions waits those out durably.
    park_after_seconds: float = Field(default=5.0, ge=0)
    #: Events one execution may append before its next top-level node continues in a new execution (0: never).
    #: 3,000 keeps a Step Functions execution far below its 25,000 history events: a top-level step costs
    #: about 5 history events and appends at least one (``STEPWISE_CONTINUE_AFTER_EVENTS``).
    continue_after_events: int = Field(default=3000, ge=0)
    #: Embedded store: the WAL a run that never waits on I/O may grow before it is checkpointed mid-run, in MiB
    #: (a checkpoint's fsync stalls the run's writes for a few ms; runs that wait on LLMs checkpoint during the
    #: wait, stopped runs after their last step) (``STEPWISE_SQLITE_WAL_LIMIT_MB``).
    sqlite_wal_limit_mb: int = Field(default=256, ge=16)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``environ`` (default: this process's environment); a bad value raises ``SettingError``."""
        import os

        return read_env(cls, os.environ if environ is None else environ)
