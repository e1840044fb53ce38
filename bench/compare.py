"""``python -m bench.compare BEFORE.json AFTER.json``: a before/after table of two result files (markdown).

Each row is one measurement with the same definition in both files; the load of each run is printed
beside it, because on a shared machine a wall-time change can be the neighbours' doing: read the CPU
columns when they disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _ms(row: dict[str, Any] | None, key: str = "wall_ms", cpu: str | None = "cpu_ms") -> str:
    if row is None or key not in row:
        return "n/a"
    text = f"{row[key]:,.3g}" if row[key] < 10 else f"{row[key]:,.0f}"
    if cpu and cpu in row:
        text += f" / {row[cpu]:,.3g}" if row[cpu] < 10 else f" / {row[cpu]:,.0f}"
    return text


def _w6_rows(x: dict[str, Any]) -> dict[str, str]:
    judged = "W6 three-node run p50, ABBA blocks (judged): ms wall / CPU"
    every = "W6 three-node run p50, alternating every run: ms wall / CPU"
    if "every_run_wall_ms" in x:  # round 4 on: judged in ABBA blocks, the every-run alternation beside
        return {judged: _ms(x), every: _ms(x, "every_run_wall_ms", "every_run_cpu_ms")}
    # before: the every-run alternation was judged; round 3 also ran blocks (S L L S, 100 runs each)
    return {judged: _ms(x, "back_to_back_wall_ms", "back_to_back_cpu_ms"), every: _ms(x)}


def rows(r: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n in r["meta"]["config"]["sizes"]:
        me = _find(r["w1"], system="stepwise", mode="c", n=n)
        peer = _find(r["w1"], system="langgraph-add", mode="c", n=n)
        out[f"W1 durable step, N={n}: Stepwise ms wall / CPU"] = _ms(me)
        if me and peer:
            out[f"W1 N={n}: LangGraph (operator.add) ÷ Stepwise, wall / CPU"] = (
                f"{peer['wall_ms'] / me['wall_ms']:.1f}× / {peer['cpu_ms'] / me['cpu_ms']:.1f}×"
            )
    for x in r.get("w3_sweep") or []:
        if x["system"] == "stepwise":
            peer = _find(r["w3_sweep"], system="langgraph-add", n=x["n"])
            ratio = f"; LangGraph ÷ Stepwise {peer['wall_ms'] / x['wall_ms']:.2f}×" if peer else ""
            out[f"W3 cold restore N={x['n']}: Stepwise p50 ms wall / CPU"] = f"{_ms(x)} (tail {x.get('tail_events', '?')}){ratio}"
    for x in r["w4"]:
        if x["system"] == "stepwise" and x["mode"] == "c":
            peer = _find(r["w4"], system="langgraph", mode="c", workers=x["workers"])
            ratio = f"; LangGraph ÷ Stepwise {peer['wall_ms'] / x['wall_ms']:.2f}×" if peer else ""
            out[f"W4 CPU fan-out {x['workers']}, durable: ms wall / CPU"] = _ms(x) + ratio
    for x in r.get("w5") or []:
        if x["system"] == "stepwise":
            key = f"W5 I/O fan-out {x['workers']} × {x['latency_ms']:.0f} ms, {x['variant']} nodes: ms (÷ ideal)"
            out[key] = "n/a (not supported)" if "na" in x else f"{x['wall_ms']:,.0f} ({x['x_ideal']:.2f}×)"
    for x in r.get("w6") or []:
        if x["system"] == "stepwise":
            out.update(_w6_rows(x))
            out["W6 SQL statements / write transactions per run"] = f"{x['statements_per_run']:.0f} / {x['commits_per_run']:.0f}"
    w7 = r.get("w7")
    if w7:
        out["W7 5,001 steps: max step ÷ median"] = f"{w7['max_over_median']:.1f}× (max {w7['step_ms_max']:.1f} ms)"
        if "cpu_max_over_median" in w7:
            out["W7 5,001 steps: max step ÷ median, by CPU time"] = f"{w7['cpu_max_over_median']:.1f}× (max {w7['cpu_step_ms_max']:.2f} ms)"
        out["W7 RSS before → after"] = f"{w7['rss_before_mib']:.0f} → {w7['rss_after_mib']:.0f} MiB"
    st = r.get("startup")
    if st:
        out["start-up: imports of `stepwise run` (-X importtime)"] = f"{st['import_ms']['stepwise_run']:.0f} ms"
        out["start-up: whole `stepwise run` process"] = f"{st['process_ms']['stepwise_run']:.0f} ms"
    costs = r.get("costs")
    if costs:
        out["AWS transitions per ReAct turn"] = f"{costs['react_turn']['per_turn']:.0f}"
    return out


def table(before: dict[str, Any], after: dict[str, Any]) -> str:
    b, a = rows(before), rows(after)
    lines = [
        "| measurement | before | after |",
        "| --- | --- | --- |",
        *(f"| {k} | {b.get(k, '–')} | {a.get(k, '–')} |" for k in [*b, *(k for k in a if k not in b)]),
    ]
    for name, r in (("before", before), ("after", after)):
        m = r["meta"]["machine"]
        start, end = m.get("loadavg_start") or [0], m.get("loadavg_end") or [0]
        lines.append(
            f"\n{name}: commit {m.get('git_commit')}, {m['cpu']}, {m['cores']} cores, load {start[0]:.1f} → {end[0]:.1f}, "
            f"speed {m.get('speed_ms_start', '–')} → {m.get('speed_ms_end', '–')} ms, {r['meta'].get('duration_s', '?')} s"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(json.loads(Path(sys.argv[1]).read_text()), json.loads(Path(sys.argv[2]).read_text())))
