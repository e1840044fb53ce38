"""The AWS cost model: what one run of each example costs on Step Functions + Lambda, per 1,000 runs.

Counts come from the compiled ASL (states by type) and from a local run of that same document in the
local interpreter (state transitions, Task invocations of the step Lambda, payload bytes, events
written). Prices come from ``bench/prices.json``. A run that pauses for a human is resumed; the local
engine then replays the execution from its start (completed steps return their recorded output), so the
final execution walks the whole path exactly once — the path Step Functions would have billed.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from stepwise.asl.compiler import compile_graph
from stepwise.asl.interpreter import ExecutionResult, Interpreter
from stepwise.client import Stepwise
from stepwise.executors.base import STEP_FUNCTION
from stepwise.executors.local import LocalExecutor
from stepwise.graph.loader import load_file
from stepwise.graph.spec import GraphSpec
from stepwise.runtime.step import RouteJump, step
from stepwise.state.events import NODE_UPDATE, encode
from stepwise.state.ports import RunRecord

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "statemachines" / "examples"
PRICES = Path(__file__).with_name("prices.json")
RESUME_INPUT = {"decision": "yes"}  # what the human answers in examples that pause


class CountingExecutor(LocalExecutor):
    """The local executor, with the step Lambda wrapped to count invocations and payload bytes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, int, int]] = []
        self.result: ExecutionResult | None = None

    def start(self, run: RunRecord, asl: dict[str, Any]) -> ExecutionResult:
        self.calls = []  # per execution: the last one (after any resume) covers the whole path

        def invoke(payload: dict[str, Any]) -> Any:
            try:
                out = step(self.services, payload)
            except RouteJump as jump:  # a conditional route to a Catch target: still one invocation
                self.calls.append((str(payload.get("node")), len(json.dumps(payload)), len(str(jump))))
                raise
            self.calls.append((str(payload.get("node")), len(json.dumps(payload)), len(json.dumps(out))))
            return out

        interpreter = Interpreter({STEP_FUNCTION: invoke}, tokens=self.services.runs, clock=self.clock)
        self.result = interpreter.execute(asl, run.start_cursor, name=run.run_id)
        return self.result


def _states_by_type(machine: dict[str, Any], counts: Counter[str] | None = None) -> Counter[str]:
    counts = counts if counts is not None else Counter()
    for state in machine["States"].values():
        counts[state["Type"]] += 1
        for branch in state.get("Branches", []):
            _states_by_type(branch, counts)
        if "ItemProcessor" in state:
            _states_by_type(state["ItemProcessor"], counts)
    return counts


def measure_run(spec: GraphSpec, input_: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``spec`` once in memory (resuming any human pause) and count what AWS would bill."""
    client = Stepwise.in_memory()
    executor = CountingExecutor(client.services)
    client.executor = executor
    result = client.run(spec, dict(input_ or {}))
    resumes = 0
    while result.status == "waiting" and resumes < 10:
        result = client.resume(result.run_id, RESUME_INPUT)
        resumes += 1
    assert executor.result is not None
    events = client.history(result.thread_id)
    sizes = [len(encode(e.data)) + 128 for e in events]  # + keys and attributes of the item
    return {
        "status": result.status,
        "transitions": executor.result.transitions,
        "lambda_invocations": len(executor.calls),
        "node_executions": sum(1 for e in events if e.type == NODE_UPDATE),
        "resumes": resumes,
        "payload_max_bytes": max((max(i, o) for _, i, o in executor.calls), default=0),
        "payload_total_bytes": sum(i + o for _, i, o in executor.calls),
        "events_written": len(events),
        "event_bytes": sum(sizes),
        "write_units": sum(math.ceil(s / 1024) for s in sizes),
    }


def price(counts: dict[str, Any], prices: dict[str, Any]) -> dict[str, float]:
    """USD per 1,000 runs."""
    sfn, lam, ddb, a = prices["step_functions"], prices["lambda"], prices["dynamodb"], prices["assumptions"]
    invocations = counts["lambda_invocations"] + counts["resumes"]  # a resume is one API Lambda call
    lambda_gb_s = invocations * a["lambda_ms_per_invocation"] / 1000 * a["lambda_memory_mb"] / 1024
    lambda_cost = invocations * lam["per_million_requests"] / 1e6 + lambda_gb_s * lam["per_gb_second"][a["lambda_architecture"]]
    step_ms = sfn["express_billing_increment_ms"]
    express_ms = math.ceil(counts["lambda_invocations"] * a["lambda_ms_per_invocation"] / step_ms) * step_ms
    express_mb = math.ceil(a["express_memory_mb"] / sfn["express_memory_increment_mb"]) * sfn["express_memory_increment_mb"]
    express = sfn["express_per_million_requests"] / 1e6 + express_ms / 1000 * express_mb / 1024 * sfn["express_per_gb_second"]
    standard = counts["transitions"] * sfn["standard_per_1000_transitions"] / 1000
    writes = counts["write_units"] * ddb["on_demand_per_million_write_units"] / 1e6
    per_run = {
        "standard_sfn": standard,
        "express_sfn": express,
        "lambda": lambda_cost,
        "dynamodb_writes": writes,
        "total_standard": standard + lambda_cost + writes,
        "total_express": express + lambda_cost + writes,
    }
    return {k: round(v * 1000, 6) for k, v in per_run.items()}


def react_turn_transitions() -> dict[str, Any]:
    """Transitions per ReAct turn of the W1 graph, measured as the difference between 20 and 10 turns."""
    from bench import workload
    from bench.stepwise_side import react_spec

    spec = react_spec()
    lo, hi = (measure_run(spec, workload.react_input(n)) for n in (10, 20))
    per_turn = (hi["transitions"] - lo["transitions"]) / 10
    return {
        "graph": "bench-react (agent → tool → agent …)",
        "transitions_at_10": lo["transitions"],
        "transitions_at_20": hi["transitions"],
        "per_turn": per_turn,
        "per_node": per_turn / 2,
        "fixed_per_run": lo["transitions"] - 10 * per_turn,
        "states_by_type": dict(_states_by_type(compile_graph(spec))),
    }


def cost_model(examples: Path = EXAMPLES) -> dict[str, Any]:
    prices = json.loads(PRICES.read_text())
    rows = []
    for path in sorted(examples.glob("*.yaml")):
        spec = load_file(path)
        asl = compile_graph(spec)
        counts = measure_run(spec)
        rows.append(
            {
                "example": path.stem,
                "graph_nodes": len(spec.graph.nodes),
                "asl_states": dict(_states_by_type(asl)),
                **counts,
                "transitions_per_node": round(counts["transitions"] / max(1, counts["node_executions"]), 2),
                "usd_per_1000_runs": price(counts, prices),
            }
        )
    return {"prices": prices, "examples": rows, "react_turn": react_turn_transitions()}
