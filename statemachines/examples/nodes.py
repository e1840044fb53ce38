"""Function nodes used by the example graphs. Each is ``def node(state) -> dict`` returning its update."""

from __future__ import annotations

from typing import Any


# -- sequential ----------------------------------------------------------------------------------
def fetch(state: dict[str, Any]) -> dict[str, Any]:
    return {"text": state.get("text") or "  Stepwise runs agent graphs DURABLY on Step Functions.  ", "log": ["fetch"]}


def clean(state: dict[str, Any]) -> dict[str, Any]:
    return {"text": " ".join(state["text"].split()).lower(), "log": ["clean"]}


def summarize(state: dict[str, Any]) -> dict[str, Any]:
    words = state["text"].split()
    return {"summary": " ".join(words[:5]) + ("…" if len(words) > 5 else ""), "words": len(words), "log": ["summarize"]}


# -- conditional (the seed's support router) -------------------------------------------------------
def evaluate(state: dict[str, Any]) -> dict[str, Any]:
    ticket = str(state.get("ticket", ""))
    kind = state.get("type") or ("A" if "refund" in ticket else "B" if "bug" in ticket else "other")
    return {"type": kind, "trail": ["evaluate"]}


def handle_billing(state: dict[str, Any]) -> dict[str, Any]:
    return {"reply": "Billing will process your refund within 3 days.", "trail": ["handle_billing"]}


def handle_bug(state: dict[str, Any]) -> dict[str, Any]:
    return {"reply": "Engineering has a ticket for this bug.", "trail": ["handle_bug"]}


def default(state: dict[str, Any]) -> dict[str, Any]:
    return {"reply": "A human agent will get back to you.", "trail": ["default"]}


# -- parallel --------------------------------------------------------------------------------------
def split(state: dict[str, Any]) -> dict[str, Any]:
    return {"query": state.get("query", "event sourcing"), "trail": ["split"]}


def search_web(state: dict[str, Any]) -> dict[str, Any]:
    return {"findings": {"web": f"3 articles about {state['query']}"}, "trail": ["search_web"]}


def search_docs(state: dict[str, Any]) -> dict[str, Any]:
    return {"findings": {"docs": f"2 internal docs about {state['query']}"}, "trail": ["search_docs"]}


def search_code(state: dict[str, Any]) -> dict[str, Any]:
    return {"findings": {"code": f"5 code references to {state['query']}"}, "trail": ["search_code"]}


def rank(state: dict[str, Any]) -> dict[str, Any]:
    return {"ranked": sorted(state["findings"]), "trail": ["rank"]}


def merge_results(state: dict[str, Any]) -> dict[str, Any]:
    return {"report": "; ".join(f"{k}: {v}" for k, v in sorted(state["findings"].items())), "trail": ["merge_results"]}


# -- human approval ----------------------------------------------------------------------------------
def draft(state: dict[str, Any]) -> dict[str, Any]:
    revision = int(state.get("revision", 0)) + 1
    return {
        "draft": f"Refund of {state.get('amount', 40)} EUR for order {state.get('order', 'A-17')} (rev {revision})",
        "revision": revision,
    }


def publish(state: dict[str, Any]) -> dict[str, Any]:
    return {"published": True, "outcome": f"sent: {state['draft']}"}


def reject(state: dict[str, Any]) -> dict[str, Any]:
    return {"published": False, "outcome": f"rejected: {state.get('comment', 'no reason given')}"}


# -- multi-agent coordination -------------------------------------------------------------------------
def coordinate(state: dict[str, Any]) -> dict[str, Any]:
    question = state.get("question", "How should we add retries to our payment client?")
    return {"messages": [{"role": "user", "content": question}], "round": int(state.get("round", 0)) + 1}


def fail_on_purpose(state: dict[str, Any]) -> dict[str, Any]:
    raise ValueError(f"cannot process ticket {state.get('ticket')!r}")


# -- structural building blocks (used by tests of nested and looping graphs) ------------------------------
def tick(state: dict[str, Any]) -> dict[str, Any]:
    return {"round": int(state.get("round", 0)) + 1, "trail": ["tick"]}


def mark(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Record that this node ran, by name."""
    return {"trail": [ctx.node]}


async def lookup_async(state: dict[str, Any]) -> dict[str, Any]:
    """An ``async def`` node (like one awaiting an async SDK): the engine awaits it; fan-out branches wait
    without a thread each."""
    import asyncio

    await asyncio.sleep(0)
    return {"trail": ["lookup_async"]}
