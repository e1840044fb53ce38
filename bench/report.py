"""Results → ``docs/benchmarks.md`` tables and the ``docs/img/benchmarks.png`` plot.

Only the block between the ``generated`` markers is rewritten, so hand-written analysis around it
survives a re-run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

START = "<!-- bench:generated:start -->"
END = "<!-- bench:generated:end -->"
MODE_NAMES = {"a": "(a) no persistence", "b": "(b) in-memory persistence", "c": "(c) durable SQLite"}
COLORS = {"stepwise": "#1f77b4", "langgraph": "#d62728", "langgraph-add": "#ff7f0e"}


def _ms(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if value < 100 else f"{value:,.0f}"


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


def _load(values: list[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "?"


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    return [_row(header), align or _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def _peers(results: dict[str, Any]) -> list[str]:
    return [s for s in results["meta"]["config"]["systems"] if s != "stepwise"]


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def targets_section(results: dict[str, Any]) -> list[str]:
    rows = [[t["id"], t["target"], t["measured"], "**met**" if t["met"] else "**missed**"] for t in results["targets"]]
    return ["### Targets (ratios from this run)", "", *_table(["", "target", "measured", ""], rows)]


def _speed(m: dict[str, Any]) -> str:
    """``bench.measure.speed`` at the start and end of the run (runs recorded before it existed have none)."""
    if m.get("speed_ms_start") is None:
        return "not recorded"
    return f"start {m['speed_ms_start']}, end {m.get('speed_ms_end', '?')}"


def machine_section(results: dict[str, Any]) -> list[str]:
    meta = results["meta"]
    m, v = meta["machine"], meta["versions"]
    rows = [
        ["mode", f"`{meta['mode']}` ({meta.get('duration_s', '?')} s), started {meta['started']}, commit {m.get('git_commit')}"],
        ["CPU", f"{m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['memory_gib']} GiB"],
        ["OS / Python / SQLite", f"{m['os']} / {m['implementation']} {m['python']} / {m['sqlite']}"],
        ["load average (1/5/15 min)", f"start {_load(m.get('loadavg_start'))}, end {_load(m.get('loadavg_end'))}"],
        ["speed: a fixed task, ms (lower is faster)", _speed(m)],
        ["versions", ", ".join(f"{k} {val}" for k, val in v.items() if val)],
        ["plan", ", ".join(f"{k}={val}" for k, val in meta["config"].items() if k not in ("systems", "notes"))],
    ]
    return ["### Machine and versions", "", *_table(["", ""], rows)]


def w1_section(results: dict[str, Any]) -> list[str]:
    labels = results["meta"]["labels"]
    systems = results["meta"]["config"]["systems"]
    header = ["N", "mode", *[f"{labels[s]} wall / CPU ms" for s in systems], *[f"{labels[p]} ÷ Stepwise" for p in _peers(results)]]
    rows = []
    for n in results["meta"]["config"]["sizes"]:
        for mode in results["meta"]["config"]["modes"]:
            cells: list[Any] = [n, MODE_NAMES[mode]]
            me = _find(results["w1"], system="stepwise", mode=mode, n=n)
            base = me if me and "na" not in me else _find(results["w1"], system="stepwise", mode="b", n=n)
            for s in systems:
                r = _find(results["w1"], system=s, mode=mode, n=n)
                cells.append("n/a¹" if r is None or "na" in r else f"{_ms(r['wall_ms'])} / {_ms(r['cpu_ms'])}")
            for p in _peers(results):
                r = _find(results["w1"], system=p, mode=mode, n=n)
                if r and base and "na" not in base:
                    mark = "" if base is me else "²"
                    cells.append(f"{r['wall_ms'] / base['wall_ms']:.1f}×{mark}")
                else:
                    cells.append("–")
            rows.append(cells)
    return [
        "### W1 — ReAct loop: time per step (median ms per node execution)",
        "",
        *_table(header, rows),
        "¹ " + next(r["na"] for r in results["w1"] if r.get("na")) if any(r.get("na") for r in results["w1"]) else "",
        "² (a) has no Stepwise row, so the ratio compares LangGraph *without* a checkpointer to Stepwise's in-memory mode (b).",
        "",
    ]


def w2_section(results: dict[str, Any]) -> list[str]:
    labels = results["meta"]["labels"]
    systems = results["meta"]["config"]["systems"]
    sizes = sorted({r["n"] for r in results["w2"]})
    rows = []
    for n in sizes:
        raw = next(r["raw_message_bytes"] for r in results["w2"] if r["n"] == n)
        cells: list[Any] = [n, _bytes(raw)]
        for s in systems:
            r = _find(results["w2"], system=s, n=n)
            cells.append(f"{_bytes(r['bytes'])} ({r['ratio_to_raw']:,.1f}×)" if r else "–")
        rows.append(cells)
    growth = ", ".join(f"{labels[g['system']]} **{g['exponent']:.2f}**" for g in results["w2_growth"])
    lo, hi = results["meta"]["config"]["growth"]
    out = [
        "### W2 — bytes stored after N turns (durable mode; × raw message bytes)",
        "",
        *_table(["N", "raw messages", *[labels[s] for s in systems]], rows),
        f"Growth exponent between N={lo} and N={hi} (1 = linear, 2 = quadratic): {growth}.",
        "",
    ]
    me = _find(results["w2"], system="stepwise", n=sizes[-1])
    if me:
        b = me["breakdown"]
        parts = ", ".join(f"{k} {_bytes(v)}" for k, v in b.get("by_table", {}).items() if v >= 8192)
        out += [
            f"Where Stepwise's bytes are at N={sizes[-1]}: database file {_bytes(b['db_file'])} ({parts}), "
            f"WAL {_bytes(b['wal_file'])}, snapshot files {_bytes(b['snapshot_files'])}.",
            "",
        ]
    for p in _peers(results):
        r = _find(results["w2"], system=p, n=sizes[-1])
        if r:
            parts = ", ".join(f"{k} {_bytes(v)}" for k, v in r["breakdown"].get("by_table", {}).items() if v >= 8192)
            out += [f"{labels[p]} at N={sizes[-1]}: database file {_bytes(r['breakdown']['db_file'])} ({parts}).", ""]
    return out


def w3_section(results: dict[str, Any]) -> list[str]:
    labels = results["meta"]["labels"]
    rows = [
        [
            labels[r["system"]],
            r["n"],
            f"{_ms(r['current_state']['wall_ms'])} / {_ms(r['current_state']['cpu_ms'])}",
            f"{_ms(r['current_state_warm']['wall_ms'])}",
            f"{_ms(r['history']['wall_ms'], 1)} / {_ms(r['history']['cpu_ms'], 1)}",
            r["history_states"],
        ]
        for r in results["w3"]
    ]
    return [
        "### W3 — restore (median ms)",
        "",
        *_table(
            ["system", "N", "current state, fresh reader: wall / CPU", "again, same reader", "whole history: wall / CPU", "states listed"],
            rows,
        ),
    ]


def _ld(row: dict[str, Any]) -> str:
    load = row.get("load")
    return f"{load[0]:.1f}→{load[1]:.1f}" if load else "?"


def w3_sweep_section(results: dict[str, Any]) -> list[str]:
    sweep = results.get("w3_sweep") or []
    if not sweep:
        return []
    labels = results["meta"]["labels"]
    peer = results["meta"].get("w3_peer", "langgraph-add")
    cadence = int(results["meta"].get("snapshot_cadence", 32))  # runs before round 4 snapshotted every 32 events
    rows = []

    def ok(r: dict[str, Any] | None, them: dict[str, Any] | None) -> str:
        if not r:
            return "–"
        return "**yes**" if r["wall_ms"] <= 2 and (not them or r["wall_ms"] < them["wall_ms"]) else "no"

    for n in sorted({r["n"] for r in sweep}):
        me, them = _find(sweep, system="stepwise", n=n), _find(sweep, system=peer, n=n)
        mid = _find(sweep, system="stepwise-midrun", n=n)
        if not me:
            continue
        rows.append(
            [
                n,
                me.get("head_seq", "?"),
                me.get("tail_events", "?"),
                f"{_ms(me['wall_ms'])} / {_ms(me['cpu_ms'])}",
                f"{_ms(them['wall_ms'])} / {_ms(them['cpu_ms'])}" if them else "–",
                f"{them['wall_ms'] / me['wall_ms']:.2f}×" if them else "–",
                f"{ok(me, them)} / {ok(mid, them)}",
                f"{_ms(mid['wall_ms'])} / {_ms(mid['cpu_ms'])} (tail {mid.get('tail_events', '?')})" if mid else "–",
                f"{them['wall_ms'] / mid['wall_ms']:.2f}×" if them and mid else "–",
                _ld(me),
            ]
        )
    return [
        "### W3 sweep — cold restore at every position (p50 ms, fresh reader, current state)",
        "",
        *_table(
            [
                "N",
                "events",
                "tail after last snapshot",
                "Stepwise wall / CPU",
                f"{labels[peer]} wall / CPU",
                "LangGraph ÷ Stepwise",
                "≤ 2 ms and ahead: stopped / mid-run",
                "Stepwise mid-run (no end-of-run snapshot): wall / CPU",
                "LangGraph ÷ mid-run",
                "load",
            ],
            rows,
        ),
        "",
        "*Stepwise* reads the thread as the run left it: a stopped run snapshots its thread at the head, so this"
        " reader replays nothing. *Mid-run* reads the same run's store without that last snapshot — what a reader"
        " finds while a run is going, or after a crash before its end: the latest cadence snapshot (every"
        f" {cadence} events) and a tail of up to {cadence - 1} events to replay. The target is judged on both.",
    ]


def w4_section(results: dict[str, Any]) -> list[str]:
    rows = []
    for width in sorted({r["workers"] for r in results["w4"]}):
        for mode in results["meta"]["config"]["fanout_modes"]:
            me = _find(results["w4"], system="stepwise", mode=mode, workers=width)
            peer = _find(results["w4"], system="langgraph", mode=mode, workers=width)
            rows.append(
                [
                    width,
                    MODE_NAMES[mode],
                    f"{_ms(me['wall_ms'], 1)} / {_ms(me['cpu_ms'], 1)}" if me else "–",
                    f"{_ms(peer['wall_ms'], 1)} / {_ms(peer['cpu_ms'], 1)}" if peer else "–",
                    f"{peer['wall_ms'] / me['wall_ms']:.2f}×" if me and peer else "–",
                    _ld(me) if me else "?",
                ]
            )
    return [
        "### W4 — CPU-bound fan-out: split → W workers → join (median ms per run)",
        "",
        *_table(["W", "mode", "Stepwise wall / CPU", "LangGraph wall / CPU", "LangGraph ÷ Stepwise", "load"], rows),
    ]


def w5_section(results: dict[str, Any]) -> list[str]:
    rows = []
    for r in results.get("w5") or []:
        label = f"{'Stepwise' if r['system'] == 'stepwise' else 'LangGraph'}: {r['label']}"
        if "na" in r:
            rows.append([r["workers"], label, f"n/a: {r['na'][:160]}", "–", "–", "–", _ld(r)])
            continue
        rows.append(
            [
                r["workers"],
                label,
                f"{_ms(r['wall_ms'], 0)} / {_ms(r['cpu_ms'], 1)}",
                _ms(r["zero_latency"]["wall_ms"], 1),
                f"{r['x_ideal']:.2f}×",
                f"{r['x_latency']:.2f}×",
                _ld(r),
            ]
        )
    if not rows:
        return []
    latency = results["w5"][0]["latency_ms"]
    return [
        f"### W5 — I/O-bound fan-out: W branches each waiting {latency:.0f} ms, durable (median ms per run)",
        "",
        "*Ideal* = one latency + the same system's own run time for the same graph with zero latency "
        "(its overhead); the strict column divides by the latency alone.",
        "",
        *_table(["W", "system: node style", "wall / CPU", "same graph, zero latency", "÷ ideal", "÷ latency", "load"], rows),
    ]


def w6_section(results: dict[str, Any]) -> list[str]:
    rows = []
    labels = results["meta"]["labels"]
    blocked = any("every_run_wall_ms" in r for r in results.get("w6") or [])
    for r in results.get("w6") or []:
        if blocked:
            every = f"{_ms(r['every_run_wall_ms'])} / {_ms(r['every_run_cpu_ms'])} (p90 {_ms(r['every_run_wall_ms_p90'])})"
            runs = f"{r['blocks']} × {r['block_runs']} (+ {r['every_run_runs']} alternating)"
        else:  # recorded before round 4: judged on the every-run alternation, blocks shown beside
            every = f"{_ms(r['back_to_back_wall_ms'])} / {_ms(r['back_to_back_cpu_ms'])}" if "back_to_back_wall_ms" in r else ""
            runs = r["runs"]
        rows.append(
            [
                labels[r["system"]],
                runs,
                f"{_ms(r['wall_ms'])} / {_ms(r['cpu_ms'])}",
                _ms(r["wall_ms_p90"]),
                _ms(r["wall_ms_p99"]),
                every,
                r["statements_per_run"],
                r["commits_per_run"],
                _ms(r["list_ms"], 1),
                f"{_ms(r['read_all_ms'], 1)} ({_ms(r['read_per_run_ms'])} per run)",
                _ld(r),
            ]
        )
    if not rows:
        return []
    judged, other = (
        ("in ABBA blocks: p50 wall / CPU ms (judged)", "alternating every run: p50 wall / CPU ms (not judged)")
        if blocked
        else ("per run p50 wall / CPU ms", "back to back (blocks of runs) p50 wall / CPU ms")
    )
    return [
        "### W6 — many short runs into one store (three function nodes per run, durable)",
        "",
        *_table(
            [
                "system",
                "runs",
                judged,
                "p90",
                "p99",
                other,
                "SQL statements per run",
                "write transactions per run (COMMITs + lone writes)",
                "list all (fresh reader) ms",
                "read every run's state ms",
                "load",
            ],
            rows,
        ),
    ]


_PREEMPTED = "steps in which the OS preempted the thread (an involuntary context switch)"


def w7_section(results: dict[str, Any]) -> list[str]:
    w7 = results.get("w7")
    if not w7:
        return []
    slow = ", ".join(f"#{s['index']} {s['ms']:.1f} ms" for s in w7["slowest_steps"])
    rows = [
        ["steps", w7["steps"]],
        ["whole run wall / CPU", f"{w7['wall_ms']:,.0f} / {w7['cpu_ms']:,.0f} ms"],
        ["step median / p99 / max, wall", f"{w7['step_ms_median']:.3f} / {w7['step_ms_p99']:.3f} / {w7['step_ms_max']:.2f} ms"],
        ["max ÷ median, wall", f"**{w7['max_over_median']:.1f}×** ({w7.get('steps_over_5x_median', '?')} steps over 5×)"],
        ["flatness: median of the last tenth ÷ the first tenth, wall", f"{w7['flatness']:.2f}"],
        ["slowest steps", slow],
        *(
            [
                [
                    "steps over 5× the median (wall), with what ran in them",
                    ", ".join(f"#{o['index']} {o['ms']:.2f} ms ({o['in_it'] or 'nothing else recorded'})" for o in w7["over_5x"]) or "none",
                ],
                [
                    "garbage-collector passes in the loop",
                    f"gen-0 {w7['gc_passes']['gen0']}, gen-1 {w7['gc_passes']['gen1']}, gen-2 {w7['gc_passes']['gen2']}; "
                    f"gen ≥ 1 took {', '.join(f'{ms:.2f}' for ms in w7['gc_gen1_ms']) or '—'} ms",
                ],
                ["hand-overs to a continuation execution (steps)", ", ".join(f"#{i}" for i in w7["handover_steps"]) or "none"],
            ]
            if "over_5x" in w7
            else []
        ),
        *([[_PREEMPTED, w7["steps_preempted"]]] if "steps_preempted" in w7 else []),
        *(
            [
                [
                    "step median / p99 / max, CPU (this thread)",
                    f"{w7['cpu_step_ms_median']:.3f} / {w7['cpu_step_ms_p99']:.3f} / {w7['cpu_step_ms_max']:.2f} ms",
                ],
                ["max ÷ median, CPU", f"**{w7['cpu_max_over_median']:.1f}×** ({w7['cpu_steps_over_5x_median']} steps over 5×)"],
                ["flatness, CPU", f"{w7['cpu_flatness']:.2f}"],
                ["slowest steps by CPU", ", ".join(f"#{s['index']} {s['cpu_ms']:.2f} ms" for s in w7["slowest_cpu_steps"])],
            ]
            if "cpu_max_over_median" in w7
            else []
        ),
        ["RSS before → after (peak)", f"{w7['rss_before_mib']:.0f} → {w7['rss_after_mib']:.0f} MiB ({w7['rss_peak_mib']:.0f})"],
        ["load", _ld(w7)],
    ]
    return ["### W7 — one loop of many steps (Stepwise, durable; one process)", "", *_table(["", ""], rows)]


def startup_section(results: dict[str, Any]) -> list[str]:
    st = results.get("startup")
    if not st:
        return []
    p, i = st["process_ms"], st["import_ms"]
    rows = [
        ["`stepwise run` (function-only graph, three nodes), whole process", f"{p['stepwise_run']:.0f} ms", f"{i['stepwise_run']:.0f} ms"],
        ["`import stepwise.cli`", f"{p['import_stepwise_cli']:.0f} ms", f"{i['stepwise_cli']:.0f} ms"],
        ["`import langgraph.graph, langgraph.checkpoint.sqlite`", f"{p['import_langgraph']:.0f} ms", f"{i['langgraph']:.0f} ms"],
        ["empty interpreter (`python -c pass`)", f"{p['empty']:.0f} ms", "0 (the baseline)"],
    ]
    heavy = ", ".join(f"`{m}`" for m in st.get("heavy_modules_in_run", [])) or "none of the watched ones"
    return [
        "### Start-up (median of child processes)",
        "",
        *_table(["", "process wall", "imports (-X importtime)"], rows),
        f"Heavy modules a `stepwise run` of that graph imports: {heavy}. Load {_ld(st)}.",
        "",
    ]


def costs_section(results: dict[str, Any]) -> list[str]:
    costs = results.get("costs")
    if not costs:
        return []
    p, a = costs["prices"], costs["prices"]["assumptions"]
    rows = []
    for r in costs["examples"]:
        usd = r["usd_per_1000_runs"]
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["asl_states"].items()))
        rows.append(
            [
                r["example"],
                states,
                r["node_executions"],
                r["transitions"],
                r["transitions_per_node"],
                r["lambda_invocations"],
                f"{r['payload_max_bytes']:,} / {r['payload_total_bytes']:,}",
                r["write_units"],
                f"${usd['standard_sfn']:.4f}",
                f"${usd['express_sfn']:.4f}",
                f"${usd['lambda']:.4f}",
                f"${usd['dynamodb_writes']:.4f}",
                f"**${usd['total_standard']:.4f}** / ${usd['total_express']:.4f}",
            ]
        )
    turn = costs["react_turn"]
    sfn, lam = p["step_functions"], p["lambda"]
    prices = (
        f"Prices from `bench/prices.json` ({p['as_of']}, us-east-1): Step Functions Standard "
        f"${sfn['standard_per_1000_transitions']} per 1,000 transitions; Express ${sfn['express_per_million_requests']} per million "
        f"requests + ${sfn['express_per_gb_second']} per GB-s; Lambda ${lam['per_million_requests']} per million requests + "
        f"${lam['per_gb_second'][a['lambda_architecture']]} per GB-s ({a['lambda_architecture']}); DynamoDB on-demand "
        f"${p['dynamodb']['on_demand_per_million_write_units']} per million writes. "
        f"Assumed: {a['lambda_memory_mb']} MB Lambda, {a['lambda_ms_per_invocation']} ms per step. {a['note']}"
    )
    return [
        "### AWS cost model (per 1,000 runs)",
        "",
        prices,
        "",
        *_table(
            [
                "example",
                "ASL states",
                "nodes run",
                "transitions",
                "per node",
                "Lambda calls",
                "payload max / total B",
                "DynamoDB writes",
                "SFN Standard",
                "SFN Express",
                "Lambda",
                "DynamoDB",
                "total Standard / Express",
            ],
            rows,
        ),
        f"ReAct turn ({turn['graph']}): **{turn['per_turn']:.0f} transitions per turn** (agent Task, tool Task: the agent's "
        "step routes back round the loop as its Task's Next, and leaves it through a route Catch), "
        f"{turn['per_node']:.1f} per node, plus {turn['fixed_per_run']:.0f} per run (the agent's final answer; "
        "then `__end__` and `Succeeded`). "
        f"Measured as the difference between 20 and 10 turns: {turn['transitions_at_20']} − {turn['transitions_at_10']}.",
        "",
    ]


def render(results: dict[str, Any], plot_path: str | None = "img/benchmarks.png") -> str:
    lines = [
        START,
        "",
        *targets_section(results),
        *w1_section(results),
        *w2_section(results),
        *w3_section(results),
        *w3_sweep_section(results),
        *w4_section(results),
        *w5_section(results),
        *w6_section(results),
        *w7_section(results),
        *startup_section(results),
    ]
    if plot_path:
        lines += [f"![per-step time and stored bytes against N]({plot_path})", ""]
    lines += [*costs_section(results), *machine_section(results), END]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = results["meta"]["labels"]
    systems = results["meta"]["config"]["systems"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    for s in systems:
        for mode, style in (("c", "-o"), ("b", ":s")):
            pts = sorted((r["n"], r["wall_ms"]) for r in results["w1"] if r["system"] == s and r["mode"] == mode and "na" not in r)
            if pts:
                left.plot(*zip(*pts, strict=True), style, color=COLORS.get(s), label=f"{labels[s]} {MODE_NAMES[mode][:3]}")
        pts = sorted((r["n"], r["bytes"]) for r in results["w2"] if r["system"] == s)
        if pts:
            right.plot(*zip(*pts, strict=True), "-o", color=COLORS.get(s), label=labels[s])
    raw = sorted({(r["n"], r["raw_message_bytes"]) for r in results["w2"]})
    right.plot(*zip(*raw, strict=True), "--", color="gray", label="raw message bytes")
    left.set(
        xscale="log",
        yscale="log",
        xlabel="N (ReAct turns)",
        ylabel="ms per step (median wall)",
        title="W1 per-step time: (c) durable SQLite, (b) in-memory",
    )
    right.set(xscale="log", yscale="log", xlabel="N (ReAct turns)", ylabel="bytes stored", title="W2 bytes stored (durable)")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Stepwise vs LangGraph — {results['meta']['machine']['cpu']}, {results['meta']['machine']['cores']} cores", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs(results: dict[str, Any], doc: Path, image: Path) -> None:
    plot(results, image)
    block = render(results, str(image.relative_to(doc.parent)) if image.is_relative_to(doc.parent) else str(image))
    if doc.exists() and START in (text := doc.read_text()) and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = "# Benchmarks\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
