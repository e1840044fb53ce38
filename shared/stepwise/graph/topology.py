"""The shape of a graph as plain data: successors, fan-outs, fan-ins, Map workers and cycles."""

from __future__ import annotations

from dataclasses import dataclass, field

from stepwise.graph.spec import END, Condition, GraphSpec

END_ALIASES = frozenset({END, "END", "end"})
TOOL_RUNNER = "stepwise.tools.react:run_tool_calls"


def is_end(target: str) -> bool:
    return target in END_ALIASES


@dataclass
class Topology:
    """A graph's edges by node: successors, conditions, fan-outs and fan-ins."""

    edges: dict[str, list[str]] = field(default_factory=dict)
    conditions: dict[str, list[Condition]] = field(default_factory=dict)
    fanout: dict[str, list[str]] = field(default_factory=dict)
    fanin: dict[str, list[str]] = field(default_factory=dict)  # join -> branch tails
    workers: dict[str, dict[str, str]] = field(default_factory=dict)

    def successors(self, node: str) -> list[str]:
        """Every node that can run right after ``node`` (END excluded), in a stable order."""
        out: list[str] = []
        out += self.edges.get(node, [])
        out += [c.target for c in self.conditions.get(node, [])]
        out += self.fanout.get(node, [])
        out += list(self.workers.get(node, {}).values())
        out += [join for join, tails in self.fanin.items() if node in tails]
        return [n for n in dict.fromkeys(out) if not is_end(n)]

    def can_end(self, node: str) -> bool:
        return any(is_end(c.target) for c in self.conditions.get(node, [])) or any(is_end(t) for t in self.edges.get(node, []))

    def join_of(self, split: str, nodes: set[str]) -> str | None:
        """The fan-in node that closes the fan-out at ``split``: every branch reaches one of its tails and
        every tail is reached by a branch, without passing through that join or back through ``split``
        (so a nested fan-in, or a loop back to the split, is not mistaken for it)."""
        branches = self.fanout[split]
        for join, tails in sorted(self.fanin.items()):
            if join not in nodes:
                continue
            stop = frozenset({join, split})
            reached = [self.reachable([b], stop=stop) for b in branches]
            if all(r & set(tails) for r in reached) and set(tails) <= set().union(*reached):
                return join
        return None

    def reachable(self, starts: list[str], *, stop: frozenset[str] = frozenset()) -> set[str]:
        seen: set[str] = set()
        todo = [s for s in starts if not is_end(s)]
        while todo:
            node = todo.pop()
            if node in seen or node in stop:
                continue
            seen.add(node)
            todo.extend(self.successors(node))
        return seen


def topology(spec: GraphSpec) -> Topology:
    topo = Topology()
    body = spec.graph
    for edge in body.edges:
        topo.edges.setdefault(edge.source, []).append(edge.target)
    for cond in body.conditional_edges:
        topo.conditions.setdefault(cond.source, []).extend(cond.conditions)
    for par in body.parallel_nodes:
        if isinstance(par.source, str) and isinstance(par.target, list):
            topo.fanout.setdefault(par.source, []).extend(par.target)
        elif isinstance(par.source, list) and isinstance(par.target, str):
            topo.fanin.setdefault(par.target, []).extend(par.source)
    for name, node in body.nodes.items():
        if node.kind == "planner" and node.workers:
            topo.workers[name] = dict(node.workers)
    return topo


def strongly_connected(topo: Topology, nodes: list[str]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; returns components in a deterministic order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(topo.successors(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(topo.successors(child))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                result.append(sorted(comp))
    return result


def cyclic_nodes(topo: Topology, nodes: list[str]) -> set[str]:
    out: set[str] = set()
    for comp in strongly_connected(topo, nodes):
        if len(comp) > 1 or comp[0] in topo.successors(comp[0]):
            out.update(comp)
    return out


def routes_to_tools(spec: GraphSpec, node: str) -> bool:
    """Whether an agent's tool calls have a node to run them: a plain or conditional edge leads to the built-in
    ``act`` function, or a condition on ``tool_calls`` picks the next node. Without one, an agent with
    ``tools:`` runs its own ReAct loop (see runtime/agents.py). Reads the edges directly: it runs per step."""
    nodes = spec.graph.nodes
    targets = [e.target for e in spec.graph.edges if e.source == node]
    for cond in spec.graph.conditional_edges:
        if cond.source != node:
            continue
        for item in cond.conditions:
            if item.when is not None and "tool_calls" in item.when and not is_end(item.target):
                return True
            targets.append(item.target)
    return any(t in nodes and nodes[t].kind == "function" and nodes[t].fn == TOOL_RUNNER for t in targets)


def locate(spec: GraphSpec, node: str) -> tuple[GraphSpec, str]:
    """Resolve ``outer/inner`` names of inlined subgraph nodes to (the spec that owns it, local name)."""
    while "/" in node:
        head, node = node.split("/", 1)
        sub = spec.graph.nodes[head].subgraph_spec
        if sub is None:
            raise LookupError(f"node {head!r} is not a subgraph")
        spec = sub
    if node not in spec.graph.nodes:
        raise LookupError(f"graph {spec.name!r} has no node {node!r}")
    return spec, node
