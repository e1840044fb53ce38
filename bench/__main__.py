"""``python -m bench [--quick | --full]``: Stepwise and LangGraph side by side, in one run.

Writes ``<out>/<mode>-<time>.json`` (default ``.bench-results/``, untracked) and never touches the docs unless
``--write-docs`` is given: then the results also go to ``bench/results/<mode>.json`` and the generated part of
``docs/benchmarks.md`` and ``docs/img/benchmarks.png`` is rewritten from them. ``--report FILE`` re-renders
the docs from a saved results file without measuring anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the example graphs import `statemachines.examples.nodes`
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="N = 10 and 100, 3 repetitions (under 2 minutes); the default")
    size.add_argument("--full", action="store_true", help="N = 10, 100 and 500, 5 repetitions; rewrites the docs")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench-results", help="directory for <mode>-<time>.json (untracked)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory for the stores (default: the system temp dir)")
    parser.add_argument("--write-docs", action="store_true", help="also write bench/results/<mode>.json, docs/benchmarks.md, the plot")
    parser.add_argument("--only", default="", help="comma-separated sections to run: w1 (W1-W3), w3 (sweep), w4, w5, w6, w7, startup")
    parser.add_argument("--report", type=Path, default=None, help="render the docs from this results file and exit")
    args = parser.parse_args(argv)

    from bench.report import write_docs

    doc, image = ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "img" / "benchmarks.png"
    if args.report is not None:
        write_docs(json.loads(args.report.read_text()), doc, image)
        print(f"wrote {doc} and {image}")
        return 0

    from bench.suite import FULL, QUICK, run_suite

    config = FULL if args.full else QUICK
    if args.only:
        from dataclasses import replace

        config = replace(config, only=tuple(args.only.split(",")))
    partial = args.out / f"{config.name}-partial.json"
    results = run_suite(config, args.workdir, partial=partial)
    import time

    text = json.dumps(results, indent=1, ensure_ascii=False) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{config.name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(text)
    print(f"wrote {out} ({results['meta']['duration_s']} s)")
    machine = results["meta"]["machine"]
    print(
        f"  machine: {machine['cpu']}, {machine['cores']} cores; load {machine['loadavg_start']} → {machine['loadavg_end']}; "
        f"speed {machine.get('speed_ms_start')} → {machine.get('speed_ms_end')} ms (a fixed task, lower is faster)"
    )
    for target in results["targets"]:
        print(f"  {target['id']}: {'met   ' if target['met'] else 'MISSED'} {target['measured']}")
    if args.write_docs:
        record = ROOT / "bench" / "results" / f"{config.name}.json"
        record.write_text(text)
        write_docs(results, doc, image)
        print(f"wrote {record}, {doc} and {image}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
