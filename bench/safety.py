"""Safety measurements: sandbox escape suite, sandbox start-up/per-call overhead vs in-process and a plain
subprocess, guardrail precision/recall on the shipped labelled set (bench/data/safety_labels.jsonl) and the
latency each built-in rail adds per call (p50/p99).

    python -m bench.safety            # writes bench/results/safety.json and bench/results/safety.md
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepwise.guardrails import Guardrails, GuardrailsConfig
from stepwise.guardrails.checks import find_pii, injection_score
from stepwise.tools import cgroups
from stepwise.tools.sandbox import Sandbox, SandboxLimits, sandbox_python
from stepwise.tools.sandbox_escapes import run_suite, summary

HERE = Path(__file__).resolve().parent
LABELS = HERE / "data" / "safety_labels.jsonl"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def stats(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(samples, 0.5), 4), "p99_ms": round(pct(samples, 0.99), 4), "n": len(samples)}


def sandbox_overhead(n: int) -> dict[str, Any]:
    code = "print(sum(range(1000)))"
    box = Sandbox(SandboxLimits(), tenant="bench")
    plain = Sandbox(SandboxLimits(), cgroups=False)
    py = sandbox_python()
    ways: dict[str, Callable[[], Any]] = {
        "in_process": lambda: exec(compile(code, "<bench>", "exec"), {"print": lambda *_: None}),
        "subprocess_python": lambda: subprocess.run([py, "-I", "-B", "-c", code], capture_output=True, check=True),
        "bubblewrap_python": lambda: box.run_python(code),
        "bubblewrap_python_no_cgroup": lambda: plain.run_python(code),
        "bubblewrap_true": lambda: box.run(["/usr/bin/true"]),
    }
    samples: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(n):  # alternate, so machine load falls on every way alike
        for name, fn in ways.items():
            samples[name] += timed(fn, 1)
    results: dict[str, Any] = {k: stats(v) for k, v in samples.items()}
    base = results["subprocess_python"]["p50_ms"]
    results["ratio_bubblewrap_vs_subprocess_p50"] = round(results["bubblewrap_python"]["p50_ms"] / base, 2)
    results["jail_only_ms_p50"] = results["bubblewrap_true"]["p50_ms"]
    results["cpu_backend"] = cgroups.backend()
    results["ratio_cgroup_vs_no_cgroup_p50"] = round(
        results["bubblewrap_python"]["p50_ms"] / results["bubblewrap_python_no_cgroup"]["p50_ms"], 2
    )
    return results


def nemo_latency(rounds: int) -> dict[str, Any]:
    """The NeMo rail's own cost per check (LLMRails.check with a self-check input rail), against a local
    fake OpenAI-compatible server that answers at once: NeMo's overhead, not a model's latency."""
    try:
        import nemoguardrails  # noqa: F401
    except ImportError:
        return {"skipped": "nemoguardrails is not installed (the nemo extra)"}
    from stepwise.guardrails import nemo as nemo_rail
    from stepwise.llm.testing import FakeLLMServer, Reply

    rows = [json.loads(line)["text"] for line in LABELS.read_text().splitlines() if line.strip()]
    with FakeLLMServer(lambda api, body: Reply(text="No")) as srv, tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yml").write_text(
            "models:\n  - {type: main, engine: openai, model: judge, parameters: {base_url: '" + srv.url + "/v1', api_key: x}}\n"
            "rails: {input: {flows: [self check input]}}\n"
            "prompts:\n  - task: self_check_input\n    content: 'Block \"{{ user_input }}\"? (Yes or No) Answer:'\n"
        )
        g = Guardrails(GuardrailsConfig.model_validate({"input": [{"check": "nemo", "config_path": tmp}]}))
        first = timed(lambda: g.check("input", rows[0]), 1)[0]  # loads the config
        samples: list[float] = []
        for _ in range(rounds):
            for text in rows[:10]:
                samples += timed(lambda t=text: g.check("input", t), 1)
        nemo_rail.forget()
    return {"first_check_ms": round(first, 1), "per_message": stats(samples)}


def guardrail_quality() -> dict[str, Any]:
    rows = [json.loads(line) for line in LABELS.read_text().splitlines() if line.strip()]
    out: dict[str, Any] = {"items": len(rows)}
    for label, predict in (
        ("pii", lambda t: bool(find_pii(t))),
        ("injection", lambda t: injection_score(t)[0] >= 0.5),
    ):
        tp = fp = fn = tn = 0
        misses = []
        for r in rows:
            truth = bool(r["pii"]) if label == "pii" else bool(r["injection"])
            got = predict(r["text"])
            tp += truth and got
            fp += got and not truth
            fn += truth and not got
            tn += not truth and not got
            if truth != got:
                misses.append({"text": r["text"][:80], "expected": truth})
        out[label] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None,
            "errors": misses,
        }
    # PII kinds: did the right kind fire?
    kinds_ok = sum({k.split(":")[0] for k in (f.kind for f in find_pii(r["text"]))} == set(r["pii"]) for r in rows if r["pii"])
    out["pii"]["kind_exact"] = f"{kinds_ok}/{sum(1 for r in rows if r['pii'])}"
    return out


def guardrail_latency(rounds: int) -> dict[str, Any]:
    rows = [json.loads(line)["text"] for line in LABELS.read_text().splitlines() if line.strip()]
    long_text = " ".join(rows)  # ~4 kB: a typical answer
    configs = {
        "pii": [{"check": "pii", "action": "redact"}],
        "injection": [{"check": "injection", "action": "block"}],
        "deny": [{"check": "deny", "words": ["refund", "lawsuit", "attorney"], "action": "warn"}],
        "all_builtin": [
            {"check": "injection", "action": "warn"},
            {"check": "pii", "action": "redact"},
            {"check": "deny", "words": ["refund"], "action": "warn"},
            {"check": "max_length", "max": 100000, "action": "block"},
        ],
    }
    out: dict[str, Any] = {}
    for name, rail_list in configs.items():
        g = Guardrails(GuardrailsConfig.model_validate({"input": rail_list}))
        short: list[float] = []
        for _ in range(rounds):
            short += timed(lambda t=rows[0]: g.check("input", t), 1)  # noqa: B023
            for text in rows:
                start = time.perf_counter()
                g.check("input", text)
                short.append((time.perf_counter() - start) * 1000)
        out[name] = {"per_message": stats(short), "per_4kB_answer": stats(timed(lambda g=g: g.check("input", long_text), rounds * 20))}
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    n = 10 if quick else 40
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        (project / ".stepwise").mkdir(parents=True)
        (project / ".stepwise" / "capability.key").write_text("00" * 32)
        escapes = summary(run_suite(project))
    results = {
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "python": sys.version.split()[0]},
        "command": "python -m bench.safety" + (" --quick" if quick else ""),
        "escapes": escapes,
        "sandbox": sandbox_overhead(n),
        "guardrails_quality": guardrail_quality(),
        "guardrails_latency": guardrail_latency(3 if quick else 10),
        "nemo_latency": nemo_latency(2 if quick else 5),
    }
    out = HERE / "results" / "safety.json"
    out.write_text(json.dumps(results, indent=2))
    (HERE / "results" / "safety.md").write_text(render(results))
    print(render(results))


def render(r: dict[str, Any]) -> str:
    e, s, q, lat = r["escapes"], r["sandbox"], r["guardrails_quality"], r["guardrails_latency"]
    lines = [
        "# Safety measurements",
        "",
        f"Command: `{r['command']}` · {r['machine']['cpus']} CPUs, load average {', '.join(f'{x:.1f}' for x in r['machine']['load_avg'])}"
        f" · Python {r['machine']['python']}",
        "",
        f"## Sandbox escape suite: {e['blocked']}/{e['tried']} blocked",
        "",
        "| attempt | blocked | how |",
        "|---|---|---|",
        *[f"| {a['name']} | {'yes' if a['blocked'] else '**NO**'} | {a['how'][:90].replace('|', '/')} |" for a in e["attempts"]],
        "",
        "## Sandbox overhead (per call, `print(sum(range(1000)))`)",
        "",
        "| how | p50 ms | p99 ms |",
        "|---|---|---|",
        *[f"| {k} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} |" for k, v in s.items() if isinstance(v, dict)],
        "",
        f"bubblewrap vs a plain `python -c` subprocess: ×{s['ratio_bubblewrap_vs_subprocess_p50']} at p50; the jail alone "
        f"(`/usr/bin/true`) costs {s['jail_only_ms_p50']:.1f} ms. CPU bounded by: {s['cpu_backend']}; the per-call cgroup "
        f"(create, enter through a `/bin/sh` stub, read, kill leftovers, remove) vs rlimits only: ×{s['ratio_cgroup_vs_no_cgroup_p50']} "
        "at p50. There is no separate start-up: every call is a fresh jail. "
        "WASI CPython (wasmtime) side by side with bubblewrap: `make bench-wasi`, bench/results/sandbox_wasi.md.",
        "",
        f"## Guardrail quality on bench/data/safety_labels.jsonl ({q['items']} labelled texts: PII, injections, benign look-alikes)",
        "",
        "| rail | precision | recall | tp | fp | fn | tn |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {k} | {q[k]['precision']} | {q[k]['recall']} | {q[k]['tp']} | {q[k]['fp']} | {q[k]['fn']} | {q[k]['tn']} |"
            for k in ("pii", "injection")
        ],
        "",
        f"PII kind exactly right: {q['pii']['kind_exact']}. Misclassified:",
        "",
        *[f"- {k}: {m['text']!r} (expected {m['expected']})" for k in ("pii", "injection") for m in q[k]["errors"]],
        "",
        "## Latency added per call by the built-in rails",
        "",
        "| rails | per message p50 ms | p99 ms | per 4 kB answer p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        *[
            f"| {k} | {v['per_message']['p50_ms']:.4f} | {v['per_message']['p99_ms']:.4f} | "
            f"{v['per_4kB_answer']['p50_ms']:.4f} | {v['per_4kB_answer']['p99_ms']:.4f} |"
            for k, v in lat.items()
        ],
        "",
        "## NeMo Guardrails rail (a self-check input rail; its LLM a local fake server answering at once)",
        "",
        *(
            [f"Not measured: {r['nemo_latency']['skipped']}."]
            if "skipped" in r["nemo_latency"]
            else [
                f"First check (loads the config): {r['nemo_latency']['first_check_ms']} ms. Per message: p50 "
                f"{r['nemo_latency']['per_message']['p50_ms']:.2f} ms, p99 {r['nemo_latency']['per_message']['p99_ms']:.2f} ms "
                f"(n={r['nemo_latency']['per_message']['n']}), against {lat['injection']['per_message']['p50_ms']:.4f} ms p50 for the "
                "built-in injection heuristic; a real model's own latency comes on top.",
            ]
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
