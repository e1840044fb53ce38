"""GraphSpec → Amazon States Language (JSONPath), as a pure function.

Every node becomes a Task that invokes the one stateless step with a small payload: the node name
and the *cursor* (thread, run, seq, route, frames, visit counters). State itself stays in the store.

- plain edge        → ``Next``
- conditional edges → no Choice: the step evaluates the conditions; the first target is the Task's ``Next``,
  any other target is reached by a Catch on ``Stepwise.Route.<i>`` (the cursor travels in the error);
  a human node's conditions keep a Choice on ``$.route``, and so do every node's with ``graph.routing: choice``
- fan-out / fan-in  → Parallel (``ResultPath: null``); the join node folds the branches' events
- planner           → Map over ``$.items`` (subtask references); the next node joins the items
- human             → ``lambda:invoke.waitForTaskToken``
- subgraph          → the subgraph's states inlined with a ``node/`` prefix, then the node's own
  Task, which routes on the parent's edges
- ends              → ``__end__`` (records the run finished); every error → ``__failed__``
- start             → ``__start__``, a Choice on the cursor's ``start_at``: a run may begin at any top-level
  node Task or parallel block instead of the entry (a fork continues where it was forked, a continuation
  execution where the previous one handed over, a redrive at the failed state); no ``start_at`` → the entry
- handover          → every top-level node Task carries ``handover: true``; when the execution has appended
  too many events (Step Functions' 25,000-event history), the step starts a continuation execution at this
  Task and fails with ``Stepwise.Continue``, which a Catch sends to ``Continued`` (a Succeed)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stepwise.graph.spec import END, FAILED, GraphSpec
from stepwise.graph.topology import Topology, is_end, topology

#: Node kinds whose ``config.timeout_seconds`` is their Task's ``TimeoutSeconds``.
TIMED_KINDS = ("human", "function")
DEFAULT_STEP_ARN = "arn:aws:lambda:us-east-1:000000000000:function:stepwise-step"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_WAIT = "arn:aws:states:::lambda:invoke.waitForTaskToken"
END_STATE = END
FAILED_STATE = FAILED
SUCCEED_STATE = "Succeeded"
FAIL_STATE = "Failed"
START_STATE = "__start__"
CONTINUED_STATE = "Continued"

NODE_ERROR = "Stepwise.NodeError"
CONFLICT_ERROR = "Stepwise.StateConflict"
#: An LLM 429 that outlived the provider router's own retries: "queue for later". Step Functions waits out
#: these intervals durably (no compute held); the local engine parks the run instead (``Parked``).
RATE_LIMITED_ERROR = "Stepwise.RateLimited"
RATE_LIMIT_PARK = {"IntervalSeconds": 60, "MaxAttempts": 5, "BackoffRate": 2.0, "MaxDelaySeconds": 900}
CONTINUE_ERROR = "Stepwise.Continue"  # the step handed the run over to a continuation execution
ROUTE_ERROR = "Stepwise.Route"  # + ".<i>": a conditional route other than the Task's Next (see _Compiler._routes)
LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]


@dataclass
class _Region:
    """Where a compiled node's ``END`` and stop targets lead."""

    on_end: str | None  # state to go to on END; None = this region simply ends (branch, Map item)
    stop: frozenset[str] = frozenset()  # nodes that close the region (a Parallel's join)
    top: bool = True  # top-level states get Catch → __failed__; nested errors propagate to their block
    entry_extras: dict[str, Any] = field(default_factory=dict)
    tolerate: str | None = None  # on_error: continue — errors end this branch/item at this Succeed state


class _Compiler:
    def __init__(self, spec: GraphSpec, step_arn: str, prefix: str = "", starts: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.starts: dict[str, str] = {} if starts is None else starts  # top-level states a run may start at
        self.topo: Topology = topology(spec)
        self.arn = step_arn
        self.prefix = prefix
        self.joins: dict[str, str] = {}
        names = set(spec.graph.nodes)
        for split in self.topo.fanout:
            join = self.topo.join_of(split, names)
            if join:
                self.joins[join] = f"p:{prefix}{split}"
        for planner, node in spec.graph.nodes.items():
            if node.kind == "planner":
                after = self.topo.edges.get(planner, [])
                if after and not is_end(after[0]):
                    self.joins[after[0]] = f"m:{prefix}{planner}"

    # -- names --------------------------------------------------------------------------------
    def state_name(self, node: str) -> str:
        return self.prefix + node

    def entry_state(self, node: str) -> str:
        spec = self.spec.graph.nodes[node]
        if spec.kind == "subgraph" and spec.subgraph_spec is not None:
            return f"{self.prefix}{node}/{spec.subgraph_spec.entry}"
        return self.state_name(node)

    # -- regions ------------------------------------------------------------------------------
    def region(self, entry: str, region: _Region) -> tuple[str, dict[str, Any]]:
        states: dict[str, Any] = {}
        todo, seen = [entry], set()
        while todo:
            node = todo.pop(0)
            if node in seen or node in region.stop:
                continue
            seen.add(node)
            extras = region.entry_extras if node == entry else {}
            todo.extend(self.emit(node, region, states, extras))
        return self.entry_state(entry), states

    def goto(self, target: str, region: _Region) -> str | None:
        """State name for a transition to ``target``; None means "end this region"."""
        if target in region.stop or (is_end(target) and region.on_end is None):
            return None
        if is_end(target):
            return region.on_end
        return self.entry_state(target)

    @staticmethod
    def link(state: dict[str, Any], nxt: str | None) -> dict[str, Any]:
        if nxt is None:
            state["End"] = True
        else:
            state["Next"] = nxt
        return state

    def task(self, node: str, payload: dict[str, Any], region: _Region, *, wait: bool = False, handover: bool = False) -> dict[str, Any]:
        spec = self.spec.graph.nodes.get(node)
        retry: list[dict[str, Any]] = [
            {"ErrorEquals": LAMBDA_TRANSIENT, "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0},
            {"ErrorEquals": [CONFLICT_ERROR], "IntervalSeconds": 1, "MaxAttempts": 5, "BackoffRate": 2.0},
        ]
        if not wait:
            retry.append({"ErrorEquals": [RATE_LIMITED_ERROR], **RATE_LIMIT_PARK})
        if spec is not None and spec.retry is not None and spec.retry.max_attempts > 0:
            r = spec.retry
            rule: dict[str, Any] = {
                "ErrorEquals": [NODE_ERROR],
                "IntervalSeconds": max(1, round(r.interval_seconds)),
                "MaxAttempts": r.max_attempts,
                "BackoffRate": r.backoff_rate,
            }
            if r.max_delay_seconds is not None:
                rule["MaxDelaySeconds"] = max(1, round(r.max_delay_seconds))
            if r.jitter == "FULL":
                rule["JitterStrategy"] = "FULL"
            retry.append(rule)
        body: dict[str, Any] = {"node": self.state_name(node), "cursor.$": "$", **payload}
        if wait:
            body["token.$"] = "$$.Task.Token"
        handover = handover and region.top and not wait
        if handover:
            body["handover"] = True
        state: dict[str, Any] = {
            "Type": "Task",
            "Resource": LAMBDA_WAIT if wait else LAMBDA_INVOKE,
            "Parameters": {"FunctionName": self.arn, "Payload": body},
            "Retry": retry,
        }
        if not wait:
            state["OutputPath"] = "$.Payload"
        if spec is not None and spec.kind in TIMED_KINDS and spec.config.get("timeout_seconds") and payload.get("mode") != "join":
            state["TimeoutSeconds"] = int(spec.config["timeout_seconds"])  # a human's wait; a function's run (States.Timeout)
        self.catch(state, region)
        if handover:
            state["Catch"].insert(0, {"ErrorEquals": [CONTINUE_ERROR], "ResultPath": "$.handover", "Next": CONTINUED_STATE})
        return state

    def _name_timeout(self, node: str, task: dict[str, Any], states: dict[str, Any]) -> None:
        """A timed function Task that times out goes to the fail step through a Pass that records the node
        (``$.timed_out``): the Catch's input is the cursor, which names no node, and Step Functions' Cause for
        ``States.Timeout`` is empty, so the run's error could not say which node ran too long."""
        name = self.state_name(node)
        passed = f"{name}.timed_out"
        task["Catch"].insert(0, {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": passed})
        states[passed] = {"Type": "Pass", "Result": node, "ResultPath": "$.timed_out", "Next": FAILED_STATE}

    @staticmethod
    def catch(state: dict[str, Any], region: _Region) -> dict[str, Any]:
        if region.top:
            state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": FAILED_STATE}]
        elif region.tolerate is not None:
            state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": region.tolerate}]
        return state

    def emit(self, node: str, region: _Region, states: dict[str, Any], extras: dict[str, Any]) -> list[str]:
        """Add ``node``'s states; return the nodes that follow it in this region (one emitter per kind)."""
        spec = self.spec.graph.nodes[node]
        name = self.state_name(node)
        payload = dict(extras)
        if node in self.joins:
            payload["join"] = self.joins[node]
        if spec.kind == "subgraph" and spec.subgraph_spec is not None:
            payload = self._subgraph(node, spec.subgraph_spec, region, payload, states)
        task = self.task(node, payload, region, wait=spec.kind == "human", handover=True)
        states[name] = task
        if region.top and spec.kind == "function" and "TimeoutSeconds" in task:
            self._name_timeout(node, task, states)
        if region.top:
            self.starts[name] = name
        if node in self.topo.fanout:
            return self._fanout(node, task, region, states)
        if spec.kind == "planner":
            return self._planner(node, task, region, states)
        conditions = self.topo.conditions.get(node)
        if conditions and spec.kind != "human" and self.spec.graph.routing == "jump":
            return self._routes(name, conditions, task, region, states, [])
        if conditions:
            return self._choice(name, conditions, task, region, states)
        return self._edge(node, task, region)

    def _start_point(self, state: str, region: _Region) -> None:
        """A top-level block or join Task is a place a run may start at (a fork, a redrive)."""
        if region.top:
            self.starts[state] = state

    def _subgraph(self, node: str, sub: GraphSpec, region: _Region, payload: dict[str, Any], states: dict[str, Any]) -> dict[str, Any]:
        """Inline the subgraph's states (prefixed ``node/``); they end at the node's own Task, which takes over
        the entry payload. Returns that Task's payload."""
        inner = _Compiler(sub, self.arn, prefix=f"{self.prefix}{node}/", starts=self.starts)
        _, sub_states = inner.region(sub.entry, _Region(on_end=self.state_name(node), top=region.top, entry_extras=payload))
        states.update(sub_states)
        return {}

    def _fanout(self, node: str, task: dict[str, Any], region: _Region, states: dict[str, Any]) -> list[str]:
        """A static fan-out: a Parallel with one branch per target, stopping at the join node (or, without
        one, at a ``.join`` Task of the splitting node)."""
        spec = self.spec.graph.nodes[node]
        name = self.state_name(node)
        join = self.topo.join_of(node, set(self.spec.graph.nodes))
        par_name = f"{name}.fanout"
        branches = []
        for i, branch in enumerate(self.topo.fanout[node]):
            tolerate = f"{name}.branch{i}.failed" if spec.on_error == "continue" else None
            sub = _Region(
                on_end=None,
                stop=frozenset({join}) if join else frozenset(),
                top=False,
                entry_extras={"enter": f"p:{name}/{i}"},
                tolerate=tolerate,
            )
            start, sub_states = self.region(branch, sub)
            if tolerate is not None:
                sub_states[tolerate] = {"Type": "Succeed"}  # the join names the failure (step._join)
            branches.append({"StartAt": start, "States": sub_states})
        task["Next"] = par_name
        par: dict[str, Any] = {"Type": "Parallel", "Branches": branches, "ResultPath": None}
        follow: list[str] = []
        if join:
            follow.append(join)
            nxt = self.goto(join, _Region(on_end=region.on_end))
        else:
            nxt = f"{name}.join"
            states[nxt] = self.link(self.task(node, {"join": f"p:{name}", "mode": "join"}, region), region.on_end)
            self._start_point(nxt, region)
        states[par_name] = self.link(self.catch(par, region), nxt)
        self._start_point(par_name, region)
        return follow

    def _planner(self, node: str, task: dict[str, Any], region: _Region, states: dict[str, Any]) -> list[str]:
        """A planner: a Map over ``$.items`` whose item processor starts at the worker for the item's kind
        (a Choice when there are several), then the next node joins the items."""
        spec = self.spec.graph.nodes[node]
        name = self.state_name(node)
        map_name = f"{name}.map"
        tolerate = f"{name}.item.failed" if spec.on_error == "continue" else None
        start_at, item_states = self._items(name, spec.workers or {}, tolerate)
        task["Next"] = map_name
        mapped: dict[str, Any] = {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemSelector": {"cursor.$": "$", "item.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": start_at, "States": item_states},
            "MaxConcurrency": spec.max_concurrency,
            "ResultPath": None,
        }
        if spec.tolerated_failure_percentage is not None:
            mapped["ToleratedFailurePercentage"] = spec.tolerated_failure_percentage
        follow: list[str] = []
        after = self.topo.edges.get(node, [])
        if after and not is_end(after[0]):
            follow.append(after[0])
            nxt = self.goto(after[0], region)
        else:
            nxt = f"{name}.join"
            states[nxt] = self.link(self.task(node, {"join": f"m:{name}", "mode": "join"}, region), region.on_end)
            self._start_point(nxt, region)
        if spec.config.get("dag"):  # dependency waves: the planner re-enters with each next wave
            nxt = self._waves(node, name, map_name, nxt, region, states)
        states[map_name] = self.link(self.catch(mapped, region), nxt)
        self._start_point(map_name, region)
        return follow

    def _items(self, name: str, workers: dict[str, str], tolerate: str | None) -> tuple[str, dict[str, Any]]:
        """The Map's item processor: each worker's region, and where an item starts."""
        item_states: dict[str, Any] = {}
        entry_extras = {"enter": f"m:{name}", "cursor.$": "$.cursor", "item.$": "$.item", "index.$": "$.index"}
        starts = {}
        for kind, worker in sorted(workers.items()):
            start, sub_states = self.region(worker, _Region(on_end=None, top=False, entry_extras=entry_extras, tolerate=tolerate))
            item_states.update(sub_states)
            starts[kind] = start
        if tolerate is not None:
            item_states[tolerate] = {"Type": "Succeed"}
        if len(starts) == 1:
            return next(iter(starts.values())), item_states
        start_at = f"{name}.pick"
        item_states[start_at] = {
            "Type": "Choice",
            "Choices": [{"Variable": "$.item.kind", "StringEquals": k, "Next": s} for k, s in starts.items()],
            "Default": next(iter(starts.values())),
        }
        return start_at, item_states

    def _choice(self, name: str, conditions: list[Any], task: dict[str, Any], region: _Region, states: dict[str, Any]) -> list[str]:
        """Conditional edges as a Choice on ``$.route`` after the Task that returns the route: a human node's
        (its resumed Task), and every node's under ``graph.routing: choice``."""
        follow: list[str] = []
        route_name = f"{name}.route"
        choices: list[dict[str, Any]] = []
        default: str | None = None
        for cond in conditions:
            nxt = self.goto(cond.target, region)
            if nxt is None:
                nxt = f"{name}.end"
                states[nxt] = {"Type": "Succeed"}
            if not is_end(cond.target):
                follow.append(cond.target)
            if cond.otherwise is not None:
                default = nxt
            elif all(c["StringEquals"] != self._route_value(cond.target) for c in choices):
                choices.append({"Variable": "$.route", "StringEquals": self._route_value(cond.target), "Next": nxt})
        task["Next"] = route_name
        choice: dict[str, Any] = {
            "Type": "Choice",
            "Choices": choices or [{"Variable": "$.route", "StringEquals": "", "Next": default}],
        }
        if default is not None:
            choice["Default"] = default
        states[route_name] = choice
        return follow

    def _edge(self, node: str, task: dict[str, Any], region: _Region) -> list[str]:
        """A plain node: its edge, else the fan-in it is a tail of, else the end."""
        edges = self.topo.edges.get(node, [])
        if edges:
            self.link(task, self.goto(edges[0], region))
            return [] if is_end(edges[0]) else [edges[0]]
        tails_to = [j for j, tails in self.topo.fanin.items() if node in tails]
        self.link(task, self.goto(tails_to[0] if tails_to else END, region))
        return []

    def _waves(self, node: str, name: str, map_name: str, after: str | None, region: _Region, states: dict[str, Any]) -> str:
        """A planner with ``config.dag`` hands the Map one wave of ready subtasks at a time: after each wave a
        Choice on the cursor's ``more`` flag goes back to the planner (joining the wave first), else on."""
        if after is None:
            after = f"{name}.done"
            states[after] = {"Type": "Pass", "End": True}
        more = [{"Variable": "$.more", "IsPresent": True}, {"Variable": "$.more", "BooleanEquals": True}]
        states[f"{name}.waves"] = {"Type": "Choice", "Choices": [{"And": more, "Next": f"{name}.next"}], "Default": after}
        states[f"{name}.next"] = self.link(self.task(node, {"join": f"m:{name}"}, region), map_name)
        return f"{name}.waves"

    def _routes(
        self, name: str, conditions: list[Any], task: dict[str, Any], region: _Region, states: dict[str, Any], follow: list[str]
    ) -> list[str]:
        """A node's conditional edges without a Choice state: the step evaluates the conditions and returns the
        cursor when the route is the first condition's target (the Task's ``Next``: in a loop, the way round);
        any other route fails the Task with the error ``Stepwise.Route.<i>``, and a Catch goes to its target
        with the cursor in the error. One transition per node instead of two (a Task and its Choice)."""
        targets: dict[str, str | None] = {}
        for cond in conditions:
            value = self._route_value(cond.target)
            if value not in targets:
                nxt = self.goto(cond.target, region)
                if nxt is None:
                    nxt = f"{name}.end"
                    states[nxt] = {"Type": "Succeed"}
                targets[value] = nxt
            if not is_end(cond.target) and cond.target not in follow:
                follow.append(cond.target)
        (stay, first), *others = targets.items()
        jumps = {value: f"{ROUTE_ERROR}.{i}" for i, (value, _) in enumerate(others, start=1)}
        payload = task["Parameters"]["Payload"]
        payload["stay"] = stay
        if jumps:
            payload["jump"] = jumps
            catchers = [{"ErrorEquals": [jumps[value]], "ResultPath": "$.jumped", "Next": nxt} for value, nxt in others]
            task["Catch"] = catchers + task.get("Catch", [])
        self.link(task, first)
        return follow

    @staticmethod
    def _route_value(target: str) -> str:
        return END if is_end(target) else target


def compile_graph(spec: GraphSpec, *, step_arn: str = DEFAULT_STEP_ARN) -> dict[str, Any]:
    """Compile a validated spec; the same spec always gives byte-identical JSON (see ``to_json``)."""
    comp = _Compiler(spec, step_arn)
    start, states = comp.region(spec.entry, _Region(on_end=END_STATE))
    # Two Choices: a rule on a missing path is a States.Runtime error, and And need not short-circuit.
    states[START_STATE] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.start_at", "IsPresent": True, "Next": f"{START_STATE}.at"}],
        "Default": start,
    }
    states[f"{START_STATE}.at"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.start_at", "StringEquals": name, "Next": name} for name in sorted(comp.starts)],
        "Default": start,
    }
    states[CONTINUED_STATE] = {"Type": "Succeed", "Comment": "the run goes on in a continuation execution (the run record names it)"}
    finish = {"FunctionName": step_arn, "Payload": {"node": END, "mode": "finish", "cursor.$": "$"}}
    states[END_STATE] = {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": finish,
        "OutputPath": "$.Payload",
        "Retry": [{"ErrorEquals": [*LAMBDA_TRANSIENT, CONFLICT_ERROR], "IntervalSeconds": 1, "MaxAttempts": 5, "BackoffRate": 2.0}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": FAILED_STATE}],
        "Next": SUCCEED_STATE,
    }
    states[FAILED_STATE] = {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": step_arn, "Payload": {"node": FAILED_STATE, "mode": "fail", "cursor.$": "$"}},
        "OutputPath": "$.Payload",
        "Retry": [{"ErrorEquals": [*LAMBDA_TRANSIENT, CONFLICT_ERROR], "IntervalSeconds": 1, "MaxAttempts": 5, "BackoffRate": 2.0}],
        "Next": FAIL_STATE,
    }
    states[SUCCEED_STATE] = {"Type": "Succeed"}
    states[FAIL_STATE] = {
        "Type": "Fail",
        "Error": "Stepwise.RunFailed",
        "Cause": "A node failed; the run record and event log hold the node, error and traceback.",
    }
    return {
        "Comment": f"Stepwise graph {spec.ref}",
        "QueryLanguage": "JSONPath",
        "StartAt": START_STATE,
        "States": states,
    }


def start_points(asl: dict[str, Any]) -> set[str]:
    """The state names a run of ``asl`` may start at through the cursor's ``start_at`` (empty for ASL compiled
    before ``__start__`` existed: such a version always starts at its entry)."""
    start = asl.get("States", {}).get(f"{START_STATE}.at")
    if not start:
        return set()
    return {str(choice["Next"]) for choice in start.get("Choices", [])}


def to_json(asl: dict[str, Any]) -> str:
    return json.dumps(asl, indent=2, sort_keys=True)
