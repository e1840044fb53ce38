"""Short-term memory (STM): a thread's context window in Valkey, fitted to a token budget.

The thread's event log is the source of truth; Valkey holds a working copy (messages not yet evicted,
the running summary of evicted ones, and how many messages were evicted). Losing Valkey loses no data:
``rebuild`` re-reads the messages from the event log.

Budgeting (``fit_window``, a pure function): the system prompt and the *current turn* (the user's latest
question and every assistant/tool message after it — tool results the agent is still working with) are
pinned, as is any message marked ``pin: true``; older turns are added newest-first while they fit; an
assistant message that called tools travels with its tool results, so no result is ever orphaned. The
current question is never dropped: if the pinned part alone exceeds the budget, the window says so
(``over_budget``) and keeps it anyway.

Valkey layout (``t`` = hash of the tenant): ``stepwise:stm:{t}:{thread}:m`` list of JSON messages,
``:s`` summary text, ``:o`` number of messages evicted (the offset into the thread's messages).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepwise.memory.tokens import MESSAGE_OVERHEAD, Counter, count_message, counter_for

SUMMARY_PREFIX = "Summary of the earlier conversation: "


@dataclass
class Window:
    """The messages that fit an STM token budget."""

    messages: list[dict[str, Any]]
    tokens: int
    budget: int | None
    dropped: int = 0
    summary: str | None = None
    over_budget: bool = False
    tokenizer: str = ""
    dropped_messages: list[dict[str, Any]] = field(default_factory=list)


def _units(messages: Sequence[dict[str, Any]]) -> list[list[int]]:
    """Group message indexes: an assistant message with tool calls plus the tool results answering it."""
    units: list[list[int]] = []
    open_calls: set[str] = set()
    for i, m in enumerate(messages):
        if m.get("role") == "tool" and units and (m.get("tool_call_id") in open_calls or not m.get("tool_call_id")):
            units[-1].append(i)
            continue
        units.append([i])
        open_calls = {str(c.get("id")) for c in m.get("tool_calls") or [] if isinstance(c, dict)}
    return units


def fit_window(
    messages: Sequence[dict[str, Any]],
    budget: int | None,
    *,
    counter: Counter,
    system: str | None = None,
    summary: str | None = None,
    tokenizer: str = "",
) -> Window:
    msgs = [m for m in messages if isinstance(m, dict)]
    sizes = [count_message(m, counter) for m in msgs]
    system_tokens = counter(system) + MESSAGE_OVERHEAD if system else 0
    if budget is None:
        return Window(msgs, sum(sizes) + system_tokens, None, summary=summary, tokenizer=tokenizer)
    last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=len(msgs))
    units = _units(msgs)
    keep: set[int] = set()
    for unit in units:
        if unit[-1] >= last_user or any(msgs[i].get("pin") for i in unit):
            keep.update(unit)
    used = system_tokens + sum(sizes[i] for i in keep)
    over = used > budget
    summary_tokens = counter(SUMMARY_PREFIX + summary) + MESSAGE_OVERHEAD if summary else 0
    reserve = summary_tokens if summary and used + summary_tokens <= budget else 0
    for unit in reversed(units):
        if unit[0] in keep:
            continue
        cost = sum(sizes[i] for i in unit)
        if used + reserve + cost > budget:
            break
        keep.update(unit)
        used += cost
    kept = [msgs[i] for i in sorted(keep)]
    dropped = [msgs[i] for i in range(len(msgs)) if i not in keep]
    use_summary = summary if summary and used + summary_tokens <= budget else None
    if use_summary:
        used += summary_tokens
    return Window(kept, used, budget, len(dropped), use_summary, over, tokenizer, dropped)


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ShortTermMemory:
    """Per-thread STM in Valkey (any redis-py compatible client). Every key is under a tenant hash."""

    def __init__(self, client: Any, *, prefix: str = "stepwise:stm", ttl_seconds: int = 7 * 24 * 3600) -> None:
        self.client, self.prefix, self.ttl = client, prefix, ttl_seconds

    def _key(self, tenant: str, thread_id: str, part: str) -> str:
        return f"{self.prefix}:{_h('tenant:' + tenant)}:{_h(thread_id)}:{part}"

    def exists(self, tenant: str, thread_id: str) -> bool:
        return bool(self.client.exists(self._key(tenant, thread_id, "o")))

    def state(self, tenant: str, thread_id: str) -> tuple[int, list[dict[str, Any]], str | None]:
        """(evicted count, messages held, summary)."""
        pipe = self.client.pipeline()
        pipe.get(self._key(tenant, thread_id, "o"))
        pipe.lrange(self._key(tenant, thread_id, "m"), 0, -1)
        pipe.get(self._key(tenant, thread_id, "s"))
        offset, raw, summary = pipe.execute()
        text = summary.decode() if isinstance(summary, bytes) else summary
        return int(offset or 0), [json.loads(m) for m in raw], text or None

    def messages(self, tenant: str, thread_id: str) -> list[dict[str, Any]]:
        return self.state(tenant, thread_id)[1]

    def _touch(self, pipe: Any, tenant: str, thread_id: str) -> None:
        for part in ("m", "s", "o"):
            pipe.expire(self._key(tenant, thread_id, part), self.ttl)

    def append(self, tenant: str, thread_id: str, messages: Iterable[dict[str, Any]]) -> None:
        rows = [json.dumps(m, default=str, separators=(",", ":")) for m in messages]
        pipe = self.client.pipeline()
        pipe.setnx(self._key(tenant, thread_id, "o"), 0)
        if rows:
            pipe.rpush(self._key(tenant, thread_id, "m"), *rows)
        self._touch(pipe, tenant, thread_id)
        pipe.execute()

    def sync(self, tenant: str, thread_id: str, thread_messages: Sequence[dict[str, Any]]) -> None:
        """Bring STM up to date with the thread's messages (the state's ``messages`` channel)."""
        if not self.exists(tenant, thread_id):
            self.rebuild(tenant, thread_id, thread_messages)
            return
        offset, held, _ = self.state(tenant, thread_id)
        missing = list(thread_messages[offset + len(held) :])
        if missing:
            self.append(tenant, thread_id, missing)

    def rebuild(self, tenant: str, thread_id: str, thread_messages: Sequence[dict[str, Any]], *, offset: int = 0) -> None:
        """Replace STM with the thread's messages from ``offset`` on (after a cache loss or flush)."""
        pipe = self.client.pipeline()
        pipe.delete(self._key(tenant, thread_id, "m"), self._key(tenant, thread_id, "s"))
        pipe.set(self._key(tenant, thread_id, "o"), offset)
        rows = [json.dumps(m, default=str, separators=(",", ":")) for m in thread_messages[offset:]]
        if rows:
            pipe.rpush(self._key(tenant, thread_id, "m"), *rows)
        self._touch(pipe, tenant, thread_id)
        pipe.execute()

    def rebuild_from_events(self, tenant: str, thread_id: str, events: Iterable[Any], channel: str = "messages") -> int:
        """Rebuild from the thread's event log (``run_started``/``node_update`` deltas of ``channel``)."""
        messages = messages_from_events(events, channel)
        self.rebuild(tenant, thread_id, messages)
        return len(messages)

    def evict(self, tenant: str, thread_id: str, count: int, summary: str | None) -> None:
        """Drop the ``count`` oldest held messages and record the running summary that replaces them."""
        if count <= 0 and summary is None:
            return
        pipe = self.client.pipeline()
        if count > 0:
            pipe.ltrim(self._key(tenant, thread_id, "m"), count, -1)
            pipe.incrby(self._key(tenant, thread_id, "o"), count)
        if summary is not None:
            pipe.set(self._key(tenant, thread_id, "s"), summary)
        self._touch(pipe, tenant, thread_id)
        pipe.execute()

    def clear(self, tenant: str, thread_id: str) -> None:
        self.client.delete(*(self._key(tenant, thread_id, p) for p in ("m", "s", "o")))

    def window(self, tenant: str, thread_id: str, budget: int | None, *, system: str | None = None, model: str | None = None) -> Window:
        _, held, summary = self.state(tenant, thread_id)
        counter, name = counter_for(model)
        return fit_window(held, budget, counter=counter, system=system, summary=summary, tokenizer=name)


def messages_from_events(events: Iterable[Any], channel: str = "messages") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for event in events:
        if getattr(event, "type", "") not in ("run_started", "node_update", "join"):
            continue
        update = (getattr(event, "data", None) or {}).get("update") or {}
        value = update.get(channel) if isinstance(update, dict) else None
        if isinstance(value, list):
            out.extend(m for m in value if isinstance(m, dict))
    return out
