"""``python -m bench.console_load``: the web console's page load with many runs listed, and live update
latency (event appended to the log → the run page's DOM shows it), in Debian's Chromium.

    python -m bench.console_load --runs 1000 --loads 5 --live 20

Page load: a fresh page opens ``/#/?limit=<runs>`` with the key already in sessionStorage; timed from
navigation start to the last table row in the DOM (the page records ``consoleMetrics.lastRender``),
``--loads`` times; the ``GET /runs?limit=<runs>`` call is timed alone as well. Live latency: for each of
``--live`` human-approval runs the page is opened at the waiting run, the run is resumed through the API,
and for every log event the page compares ``Date.now()`` right after it updated the DOM with the event's
``ts`` (same machine, same clock). No peer runs here (LangGraph Studio is a desktop app/SaaS), so these
are absolute numbers with the machine's load average; loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--live", type=int, default=20)
    parser.add_argument("--out", default="", help="also write the results here (e.g. bench/results/console.json)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from stepwise.api.keys import create_key
    from stepwise.api.server import make_server

    chromium = os.environ.get("STEPWISE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium: run `make browser`")
    home = Path(tempfile.mkdtemp(prefix="console-bench-"))
    server = make_server("127.0.0.1", 0, home).start()
    _, key = create_key(server.api.store, "default", "bench")

    def call(method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            server.url + path, data=data, method=method, headers={"x-api-key": key, "content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as res:
            return json.loads(res.read() or b"null")

    registered = call("POST", "/agents", {"yaml": (ROOT / "statemachines/examples/human_approval.yaml").read_text()})
    spec = server.api.client.services.graph(registered["ref"])
    started = time.perf_counter()
    for i in range(args.runs):  # in-process: the list is what is measured, not how the runs were made
        server.api.client.run(spec, {"amount": i}, tenant="default")
    seeded = time.perf_counter() - started

    api_ms = []
    for _ in range(args.loads):
        t = time.perf_counter()
        listed = call("GET", f"/runs?limit={args.runs}")
        api_ms.append((time.perf_counter() - t) * 1000)
    assert len(listed["runs"]) == args.runs

    out: dict[str, Any] = {
        "command": f"python -m bench.console_load --runs {args.runs} --loads {args.loads} --live {args.live}",
        "runs": args.runs,
        "seed_seconds": round(seeded, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_init_script(f"sessionStorage.setItem('stepwise.key', {json.dumps(key)})")
        load_ms = []
        for _ in range(args.loads):
            page = context.new_page()
            page.goto(server.url + f"/#/?limit={args.runs}")
            page.wait_for_selector(f"#runs tbody tr:nth-child({args.runs})", timeout=60_000)
            load_ms.append(page.evaluate("window.consoleMetrics.lastRender.at"))  # ms since navigation start
            page.close()
        out["page_load_ms"] = {
            "median": round(statistics.median(load_ms), 1),
            "max": round(max(load_ms), 1),
            "samples": [round(v, 1) for v in load_ms],
        }
        out["api_list_ms"] = {"median": round(statistics.median(api_ms), 1), "max": round(max(api_ms), 1)}

        latencies: list[float] = []
        page = context.new_page()
        for i in range(args.live):
            run = call("POST", "/agents/human-approval/execute", {"input": {"amount": i}})
            page.goto(server.url + f"/#/runs/{run['run_id']}")
            page.wait_for_selector('g.node[data-node="approve"].st-waiting')
            page.wait_for_selector('#timeline[data-live="true"]')  # the stream is connected (the page draws the log before)
            before = page.evaluate("window.consoleMetrics.liveLatencyMs.length")
            call("POST", f"/runs/{run['run_id']}/resume", {"input": {"decision": "yes"}})
            page.wait_for_selector('#run-head .badge[data-status="succeeded"]')
            while page.evaluate("window.consoleMetrics.liveLatencyMs.length") < before + 3:  # the CSP forbids wait_for_function
                time.sleep(0.01)
            latencies += page.evaluate(f"window.consoleMetrics.liveLatencyMs.slice({before})")
        browser.close()
    out["live_latency_ms"] = {
        "events": len(latencies),
        "median": round(statistics.median(latencies), 1),
        "p95": round(pct(latencies, 95), 1),
        "max": round(max(latencies), 1),
    }
    server.shutdown()
    server.server_close()
    shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
