"""GraphSpec → ASL: shapes per pattern, determinism, payload discipline and the retry table."""

import json
from pathlib import Path

import pytest

from stepwise.asl.compiler import CONFLICT_ERROR, LAMBDA_WAIT, NODE_ERROR, compile_graph, to_json
from stepwise.graph.loader import load_file, load_text


def _states(asl: dict) -> dict:
    """Every state, including those nested in Parallel branches and Map processors."""
    found = {}

    def walk(states: dict) -> None:
        for name, state in states.items():
            found[name] = state
            for branch in state.get("Branches", []):
                walk(branch["States"])
            if "ItemProcessor" in state:
                walk(state["ItemProcessor"]["States"])

    walk(asl["States"])
    return found


def compiled(examples: Path, name: str) -> dict:
    return compile_graph(load_file(examples / f"{name}.yaml"))


@pytest.mark.parametrize(
    "name", ["sequential", "conditional", "parallel", "hierarchical", "react", "human_approval", "multi_agent", "subgraph"]
)
def test_deterministic_output(examples: Path, name: str):
    first = to_json(compiled(examples, name))
    second = to_json(compile_graph(load_file(examples / f"{name}.yaml")))
    assert first == second


def test_sequential_is_a_chain_of_tasks_ending_in_end_task(examples: Path):
    asl = compiled(examples, "sequential")
    states = asl["States"]
    assert asl["StartAt"] == "__start__" and states["__start__"]["Default"] == "fetch"
    assert states["fetch"]["Next"] == "clean" and states["clean"]["Next"] == "summarize"
    assert states["summarize"]["Next"] == "__end__"
    assert states["__end__"]["Next"] == "Succeeded"
    assert asl["QueryLanguage"] == "JSONPath"


def test_payload_carries_only_references_and_routing(examples: Path):
    for name in ["sequential", "parallel", "hierarchical", "multi_agent"]:
        for state in _states(compiled(examples, name)).values():
            if state["Type"] != "Task":
                continue
            payload = state["Parameters"]["Payload"]
            assert set(payload) <= {"node", "cursor.$", "mode", "enter", "index.$", "item.$", "join", "token.$", "stay", "jump", "handover"}
            assert payload["cursor.$"] in ("$", "$.cursor")


def test_conditional_routes_without_a_choice_state(examples: Path):
    """The first condition's target is the Task's Next; every other target is a Catch on its route error."""
    states = compiled(examples, "conditional")["States"]
    task = states["evaluate"]
    assert "evaluate.route" not in states and task["Next"] == "handle_billing"
    payload = task["Parameters"]["Payload"]
    assert payload["stay"] == "handle_billing"
    assert payload["jump"] == {"handle_bug": "Stepwise.Route.1", "default": "Stepwise.Route.2"}
    catchers = [(c["ErrorEquals"], c["ResultPath"], c["Next"]) for c in task["Catch"]]
    assert catchers == [
        (["Stepwise.Route.1"], "$.jumped", "handle_bug"),
        (["Stepwise.Route.2"], "$.jumped", "default"),
        (["Stepwise.Continue"], "$.handover", "Continued"),  # a handover to a continuation execution
        (["States.ALL"], "$.error", "__failed__"),  # after the routes: a real failure still fails the run
    ]


def test_parallel_compiles_to_parallel_with_join(examples: Path):
    states = compiled(examples, "parallel")["States"]
    par = states["split.fanout"]
    assert par["Type"] == "Parallel" and par["ResultPath"] is None
    assert [b["StartAt"] for b in par["Branches"]] == ["search_web", "search_docs", "search_code"]
    third = par["Branches"][2]["States"]
    assert third["search_code"]["Parameters"]["Payload"]["enter"] == "p:split/2"
    assert third["search_code"]["Next"] == "rank" and third["rank"]["End"] is True
    assert par["Next"] == "merge_results"
    assert states["merge_results"]["Parameters"]["Payload"]["join"] == "p:split"
    assert par["Catch"][0]["Next"] == "__failed__"


def test_planner_compiles_to_map_over_items(examples: Path):
    states = compiled(examples, "multi_agent")["States"]
    mapped = states["planner.map"]
    assert mapped["Type"] == "Map" and mapped["ItemsPath"] == "$.items" and mapped["MaxConcurrency"] == 4
    assert mapped["ItemSelector"]["item.$"] == "$$.Map.Item.Value"
    pick = mapped["ItemProcessor"]["States"]["planner.pick"]
    assert {c["StringEquals"]: c["Next"] for c in pick["Choices"]} == {"code": "code_worker", "research": "research_worker"}
    assert mapped["Next"] == "synthesizer"
    assert states["synthesizer"]["Parameters"]["Payload"]["join"] == "m:planner"
    # the quality check can send work back: a cycle through a route Catch
    synth = states["synthesizer"]
    assert {synth["Next"]} | {c["Next"] for c in synth["Catch"]} == {"__end__", "planner", "__failed__", "Continued"}


def test_react_cycle_is_a_bounded_loop(examples: Path):
    states = compiled(examples, "react")["States"]
    assert states["act"]["Next"] == "reason"
    assert states["reason"]["Next"] == "act"  # the way round the loop costs no Choice
    assert any(c["Next"] == "reason" for c in states["reflect"]["Catch"]) or states["reflect"]["Next"] == "reason"


def test_human_node_waits_for_a_task_token(examples: Path):
    state = compiled(examples, "human_approval")["States"]["approve"]
    assert state["Resource"] == LAMBDA_WAIT
    assert state["Parameters"]["Payload"]["token.$"] == "$$.Task.Token"
    assert "OutputPath" not in state  # the output is what the resume sends back


def test_subgraph_is_inlined_with_prefix(examples: Path):
    asl = compiled(examples, "subgraph")
    states = asl["States"]
    assert states[asl["StartAt"]]["Default"] == "prepare/fetch"
    assert states["prepare/summarize"]["Next"] == "prepare"  # the subgraph node's own task routes onwards
    assert states["prepare"]["Next"] == "route"


def test_retry_table():
    spec = load_text(
        """
name: r
graph:
  nodes:
    a: {fn: "m:a", retry: {max_attempts: 3, interval_seconds: 2, backoff_rate: 1.5, max_delay_seconds: 10, jitter: FULL}}
  entry: a
"""
    )
    retry = compile_graph(spec)["States"]["a"]["Retry"]
    by_error = {tuple(r["ErrorEquals"]): r for r in retry}
    conflict = by_error[(CONFLICT_ERROR,)]
    assert (conflict["MaxAttempts"], conflict["BackoffRate"]) == (5, 2.0)  # checkpoint write: 5x exponential
    node = by_error[(NODE_ERROR,)]
    assert node == {
        "ErrorEquals": [NODE_ERROR],
        "IntervalSeconds": 2,
        "MaxAttempts": 3,
        "BackoffRate": 1.5,
        "MaxDelaySeconds": 10,
        "JitterStrategy": "FULL",
    }


def test_state_names_are_unique_and_within_limits(examples: Path):
    for path in examples.glob("*.yaml"):
        text = to_json(compile_graph(load_file(path)))
        names = list(_all_names(json.loads(text)["States"]))
        assert len(names) == len(set(names)), path
        assert all(len(n) <= 80 for n in names)


def _all_names(states: dict):
    for name, state in states.items():
        yield name
        for branch in state.get("Branches", []):
            yield from _all_names(branch["States"])
        if "ItemProcessor" in state:
            yield from _all_names(state["ItemProcessor"]["States"])


ROUTED = """
name: routed
state: {messages: append}
graph:
  entry: agent
  nodes:
    agent: {fn: "statemachines.examples.nodes:draft"}
    review: {fn: "statemachines.examples.nodes:draft"}
  conditional_edges:
    - from: agent
      conditions: [{if: "state.revision < 3", then: review}, {else: __end__}]
  edges: [{from: review, to: agent}]
"""


def test_routing_choice_compiles_conditions_to_a_choice_state_and_runs_the_same():
    from stepwise.client import Stepwise

    jump = load_text(ROUTED)
    choice = load_text(ROUTED.replace("  entry: agent\n", "  entry: agent\n  routing: choice\n"))
    assert jump.graph.routing == "jump" and "routing" not in jump.canonical()["graph"]  # default refs unchanged
    assert choice.canonical()["graph"]["routing"] == "choice" and choice.ref != jump.ref
    asl = compile_graph(choice)["States"]
    agent = asl["agent"]
    assert agent["Next"] == "agent.route" and "stay" not in agent["Parameters"]["Payload"]
    assert not any(e.startswith("Stepwise.Route") for c in agent.get("Catch", []) for e in c["ErrorEquals"])
    assert asl["agent.route"] == {
        "Type": "Choice",
        "Choices": [{"Variable": "$.route", "StringEquals": "review", "Next": "review"}],
        "Default": "__end__",
    }
    client = Stepwise.in_memory()
    by_jump, by_choice = client.run(jump, {}), client.run(choice, {})
    assert by_jump.status == by_choice.status == "succeeded" and by_jump.state == by_choice.state
    assert by_choice.state["revision"] == 3
    assert by_choice.transitions == by_jump.transitions + 2  # one Choice per visit of the conditional node (agent runs twice)
