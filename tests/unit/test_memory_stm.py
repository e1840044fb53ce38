"""Short-term memory: budgeting rules (pure) and the Valkey-backed window, on a real embedded Valkey."""

from __future__ import annotations

import uuid

import pytest

from stepwise.memory import valkey as vk
from stepwise.memory.stm import ShortTermMemory, fit_window, messages_from_events
from stepwise.memory.tokens import count_message, counter_for, estimate
from stepwise.state.events import Event


def words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def conversation(turns: int) -> list[dict]:
    out = []
    for t in range(turns):
        out.append({"role": "user", "content": f"question {t}: " + words(30, "q")})
        out.append({"role": "assistant", "content": f"answer {t}: " + words(30, "a")})
    return out


COUNT = estimate


def test_no_budget_keeps_everything() -> None:
    msgs = conversation(5)
    window = fit_window(msgs, None, counter=COUNT)
    assert window.messages == msgs and window.dropped == 0


def test_budget_keeps_recent_turns_and_never_drops_the_question() -> None:
    msgs = [*conversation(20), {"role": "user", "content": "the current question " + words(10, "c")}]
    window = fit_window(msgs, 300, counter=COUNT, system="be brief")
    assert window.messages[-1] == msgs[-1]
    assert window.tokens <= 300 and window.dropped > 0
    assert window.messages == msgs[len(msgs) - len(window.messages) :]  # a contiguous recent suffix
    tiny = fit_window(msgs, 5, counter=COUNT, system="be brief")
    assert tiny.messages == [msgs[-1]] and tiny.over_budget


def test_tool_results_travel_with_their_call_and_current_turn_is_pinned() -> None:
    msgs = [
        *conversation(10),
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "search", "arguments": {"q": "x"}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "search", "content": words(200, "r")},
    ]
    window = fit_window(msgs, 120, counter=COUNT)
    assert window.messages[-3:] == msgs[-3:]  # the tool result still being used is kept even over budget
    older = [*conversation(3), *msgs[-3:-1], msgs[-1], {"role": "assistant", "content": "done"}, {"role": "user", "content": "next?"}]
    w2 = fit_window(older, 80, counter=COUNT)
    roles = [m.get("role") for m in w2.messages]
    if "tool" in roles:  # never a tool result without the call that produced it
        i = roles.index("tool")
        assert w2.messages[i - 1].get("tool_calls")
    assert w2.messages[-1]["content"] == "next?"


def test_pinned_messages_survive() -> None:
    msgs = [{"role": "user", "content": "my account id is 991", "pin": True}, *conversation(30)]
    window = fit_window(msgs, 200, counter=COUNT)
    assert window.messages[0]["content"] == "my account id is 991"


def test_token_counter_is_real_bpe_when_installed() -> None:
    counter, name = counter_for("openai:gpt-4o-mini")
    assert name == "o200k_base"
    assert counter("Hello world, how are you doing today?") == 9
    _, other = counter_for("anthropic:claude-3-5-haiku")
    assert "estimate" in other
    assert count_message({"role": "user", "content": "hi"}, counter) == 1 + 4


@pytest.fixture
def stm() -> ShortTermMemory:
    return ShortTermMemory(vk.client(), prefix=f"test:stm:{uuid.uuid4().hex[:8]}")


def test_valkey_stm_sync_window_evict_and_rebuild(stm: ShortTermMemory) -> None:
    msgs = [*conversation(30), {"role": "user", "content": "what now?"}]
    stm.sync("acme", "th-1", msgs[:10])
    stm.sync("acme", "th-1", msgs)
    assert stm.messages("acme", "th-1") == msgs
    window = stm.window("acme", "th-1", 400, system="sys", model="openai:gpt-4o")
    assert window.messages[-1]["content"] == "what now?" and window.tokens <= 400 and window.tokenizer == "o200k_base"
    stm.evict("acme", "th-1", 20, "they talked about q and a")
    offset, held, summary = stm.state("acme", "th-1")
    assert offset == 20 and held == msgs[20:] and summary == "they talked about q and a"
    assert stm.window("acme", "th-1", 4000).summary == "they talked about q and a"
    # the next sync appends only what is new, after the evicted offset
    stm.sync("acme", "th-1", [*msgs, {"role": "assistant", "content": "ok"}])
    assert stm.messages("acme", "th-1")[-1]["content"] == "ok" and len(stm.messages("acme", "th-1")) == len(msgs) - 20 + 1
    # another tenant's thread of the same id is a different STM
    assert stm.messages("other", "th-1") == []


def test_stm_rebuilds_from_the_event_log_after_cache_loss(stm: ShortTermMemory) -> None:
    events = [
        Event(type="run_started", data={"update": {"messages": [{"role": "user", "content": "hi"}]}}),
        Event(type="llm_call", data={"response": {"role": "assistant", "content": "not state"}}),
        Event(type="node_update", node="a", data={"update": {"messages": [{"role": "assistant", "content": "hello"}]}}),
    ]
    stm.sync("acme", "t2", messages_from_events(events))
    stm.clear("acme", "t2")  # the cache is lost
    assert not stm.exists("acme", "t2")
    assert stm.rebuild_from_events("acme", "t2", events) == 2
    assert [m["content"] for m in stm.messages("acme", "t2")] == ["hi", "hello"]
