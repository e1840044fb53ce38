"""Whole runs on the local engine: every example, human approval, failures and iteration bounds."""

from collections import Counter
from pathlib import Path

import pytest

from stepwise.client import Stepwise
from stepwise.errors import StepwiseError
from stepwise.graph.loader import load_file, load_text
from stepwise.state.events import NODE_UPDATE, RUN_FAILED, RUN_FINISHED


def visits(client: Stepwise, thread_id: str) -> Counter:
    return Counter(e.node for e in client.history(thread_id) if e.type == NODE_UPDATE)


def test_sequential(examples: Path, embedded_client: Stepwise):
    result = embedded_client.run(load_file(examples / "sequential.yaml"), {"text": "One  Two Three"})
    assert result.status == "succeeded"
    assert result.state["log"] == ["fetch", "clean", "summarize"]
    assert result.state["summary"] == "one two three" and result.state["words"] == 3


@pytest.mark.parametrize(("ticket", "handler"), [("refund please", "handle_billing"), ("a bug", "handle_bug"), ("hello", "default")])
def test_conditional_routes(examples: Path, memory_client: Stepwise, ticket: str, handler: str):
    result = memory_client.run(load_file(examples / "conditional.yaml"), {"ticket": ticket})
    assert result.state["trail"] == ["evaluate", handler]


def test_parallel_join_is_deterministic(examples: Path, memory_client: Stepwise):
    spec = load_file(examples / "parallel.yaml")
    trails = {tuple(memory_client.run(spec, {"query": "q"}).state["trail"]) for _ in range(5)}
    assert trails == {("split", "search_web", "search_docs", "search_code", "rank", "merge_results")}
    result = memory_client.run(spec, {"query": "q"})
    assert set(result.state["findings"]) == {"web", "docs", "code"}
    assert result.state["report"].startswith("code: 5 code references to q")


def test_hierarchical_map_runs_every_subtask(examples: Path, memory_client: Stepwise):
    result = memory_client.run(load_file(examples / "hierarchical.yaml"), {})
    assert result.state["findings"] == {
        "r1": "notes on survey retry strategies",
        "r2": "notes on read the payment API's rate limits",
        "c1": "def backoff(): ...  # write a backoff helper",
    }
    assert visits(memory_client, result.thread_id) == Counter(plan=1, researcher=2, coder=1, combine=1)


def test_react_loop_with_reflection(examples: Path, memory_client: Stepwise):
    result = memory_client.run(load_file(examples / "react.yaml"), {"messages": [{"role": "user", "content": "17*23?"}]})
    assert result.status == "succeeded"
    tool_message = next(m for m in result.state["messages"] if m["role"] == "tool")
    assert tool_message["content"] == "391"
    assert [r["content"] for r in result.state["reflections"]] == ["revise: show the check", "approve"]
    assert visits(memory_client, result.thread_id) == Counter(reason=3, act=1, reflect=2)


def test_multi_agent_flow_loops_until_quality_passes(examples: Path, embedded_client: Stepwise):
    result = embedded_client.run(load_file(examples / "multi_agent.yaml"), {"question": "retries?"})
    assert result.status == "succeeded"
    assert result.state["quality"] == 0.92
    assert set(result.state["findings"]) == {"research-1", "code-1", "research-2", "code-2"}
    assert visits(embedded_client, result.thread_id) == Counter(coordinator=1, planner=2, research_worker=2, code_worker=2, synthesizer=2)


def test_subgraph_shares_state(examples: Path, memory_client: Stepwise):
    result = memory_client.run(load_file(examples / "subgraph.yaml"), {"ticket": "refund"})
    assert result.state["log"] == ["fetch", "clean", "summarize"] and result.state["trail"] == ["evaluate"]


def test_human_approval_waits_and_resumes(examples: Path, tmp_path: Path):
    spec = load_file(examples / "human_approval.yaml")
    client = Stepwise.embedded(tmp_path)
    waiting = client.run(spec, {"amount": 12})
    assert waiting.status == "waiting" and waiting.waiting["node"] == "approve"
    # a new process (a new client over the same directory) resumes: first asks for a revision, then approves
    again = Stepwise.embedded(tmp_path).resume(waiting.run_id, {"decision": "revise"})
    assert again.status == "waiting" and again.state["revision"] == 2
    done = Stepwise.embedded(tmp_path).resume(waiting.run_id, {"decision": "yes"})
    assert done.status == "succeeded" and done.state["published"] is True
    assert done.state["outcome"] == "sent: Refund of 12 EUR for order A-17 (rev 2)"
    assert visits(client, waiting.thread_id) == Counter(draft=2, approve=2, publish=1)
    with pytest.raises(StepwiseError, match="already succeeded"):
        client.resume(waiting.run_id, {"decision": "yes"})


def test_resume_errors_are_actionable(memory_client: Stepwise):
    with pytest.raises(StepwiseError, match=r"no run 'nope'.*stepwise runs"):
        memory_client.resume("nope", {})


def test_failing_node_fails_the_run_and_keeps_state(memory_client: Stepwise):
    spec = load_text("name: f\nmodule: statemachines.examples.nodes\nnodes: [fetch, fail_on_purpose, clean]\n")
    result = memory_client.run(spec, {"ticket": "T-9"})
    assert result.status == "failed"
    assert result.error["node"] == "fail_on_purpose"
    assert "cannot process ticket 'T-9'" in result.error["message"] and "Traceback" in result.error["traceback"]
    assert result.state["log"] == ["fetch"]  # the state up to the failure stays readable
    kinds = [e.type for e in memory_client.history(result.thread_id)]
    assert kinds[-1] == RUN_FAILED and RUN_FINISHED not in kinds


def test_run_exceeding_max_iterations_fails_with_advice(memory_client: Stepwise):
    spec = load_text(
        """
name: spin
state: {log: append}
graph:
  nodes:
    fetch: {fn: "statemachines.examples.nodes:fetch"}
  conditional_edges:
    - from: fetch
      conditions:
        - {if: "len(state.log) > 100", then: __end__}
        - {else: fetch}
  entry: fetch
  max_iterations: 5
"""
    )
    result = memory_client.run(spec, {})
    assert result.status == "failed"
    assert "max_iterations=5" in result.error["message"] and "add an exit condition" in result.error["message"]
    assert len(result.state["log"]) == 5


def test_threads_time_travel_and_fork(examples: Path, embedded_client: Stepwise):
    spec = load_file(examples / "sequential.yaml")
    result = embedded_client.run(spec, {"text": "a b"})
    history = embedded_client.history(result.thread_id)
    after_fetch = next(e.seq for e in history if e.node == "fetch")
    _, early = embedded_client.state(result.thread_id, at=after_fetch)
    assert early["log"] == ["fetch"] and "summary" not in early
    forked = embedded_client.fork(result.thread_id, at=after_fetch)
    assert embedded_client.state(forked)[1] == early
    # the first run on the fork continues where the fork was taken (after fetch), not from the entry
    again = embedded_client.run(spec, {"text": "x y z"}, thread_id=forked)
    assert again.state["log"] == ["fetch", "clean", "summarize"]
    with pytest.raises(StepwiseError, match="pick --at within"):
        embedded_client.state(result.thread_id, at=10_000)


def test_states_lists_the_state_after_every_event(examples: Path, embedded_client: Stepwise):
    result = embedded_client.run(load_file(examples / "parallel.yaml"), {"query": "q"})
    states = list(embedded_client.states(result.thread_id))
    assert [seq for seq, _ in states] == [e.seq for e in embedded_client.history(result.thread_id)]
    for seq, state in states[::3]:
        assert state == embedded_client.state(result.thread_id, at=seq)[1]  # the same as time travel, seq by seq
    assert states[-1][1] == result.state


def test_nested_fan_outs_inside_a_loop_join_in_order(memory_client: Stepwise):
    from tests.support.graphs import NESTED_LOOP, NESTED_LOOP_TRAIL

    spec = load_text(NESTED_LOOP)
    for _ in range(3):
        result = memory_client.run(spec, {})
        assert result.status == "succeeded", result.error
        assert result.state == {"round": 2, "trail": NESTED_LOOP_TRAIL}


def test_human_inside_a_parallel_branch(tmp_path: Path):
    from tests.support.graphs import HUMAN_IN_BRANCH

    spec = load_text(HUMAN_IN_BRANCH)
    waiting = Stepwise.embedded(tmp_path).run(spec, {})
    assert waiting.status == "waiting" and waiting.waiting["node"] == "ask"
    assert waiting.state["trail"] == ["tick"]  # branch `a` finished, but nothing joins until `ask` answers
    done = Stepwise.embedded(tmp_path).resume(waiting.run_id, {"go": True})
    assert done.status == "succeeded"
    assert done.state == {"round": 1, "trail": ["tick", "a", "join"], "go": True}
