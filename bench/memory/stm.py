"""STM tokens sent per turn on a 200-turn conversation: Stepwise with an STM budget (plus retrieved long-term
memories) vs Stepwise without a budget vs LangGraph's default (the whole ``MessagesState`` list each call).

Both engines run the same conversation against an offline model that records what it is sent; tokens are
counted with the same tokenizer (``o200k_base``). The user states a fact at turn 5 ("My locker code is
4417.") and asks for it at turn 200: "fact in context" says whether the last call could answer.
"""

from __future__ import annotations

import tempfile
from typing import Any

from stepwise.memory.tokens import count_message, counter_for

TURNS = 200
BUDGET = 1500
FACT_TURN, FACT, QUESTION, ANSWER = 5, "My locker code is 4417.", "What is my locker code again?", "4417"
REPLY = "Here is a considered answer that walks through the main points, the trade-offs and a recommendation. " * 3


def user_turn(i: int) -> str:
    if i == FACT_TURN:
        return f"{FACT} Please keep that in mind."
    if i == TURNS - 1:
        return QUESTION
    return f"Question {i}: how should we approach part {i} of the migration plan, given the constraints we discussed so far?"


def _tokens(system: str | None, messages: list[dict[str, Any]]) -> int:
    counter, _ = counter_for("openai:gpt-4o")
    return (counter(system) + 4 if system else 0) + sum(count_message(m, counter) for m in messages)


def stepwise_run(budget: int | None) -> dict[str, Any]:
    from stepwise.client import Stepwise
    from stepwise.graph.loader import load_text
    from stepwise.llm import scripted

    memory = (
        f"      memory: {{stm_budget: {budget}, namespaces: ['{{tenant}}/bench/{{user}}'], "
        "strategies: [semantic, preference, summary], top_k: 3}\n"
        if budget
        else ""
    )
    spec = load_text(
        "name: stm-bench\nstate: {messages: append}\ngraph:\n  nodes:\n    assistant:\n      kind: agent\n      model: scripted\n"
        f"      system: You are a helpful assistant.\n      script: [{REPLY!r}]\n{memory}  entry: assistant\n"
    )
    seen: list[tuple[int, bool]] = []
    original = scripted.ScriptedModel.complete

    def recording(self: Any, request: Any) -> Any:
        text = (request.system or "") + " ".join(str(m.get("content") or "") for m in request.messages)
        seen.append((_tokens(request.system, request.messages), ANSWER in text))
        return original(self, request)

    scripted.ScriptedModel.complete = recording  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as home:
            client = Stepwise.embedded(home)
            thread = "stm-bench-thread"
            for i in range(TURNS):
                client.run(spec, {"user_id": "u1", "messages": [{"role": "user", "content": user_turn(i)}]}, thread_id=thread)
            client.services.memory.close()
    finally:
        scripted.ScriptedModel.complete = original  # type: ignore[method-assign]
    return _summary(seen)


def langgraph_run() -> dict[str, Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, MessagesState, StateGraph

    seen: list[tuple[int, bool]] = []

    def assistant(state: MessagesState) -> dict[str, Any]:
        messages = [SystemMessage("You are a helpful assistant."), *state["messages"]]
        as_dicts = [{"role": m.type, "content": m.content} for m in messages[1:]]
        text = " ".join(str(m.content) for m in messages)
        seen.append((_tokens("You are a helpful assistant.", as_dicts), ANSWER in text))
        return {"messages": [AIMessage(REPLY)]}

    builder = StateGraph(MessagesState)
    builder.add_node("assistant", assistant)
    builder.add_edge(START, "assistant")
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "stm-bench"}}
    for i in range(TURNS):
        graph.invoke({"messages": [HumanMessage(user_turn(i))]}, config)  # type: ignore[arg-type]
    return _summary(seen)


def _summary(seen: list[tuple[int, bool]]) -> dict[str, Any]:
    tokens = [t for t, _ in seen]
    return {
        "calls": len(tokens),
        "tokens_total": sum(tokens),
        "tokens_mean_per_turn": round(sum(tokens) / len(tokens), 1),
        "tokens_max_turn": max(tokens),
        "tokens_last_turn": tokens[-1],
        "fact_in_context_at_last_turn": seen[-1][1],
    }


def run() -> dict[str, Any]:
    budgeted = stepwise_run(BUDGET)
    whole = stepwise_run(None)
    peer = langgraph_run()
    return {
        "turns": TURNS,
        "budget": BUDGET,
        "tokenizer": "o200k_base",
        "stepwise_budgeted": budgeted,
        "stepwise_unbudgeted": whole,
        "langgraph_messages_state": peer,
        "total_ratio_langgraph_over_budgeted": round(peer["tokens_total"] / budgeted["tokens_total"], 2),
    }
