"""``python -m bench.serve_load``: `stepwise serve` under load from several local processes, side by side
with the stdlib ThreadingHTTPServer it replaced, plus SSE fan-out.

    python -m bench.serve_load --processes 4 --clients 12 --requests 600 [--server uvicorn|stdlib|both] [--sse 100]

Each server runs in its own process on 127.0.0.1 over a fresh state directory. Client processes each
run ``clients`` threads issuing ``POST /agents/tiny/execute`` (a one-function graph, on a new
connection each time, like independent callers) and record latency, status and connection errors.
Afterwards the run store is counted: every 200 must be a stored run (no lost runs).
``--sse N`` opens N streams on one waiting run, resumes it, and counts the streams that saw every
log event and the `end` event. Loopback only; bounded loops.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GRAPH = {"name": "tiny", "graph": {"nodes": {"a": {"fn": "statemachines.examples.nodes:fetch"}}, "entry": "a"}}
WAITS = """
name: waits
graph:
  nodes:
    ask: {kind: human, prompt: "go?"}
    talk: {kind: agent, model: scripted, system: "s", config: {stream: true}, script: ["one two three four five six seven eight"]}
  edges:
    - {from: ask, to: talk}
  entry: ask
"""


def _serve(kind: str, home: str, port_out: Any) -> None:
    sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]
    if kind == "uvicorn":
        from stepwise.api.server import make_server

        server = make_server("127.0.0.1", 0, home)
        port_out.put(server.server_address[1])
        server.serve_forever()
    else:  # the server `serve` used before: stdlib ThreadingHTTPServer, one thread per connection
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from stepwise.api.server import local_api, to_event

        api = local_api(Path(home))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                response = api(to_event(self.command, self.path, headers, body, self.client_address[0]), None)
                payload = (response.get("body") or "").encode()
                self.send_response(int(response["statusCode"]))
                for k, v in (response.get("headers") or {}).items():
                    if k.lower() not in ("content-length", "connection"):
                        self.send_header(k, str(v))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                return None

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        port_out.put(httpd.server_address[1])
        httpd.serve_forever()


def _call(port: int, method: str, path: str, body: Any, key: str, content_type: str = "application/json") -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = body if isinstance(body, str) else json.dumps(body)
        conn.request(method, path, body=data, headers={"x-api-key": key, "content-type": content_type})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def _client(port: int, key: str, clients: int, requests: int, out: Any) -> None:
    def one(_: int) -> tuple[str, float]:
        started = time.perf_counter()
        try:
            status, _ = _call(port, "POST", "/agents/tiny/execute", {"input": {}}, key)
            return str(status), time.perf_counter() - started
        except (OSError, http.client.HTTPException) as exc:
            return type(exc).__name__, time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=clients) as pool:
        out.put(list(pool.map(one, range(requests))))


def load(kind: str, processes: int, clients: int, requests: int, sse: int) -> dict[str, Any]:
    sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]
    from stepwise.api.keys import create_key
    from stepwise.client import Stepwise
    from stepwise.store.sqlite import SqliteApiStore

    ctx = multiprocessing.get_context("spawn")
    home = tempfile.mkdtemp(prefix=f"serve-{kind}-")
    _, key = create_key(SqliteApiStore(Path(home) / "api.db"), "acme")
    ports = ctx.Queue()
    server = ctx.Process(target=_serve, args=(kind, home, ports), daemon=True)
    server.start()
    port = ports.get(timeout=60)
    try:
        assert _call(port, "POST", "/agents", {"graph": GRAPH}, key)[0] == 201
        _call(port, "POST", "/agents/tiny/execute", {"input": {}}, key)  # warm up
        per_process = requests // processes
        results = ctx.Queue()
        started = time.perf_counter()
        workers = [ctx.Process(target=_client, args=(port, key, clients, per_process, results)) for _ in range(processes)]
        for w in workers:
            w.start()
        outcomes = [o for _ in workers for o in results.get(timeout=600)]
        elapsed = time.perf_counter() - started
        for w in workers:
            w.join(timeout=30)
        statuses: dict[str, int] = {}
        for status, _ in outcomes:
            statuses[status] = statuses.get(status, 0) + 1
        latencies = sorted(ms for status, ms in outcomes if status == "200")
        stored = len(Stepwise.embedded(home).runs(limit=100_000))
        report: dict[str, Any] = {
            "server": kind,
            "processes": processes,
            "concurrent_clients": processes * clients,
            "requests": len(outcomes),
            "statuses": statuses,
            "req_per_s": round(len(outcomes) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1) if latencies else None,
            "5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
            "connection_errors": sum(n for s, n in statuses.items() if not s.isdigit()),
            "lost_runs": statuses.get("200", 0) + 1 - stored,  # +1: the warm-up run
        }
        if sse and kind == "uvicorn":
            report["sse"] = fan_out(port, key, sse)
        return report
    finally:
        server.terminate()
        server.join(timeout=10)
        shutil.rmtree(home, ignore_errors=True)  # the store is scratch


def fan_out(port: int, key: str, n: int) -> dict[str, Any]:
    """N SSE clients on one run: open them on the waiting run, resume, count complete streams."""
    assert _call(port, "POST", "/agents", WAITS, key, "application/yaml")[0] == 201
    _, run = _call(port, "POST", "/agents/waits/execute", {}, key)
    ready = threading.Barrier(n + 1, timeout=120)

    def listen() -> tuple[list[int], int, bool]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", f"/runs/{run['run_id']}/stream", headers={"x-api-key": key})
        response = conn.getresponse()
        ids: list[int] = []
        deltas, ended, waited = 0, False, False
        event = ""
        while True:
            line = response.fp.readline().decode()
            if not line:
                break
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            elif line.startswith("event: "):
                event = line[7:].strip()
                deltas += event == "llm_delta"
                if event == "interrupt" and not waited:
                    waited = True
                    ready.wait()
                if event == "end":
                    ended = True
                    break
        conn.close()
        return ids, deltas, ended

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(listen) for _ in range(n)]
        ready.wait()  # every stream has replayed up to the interrupt: all subscribed
        started = time.perf_counter()
        status, answer = _call(port, "POST", f"/runs/{run['run_id']}/resume", {"input": {"go": True}}, key)
        assert status == 200, answer
        streams = [f.result(timeout=300) for f in futures]
        elapsed = time.perf_counter() - started
    reference = max(s[0] for s in streams)
    return {
        "clients": n,
        "complete": sum(1 for ids, _, ended in streams if ended and ids == reference),
        "with_all_8_deltas": sum(1 for _, d, _ in streams if d == 8),
        "resume_to_last_end_s": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--clients", type=int, default=12, help="threads per client process")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--server", choices=["uvicorn", "stdlib", "both"], default="both")
    parser.add_argument("--sse", type=int, default=0, help="SSE clients on one run (uvicorn only)")
    args = parser.parse_args()
    kinds = ["uvicorn", "stdlib"] if args.server == "both" else [args.server]
    load_before = os.getloadavg()[0]
    reports = [load(k, args.processes, args.clients, args.requests, args.sse) for k in kinds]
    print(json.dumps({"loadavg_1m_before": round(load_before, 2), "cores": os.cpu_count(), "results": reports}, indent=2))


if __name__ == "__main__":
    main()
