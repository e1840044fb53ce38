"""A graph as a Mermaid flowchart (pure: spec in, text out)."""

from __future__ import annotations

from stepwise.graph.spec import GraphSpec
from stepwise.graph.topology import is_end, topology

_SHAPES = {
    "function": ("[", "]"),
    "agent": ("([", "])"),
    "planner": ("[[", "]]"),
    "synthesizer": ("[/", "/]"),
    "human": ("{{", "}}"),
    "subgraph": ("[[", "]]"),
}


def _id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)


def to_mermaid(spec: GraphSpec) -> str:
    topo = topology(spec)
    lines = ["flowchart TD", "  __start__((start))", "  __end__((end))"]
    for name, node in spec.graph.nodes.items():
        left, right = _SHAPES[node.kind]
        lines.append(f'  {_id(name)}{left}"{name}<br/><small>{node.kind}</small>"{right}')
    lines.append(f"  __start__ --> {_id(spec.entry)}")

    def target(t: str) -> str:
        return "__end__" if is_end(t) else _id(t)

    for name in spec.graph.nodes:
        for t in topo.edges.get(name, []):
            lines.append(f"  {_id(name)} --> {target(t)}")
        for cond in topo.conditions.get(name, []):
            label = (cond.when or "else").replace('"', "'")
            lines.append(f'  {_id(name)} -. "{label}" .-> {target(cond.target)}')
        for t in topo.fanout.get(name, []):
            lines.append(f"  {_id(name)} == parallel ==> {_id(t)}")
        for kind, worker in topo.workers.get(name, {}).items():
            lines.append(f'  {_id(name)} == "map: {kind}" ==> {_id(worker)}')
    for join, tails in topo.fanin.items():
        for tail in tails:
            lines.append(f"  {_id(tail)} == join ==> {_id(join)}")
    terminal = [
        n
        for n in spec.graph.nodes
        if not topo.successors(n) and not topo.can_end(n) and not any(n in ws.values() for ws in topo.workers.values())
    ]
    for name in terminal:
        lines.append(f"  {_id(name)} --> __end__")
    return "\n".join(lines) + "\n"
