"""The work both systems do, defined once: message texts, the ReAct turn logic, the fan-out updates.

Both Stepwise's function nodes (``bench.nodes``) and LangGraph's nodes (``bench.peer``) call these
functions, so the two systems execute exactly the same Python per node and store the same messages.
Texts are pseudo-English from a fixed seed: about 500 bytes each, and roughly as compressible as prose
(a vocabulary of ~2,000 made-up words), so neither byte counts nor snapshot compression are flattered.
"""

from __future__ import annotations

import json
import random
from typing import Any

MESSAGE_BYTES = 500
FANOUT_WORKERS = 50
_POOL = 256


def _texts() -> list[str]:
    rng = random.Random(20240601)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 4, 4, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    vocab = ["".join(rng.choices(letters, weights, k=rng.randint(2, 9))) for _ in range(2000)]
    out = []
    for _ in range(_POOL):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < MESSAGE_BYTES:
            words.append(rng.choice(vocab))
        out.append(" ".join(words)[:MESSAGE_BYTES])
    return out


TEXTS = _texts()


def user_message() -> dict[str, Any]:
    return {"role": "user", "content": TEXTS[0]}


def react_input(turns: int) -> dict[str, Any]:
    """The initial state of a W1 run: one user message and the number of tool turns to take."""
    return {"messages": [user_message()], "turns": turns}


def turn_of(messages: list[Any]) -> int:
    # messages = [user, ai_1, tool_1, ai_2, tool_2, ...]; the agent about to speak is on turn len//2
    return (len(messages) - 1) // 2


def agent_update(messages: list[Any], turns: int) -> dict[str, Any]:
    """The agent's reply: a tool call on turns 0..N-1, then a final answer (N tool turns, 2N+1 steps)."""
    turn = turn_of(messages)
    text = TEXTS[(2 * turn + 1) % _POOL]
    if turn < turns:
        call = {"id": f"call_{turn}", "name": "search", "args": {"query": f"q{turn}"}}
        return {"messages": [{"role": "assistant", "content": text, "tool_calls": [call]}]}
    return {"messages": [{"role": "assistant", "content": text}]}


def tool_update(messages: list[Any]) -> dict[str, Any]:
    turn = turn_of(messages)
    return {"messages": [{"role": "tool", "content": TEXTS[(2 * turn + 2) % _POOL], "tool_call_id": f"call_{turn}"}]}


def react_steps(turns: int) -> int:
    """Node executions in a W1 run of ``turns`` tool turns: N+1 agent steps and N tool steps."""
    return 2 * turns + 1


def react_messages(turns: int) -> list[dict[str, Any]]:
    """The final message list of a W1 run, computed without running anything."""
    messages = [user_message()]
    while True:
        update = agent_update(messages, turns)["messages"]
        messages += update
        if "tool_calls" not in update[0]:
            return messages
        messages += tool_update(messages)["messages"]


def raw_message_bytes(turns: int) -> int:
    """The baseline for W2: the final message list as compact UTF-8 JSON."""
    return len(json.dumps(react_messages(turns), separators=(",", ":"), ensure_ascii=False).encode())


def split_update(workers: int) -> dict[str, Any]:
    return {"tasks": [f"t{i}" for i in range(workers)]}


def worker_update(index: int) -> dict[str, Any]:
    return {"results": [{"worker": index, "text": TEXTS[(index * 7) % _POOL]}]}


def join_update(results: list[Any]) -> dict[str, Any]:
    return {"count": len(results), "workers": sorted(r["worker"] for r in results)[:3]}


# -- W5: I/O-bound fan-out (every branch waits on one "LLM call") ------------------------------------
IO_LATENCY_S = 0.2


def io_update(index: int) -> dict[str, Any]:
    return {"results": [{"worker": index, "text": TEXTS[(index * 7) % _POOL][:64]}]}


# -- W6: many short runs into one store -------------------------------------------------------------
def short_update(step: int) -> dict[str, Any]:
    """One of the three nodes of a W6 run: a small message, like a router or a tool's reply."""
    return {"messages": [{"role": "assistant", "content": TEXTS[step % _POOL][:120]}]}
