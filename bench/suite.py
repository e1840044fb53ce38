"""The benchmark plan and its runner: W1–W4 for every system, alternated, warmed up, repeated.

Each repetition runs every system once, in alternating order (A B C, then C B A, …), so drift on a
shared machine (other load, thermal, page cache) hits all of them alike. Every run gets a fresh store
in its own directory, set up before the clock starts and deleted afterwards (LangGraph's W1(c) files
reach hundreds of MB). Results are plain data; ``bench/README.md`` describes their schema.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import langgraph_side as lg
from bench import stepwise_side as sw
from bench import workload
from bench.measure import Sample, clock, growth_exponent, load, machine, median, percentile, speed, summary, versions
from stepwise.state.hydrate import CADENCE

SYSTEMS = ("stepwise", "langgraph", "langgraph-add")
FANOUT_SYSTEMS = ("stepwise", "langgraph")
LABELS = {"stepwise": sw.LABEL, sw.MIDRUN: sw.MIDRUN_LABEL, **lg.VARIANTS}


@dataclass(frozen=True)
class Config:
    name: str
    sizes: tuple[int, ...]  # W1: N (ReAct turns) swept
    reps: int
    warmup: int
    growth: tuple[int, int]
    restore_size: int  # W3: whole history, and the cold read of all three systems, at this N
    restore_reps: int
    history_reps: int
    fanout_reps: int
    restore_sweep: tuple[int, ...] = ()  # W3: cold reads of Stepwise and the faster LangGraph at these N
    sweep_reps: int = 5
    fanout_widths: tuple[int, ...] = (workload.FANOUT_WORKERS,)  # W4
    io_widths: tuple[int, ...] = (50, 200)  # W5
    io_latency: float = workload.IO_LATENCY_S
    io_reps: int = 3
    short_runs: int = 1000  # W6: runs per system alternating every run (reported)
    short_block: int = 100  # W6: runs per block in the judged ABBA blocks
    short_blocks: int = 4  # W6: blocks per system (S L L S S L L S: 4 × 100 = 400 runs each)
    long_turns: int = 2500  # W7: 2·turns+1 steps
    startup_reps: int = 5
    modes: tuple[str, ...] = ("a", "b", "c")
    systems: tuple[str, ...] = SYSTEMS
    fanout_modes: tuple[str, ...] = ("b", "c")
    only: tuple[str, ...] = ()  # run only these sections (w1 = W1-W3 at restore_size, w3 = the sweep, w4 … w7, startup)
    notes: list[str] = field(default_factory=list)


QUICK = Config(
    "quick",
    sizes=(10, 100),
    reps=3,
    warmup=1,
    growth=(10, 100),
    restore_size=100,
    restore_reps=5,
    history_reps=3,
    fanout_reps=5,
    restore_sweep=(100, 337, 673),
    sweep_reps=5,
    fanout_widths=(10, 50),
    io_widths=(50,),
    io_reps=2,
    short_runs=200,
    short_block=50,
    long_turns=500,
    startup_reps=3,
)
FULL = Config(
    "full",
    sizes=(10, 100, 500),
    reps=5,
    warmup=1,
    growth=(100, 500),
    restore_size=500,
    restore_reps=7,
    history_reps=3,
    fanout_reps=7,
    restore_sweep=(100, 250, 400, 550, 673, 850, 1000),
    sweep_reps=9,  # p50 of 9 (5 before round 4): one load spike on a shared machine moved a p50 of 5
    fanout_widths=(10, 50, 200),
    io_widths=(50, 200),
    io_reps=3,
    short_runs=1000,
    long_turns=2500,
    startup_reps=5,
)
# The smoke test's plan: the quick mode's smallest size, once (W2's growth needs a second size: 20).
SMOKE = replace(
    QUICK,
    name="smoke",
    sizes=(10,),
    reps=1,
    warmup=0,
    growth=(10, 20),
    restore_size=10,
    restore_reps=1,
    history_reps=1,
    fanout_reps=1,
    restore_sweep=(10,),
    sweep_reps=1,
    fanout_widths=(5,),
    io_widths=(5,),
    io_latency=0.01,
    io_reps=1,
    short_runs=5,
    short_block=2,
    long_turns=20,
    startup_reps=1,
)
TARGET_SIZE = 500  # the issue states its W1 target at N=500
W3_PEER = "langgraph-add"  # the faster of LangGraph's two readers (W3 at N=500: ~1.7 ms against ~11 ms)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _alternating(items: tuple[str, ...], rep: int) -> Iterable[str]:
    return items if rep % 2 == 0 else tuple(reversed(items))


def _timed(runner: Any) -> Sample:
    """One timed ``runner.run()`` (set up before, checked after the clock)."""
    with clock() as sample:
        result = runner.run()
    runner.check(result)
    return sample


class Runner:
    def __init__(self, config: Config, workdir: Path, progress: Callable[[str], None] = log, partial: Path | None = None) -> None:
        self.partial = partial
        self.config = config
        self.workdir = workdir
        self.progress = progress
        self._count = 0
        self.handles: dict[str, dict[str, Any]] = {}

    def _dir(self) -> Path:
        self._count += 1
        path = self.workdir / f"run-{self._count:04d}"
        path.mkdir(parents=True)
        return path

    # -- W1 + W2 -----------------------------------------------------------------------------------
    def _react(self, system: str, mode: str, turns: int, where: Path) -> Any:
        if system == sw.MIDRUN:
            return sw.React(mode, turns, where, settle=False)
        return sw.React(mode, turns, where) if system == "stepwise" else lg.React(system, mode, turns, where)

    def react(self, turns: int, mode: str, reps: int, warmup: int) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        systems = tuple(s for s in self.config.systems if not (s == "stepwise" and mode == "a"))
        samples: dict[str, list[Sample]] = {s: [] for s in systems}
        stored: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        keep = mode == "c" and turns == self.config.restore_size
        for rep in range(warmup + reps):
            for system in _alternating(systems, rep):
                where = self._dir()
                runner = self._react(system, mode, turns, where)
                try:
                    sample = _timed(runner)
                    if rep >= warmup:
                        samples[system].append(sample)
                        if mode == "c":
                            stored[system].append(runner.stored())
                finally:
                    runner.close()
                if keep and rep == warmup + reps - 1:
                    self.handles[system] = runner.handle()
                else:
                    shutil.rmtree(where, ignore_errors=True)
        steps = workload.react_steps(turns)
        rows = [{"system": s, "mode": mode, "n": turns, "steps": steps, **summary(samples[s], per=steps)} for s in systems]
        if "stepwise" in self.config.systems and mode == "a":
            rows.insert(0, {"system": "stepwise", "mode": "a", "n": turns, "steps": steps, "na": sw.NOT_APPLICABLE_A})
        return rows, stored

    # -- W3 ------------------------------------------------------------------------------------------
    def restore(self) -> list[dict[str, Any]]:
        n = self.config.restore_size
        systems = tuple(s for s in self.config.systems if s in self.handles)
        cold: dict[str, list[Sample]] = {s: [] for s in systems}
        warm: dict[str, list[Sample]] = {s: [] for s in systems}
        hist: dict[str, list[Sample]] = {s: [] for s in systems}
        counts: dict[str, dict[str, int]] = {s: {} for s in systems}
        want = workload.react_steps(n) + 1
        self._cold_reads(self.handles, systems, self.config.restore_reps, want, cold, warm, f"W3 N={n}")
        reader: Any
        for rep in range(self.config.history_reps):
            for system in _alternating(systems, rep):
                reader = self._reader(system)
                try:
                    with clock() as sample:
                        counts[system]["history_states"] = reader.history()
                finally:
                    reader.close()
                hist[system].append(sample)
        return [
            {
                "system": s,
                "n": n,
                "messages": want,
                **counts[s],
                "current_state": summary(cold[s]),
                "current_state_warm": summary(warm[s]),
                "history": summary(hist[s]),
            }
            for s in systems
        ]

    def _reader(self, system: str, handles: dict[str, dict[str, Any]] | None = None) -> Any:
        handle = (handles or self.handles)[system]
        return sw.Reader(handle) if system in ("stepwise", sw.MIDRUN) else lg.Reader(handle)

    def _cold_reads(
        self,
        handles: dict[str, dict[str, Any]],
        systems: tuple[str, ...],
        reps: int,
        want: int,
        cold: dict[str, list[Sample]],
        warm: dict[str, list[Sample]] | None,
        what: str,
    ) -> None:
        """Fresh readers in alternation: each times its first read of the current state (and, with ``warm``,
        a second read by the same reader); a reader that restores the wrong number of messages stops the run."""
        for rep in range(reps):
            for system in _alternating(systems, rep):
                reader = self._reader(system, handles)
                try:
                    with clock() as first:
                        got = reader.current()
                    if warm is not None:
                        with clock() as again:
                            reader.current()
                        warm[system].append(again)
                finally:
                    reader.close()
                if got != want:
                    raise RuntimeError(f"{what} {system}: restored {got} messages, expected {want}")
                cold[system].append(first)

    # -- W4 ------------------------------------------------------------------------------------------
    def fanout(self, mode: str, width: int) -> list[dict[str, Any]]:
        systems = tuple(s for s in FANOUT_SYSTEMS if s in self.config.systems)
        samples: dict[str, list[Sample]] = {s: [] for s in systems}
        l0 = load()
        for rep in range(self.config.warmup + self.config.fanout_reps):
            for system in _alternating(systems, rep):
                where = self._dir()
                runner: Any = sw.Fanout(mode, where, width) if system == "stepwise" else lg.Fanout(mode, where, width)
                try:
                    sample = _timed(runner)
                finally:
                    runner.close()
                    shutil.rmtree(where, ignore_errors=True)
                if rep >= self.config.warmup:
                    samples[system].append(sample)
        l1 = load()
        return [{"system": s, "mode": mode, "workers": width, **summary(samples[s]), "load": [l0, l1]} for s in systems]

    # -- W3 sweep: cold restore at many N ---------------------------------------------------------------
    def restore_sweep(self, n: int) -> list[dict[str, Any]]:
        """One durable run of N turns per system (untimed), then fresh readers timed in alternation. Stepwise is
        read twice: as the run left it (snapshotted when it stopped: what a resume or a state read finds), and as
        a reader in the middle of the run finds it (the end-of-run snapshot not taken: a tail of up to CADENCE - 1
        events to replay, as after a crash)."""
        systems = tuple(s for s in ("stepwise", sw.MIDRUN, W3_PEER) if s.removesuffix("-midrun") in self.config.systems)
        handles: dict[str, dict[str, Any]] = {}
        dirs = []
        for system in systems:
            where = self._dir()
            dirs.append(where)
            runner = self._react(system, "c", n, where)
            try:
                runner.check(runner.run())
            finally:
                runner.close()
            handles[system] = runner.handle()
        extra: dict[str, dict[str, Any]] = {s: {} for s in systems}
        for system in ("stepwise", sw.MIDRUN):
            if system in handles:
                extra[system] = sw.snapshot_position(handles[system])
        cold: dict[str, list[Sample]] = {s: [] for s in systems}
        l0 = load()
        want = workload.react_steps(n) + 1
        try:
            self._cold_reads(handles, systems, self.config.sweep_reps, want, cold, None, f"W3 sweep N={n}")
        finally:
            for where in dirs:
                shutil.rmtree(where, ignore_errors=True)
        l1 = load()
        return [{"system": s, "n": n, **summary(cold[s]), **extra[s], "load": [l0, l1]} for s in systems]

    # -- W5: I/O-bound fan-out ------------------------------------------------------------------------------
    def io_fanout(self, width: int) -> list[dict[str, Any]]:
        """Every (system, variant) at ``width``, each also at zero latency (its own overhead), alternated."""
        cfg = self.config
        entries = [(s, v) for s in FANOUT_SYSTEMS if s in cfg.systems for v in ("sync", "async")]
        samples: dict[tuple[str, str, float], list[Sample]] = {}
        broken: dict[tuple[str, str], str] = {}
        l0 = load()
        for rep in range(cfg.warmup + cfg.io_reps):
            for system, variant in _alternating(tuple(entries), rep):  # type: ignore[arg-type]
                if (system, variant) in broken:
                    continue
                for latency in (cfg.io_latency, 0.0):
                    where = self._dir()
                    side: Any = sw if system == "stepwise" else lg
                    runner: Any = None
                    try:
                        runner = side.IOFanout(variant, width, latency, where)
                        sample = _timed(runner)
                    except Exception as exc:  # noqa: BLE001 - recorded as "not available" with the reason
                        broken[(system, variant)] = f"{type(exc).__name__}: {str(exc)[:300]}"
                        break
                    finally:
                        if runner is not None:
                            runner.close()
                        shutil.rmtree(where, ignore_errors=True)
                    if rep >= cfg.warmup:
                        samples.setdefault((system, variant, latency), []).append(sample)
        l1 = load()
        rows = []
        for system, variant in entries:
            labels = (sw if system == "stepwise" else lg).IO_VARIANTS
            row: dict[str, Any] = {
                "system": system,
                "variant": variant,
                "label": labels[variant],
                "workers": width,
                "latency_ms": cfg.io_latency * 1000,
                "load": [l0, l1],
            }
            if (system, variant) in broken:
                row["na"] = broken[(system, variant)]
            else:
                row.update(summary(samples[(system, variant, cfg.io_latency)]))
                row["zero_latency"] = summary(samples[(system, variant, 0.0)])
                ideal = cfg.io_latency * 1000 + row["zero_latency"]["wall_ms"]
                row["ideal_ms"] = round(ideal, 3)
                row["x_ideal"] = round(row["wall_ms"] / ideal, 3)
                row["x_latency"] = round(row["wall_ms"] / (cfg.io_latency * 1000), 3)
            rows.append(row)
        return rows

    # -- W6: many short runs into one store ---------------------------------------------------------------
    def short_runs(self) -> list[dict[str, Any]]:
        """W6. Two phases into the same stores. First every run alternates with the other system's (S L L S …,
        reported). Then the judged phase: ABBA blocks of ``short_block`` runs, ``short_blocks`` per system
        (S L L S S L L S), so a run follows its own system's run as in a process running its own agents, and
        both systems are measured the same way. Measured cause of the gap between the two: CPU caches, not
        garbage collection (docs/benchmarks.md, W6). Garbage is collected outside the clock before each phase
        and each block, so no system's collection is charged with the other's leftovers; never per run (a full
        collection walks the heap and itself cools the caches the next run needs). SQL statements are counted on
        ``short_block`` more runs per system, untimed."""
        import gc

        cfg = self.config
        systems = tuple(s for s in ("stepwise", W3_PEER) if s in cfg.systems)
        n, block, blocks = cfg.short_runs, cfg.short_block, cfg.short_blocks
        dirs = {s: self._dir() for s in systems}
        runners: dict[str, Any] = {s: (sw.ShortRuns(dirs[s]) if s == "stepwise" else lg.ShortRuns(dirs[s])) for s in systems}
        every_run: dict[str, list[Sample]] = {s: [] for s in systems}
        in_blocks: dict[str, list[Sample]] = {s: [] for s in systems}
        l0 = load()
        rows = []
        try:
            gc.collect()
            for i in range(n):
                for system in _alternating(systems, i):
                    with clock(collect=False) as sample:
                        runners[system].run_one()
                    every_run[system].append(sample)
            for half in range(blocks):
                for system in _alternating(systems, half):
                    gc.collect()
                    for _ in range(block):
                        with clock(collect=False) as sample:
                            runners[system].run_one()
                        in_blocks[system].append(sample)
            l1 = load()
            # Statements are counted on runs of their own, outside the clock: the trace callback gets each statement's
            # text with its bound values, which sqlite3 builds only for it (~60 µs of a Stepwise run, measured).
            for system in systems:
                runners[system].counting(True)
                for _ in range(block):
                    runners[system].run_one()
                runners[system].counting(False)
            judged_runs = blocks * block
            total = n + judged_runs + block
            for system in systems:
                r = runners[system]
                statements, commits = r.statements.count, r.statements.commits
                r.close()
                with clock() as listed:
                    count = r.list_runs()
                with clock() as read:
                    messages = r.read_all()
                if count != total or messages != 3 * total:
                    raise RuntimeError(f"W6 {system}: listed {count} runs and read {messages} messages, expected {total} and {3 * total}")
                walls = [x.wall_s * 1000 for x in in_blocks[system]]
                alternating = summary(every_run[system])
                alternating_walls = [x.wall_s * 1000 for x in every_run[system]]
                rows.append(
                    {
                        "system": system,
                        "judged": "blocks",
                        "runs": judged_runs,
                        "block_runs": block,
                        "blocks": blocks,
                        **summary(in_blocks[system]),
                        "wall_ms_p90": round(percentile(walls, 90), 4),
                        "wall_ms_p99": round(percentile(walls, 99), 4),
                        "every_run_runs": n,
                        "every_run_wall_ms": alternating["wall_ms"],
                        "every_run_cpu_ms": alternating["cpu_ms"],
                        "every_run_wall_ms_p90": round(percentile(alternating_walls, 90), 4),
                        "every_run_wall_ms_p99": round(percentile(alternating_walls, 99), 4),
                        "statements_per_run": round(statements / block, 2),
                        "commits_per_run": round(commits / block, 2),
                        "list_ms": round(listed.wall_s * 1000, 3),
                        "read_all_ms": round(read.wall_s * 1000, 3),
                        "read_per_run_ms": round(read.wall_s * 1000 / total, 4),
                        "load": [l0, l1],
                    }
                )
                rows[-1].pop("samples_wall_ms")  # thousands of samples: keep the percentiles only
                rows[-1].pop("samples_cpu_ms")
        finally:
            for where in dirs.values():
                shutil.rmtree(where, ignore_errors=True)
        return rows

    # -- W7: one long loop ------------------------------------------------------------------------------
    def long_loop(self) -> dict[str, Any]:
        """In a child process, so its RSS is the loop's own and not the rest of the suite's."""
        import json
        import os
        import subprocess

        where = self._dir()
        l0 = load()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.run(
            [sys.executable, "-m", "bench.long", str(self.config.long_turns), str(where)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        shutil.rmtree(where, ignore_errors=True)
        if proc.returncode != 0:
            raise RuntimeError(f"W7 failed: {proc.stderr[-2000:]}")
        raw = json.loads(proc.stdout)
        steps = [s * 1000 for s in raw.pop("step_s")]
        steps_cpu = [s * 1000 for s in raw.pop("step_cpu_s")]
        med, med_cpu = median(steps), median(steps_cpu)
        slow = [i for i, x in enumerate(steps) if x > 5 * med]
        faults, preempted = raw.pop("step_faults"), raw.pop("step_preempted")
        off_cpu = [w - c for w, c in zip(steps, steps_cpu, strict=True)]
        causes = _w7_causes(slow, raw.get("gc", []), raw.get("handover_steps", []), faults, preempted, off_cpu)
        tenth = max(1, len(steps) // 10)
        worst = sorted(range(len(steps)), key=steps.__getitem__)[-5:]
        worst_cpu = sorted(range(len(steps_cpu)), key=steps_cpu.__getitem__)[-5:]
        return {
            "system": "stepwise",
            "turns": self.config.long_turns,
            "steps": raw["steps"],
            "wall_ms": round(raw["wall_s"] * 1000, 1),
            "cpu_ms": round(raw["cpu_s"] * 1000, 1),
            "step_ms_median": round(med, 4),
            "step_ms_p99": round(percentile(steps, 99), 4),
            "step_ms_max": round(max(steps), 3),
            "max_over_median": round(max(steps) / med, 2),
            "first_tenth_median_ms": round(median(steps[:tenth]), 4),
            "last_tenth_median_ms": round(median(steps[-tenth:]), 4),
            "flatness": round(median(steps[-tenth:]) / median(steps[:tenth]), 3),
            "slowest_steps": [{"index": i, "ms": round(steps[i], 3), "cpu_ms": round(steps_cpu[i], 3)} for i in reversed(worst)],
            "cpu_step_ms_median": round(med_cpu, 4),
            "cpu_step_ms_p99": round(percentile(steps_cpu, 99), 4),
            "cpu_step_ms_max": round(max(steps_cpu), 3),
            "cpu_max_over_median": round(max(steps_cpu) / med_cpu, 2),
            "cpu_flatness": round(median(steps_cpu[-tenth:]) / median(steps_cpu[:tenth]), 3),
            "slowest_cpu_steps": [{"index": i, "cpu_ms": round(steps_cpu[i], 3), "ms": round(steps[i], 3)} for i in reversed(worst_cpu)],
            "steps_over_5x_median": len(slow),
            "over_5x": [{"index": i, "ms": round(steps[i], 3), "cpu_ms": round(steps_cpu[i], 3), "in_it": causes[i]} for i in slow[:20]],
            "gc_passes": {f"gen{g}": sum(1 for c in raw.get("gc", []) if c["generation"] == g) for g in (0, 1, 2)},
            "gc_gen1_ms": [round(c["s"] * 1000, 3) for c in raw.get("gc", []) if c["generation"] >= 1],
            "handover_steps": raw.get("handover_steps", []),
            "steps_preempted": sum(1 for n in preempted if n),
            "cpu_steps_over_5x_median": sum(1 for x in steps_cpu if x > 5 * med_cpu),
            "rss_before_mib": round(raw["rss_before_kib"] / 1024, 1),
            "rss_after_mib": round(raw["rss_after_kib"] / 1024, 1),
            "rss_peak_mib": round(raw["rss_peak_kib"] / 1024, 1),
            "load": [l0, load()],
        }

    # -- start-up --------------------------------------------------------------------------------------
    def startup(self) -> dict[str, Any]:
        from bench.startup import measure_startup

        l0 = load()
        out = measure_startup(self.config.startup_reps, self._dir())
        out["load"] = [l0, load()]
        return out

    def react_sections(self, results: dict[str, Any]) -> None:
        """W1 (every N and mode), W2 (bytes and growth) and W3 (restore and history at restore_size)."""
        cfg = self.config
        stored_at: dict[int, dict[str, list[dict[str, Any]]]] = {}
        for n in cfg.sizes:
            for mode in cfg.modes:
                self.progress(f"W1 N={n} mode ({mode})")
                l0 = load()
                rows, stored = self.react(n, mode, cfg.reps, cfg.warmup)
                for row in rows:
                    row["load"] = [l0, load()]
                results["w1"].extend(rows)
                if mode == "c":
                    stored_at[n] = stored
        for n in cfg.growth:  # W2 sizes that W1 did not run: one durable run each, for the bytes only
            if n not in stored_at:
                self.progress(f"W2 N={n} (bytes only)")
                stored_at[n] = self.react(n, "c", 1, 0)[1]
        results["w2"] = self.storage_rows(stored_at)
        results["w2_growth"] = self.growth_rows(results["w2"])
        self.progress(f"W3 restore at N={cfg.restore_size}")
        results["w3"] = self.restore()

    # -- everything ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.config
        started = time.time()
        results: dict[str, Any] = {
            "meta": {
                "mode": cfg.name,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": machine(self.workdir),
                "versions": versions(),
                "config": {k: v for k, v in asdict(cfg).items() if k != "notes"},
                "labels": LABELS,
                "modes": {"stepwise": sw.MODES, "langgraph": lg.MODES},
                "message_bytes": workload.MESSAGE_BYTES,
                "w3_peer": W3_PEER,
                "snapshot_cadence": CADENCE,
            },
            "w1": [],
            "w2": [],
            "w3": [],
            "w3_sweep": [],
            "w4": [],
            "w5": [],
            "w6": [],
            "w7": None,
            "startup": None,
        }
        only = set(cfg.only)

        def want(section: str) -> bool:
            return not only or section in only

        if want("w1"):
            self.react_sections(results)
            self.save(results)
        if want("w3"):
            for n in cfg.restore_sweep:
                self.progress(f"W3 sweep: cold restore at N={n}")
                results["w3_sweep"].extend(self.restore_sweep(n))
            self.save(results)
        if want("w4"):
            for width in cfg.fanout_widths:
                for mode in cfg.fanout_modes:
                    self.progress(f"W4 fan-out {width} ({mode})")
                    results["w4"].extend(self.fanout(mode, width))
            self.save(results)
        if want("w5"):
            for width in cfg.io_widths:
                self.progress(f"W5 I/O fan-out {width} × {cfg.io_latency * 1000:.0f} ms")
                results["w5"].extend(self.io_fanout(width))
            self.save(results)
        if want("w6"):
            self.progress(f"W6 {cfg.short_runs} short runs")
            results["w6"] = self.short_runs()
            self.save(results)
        if want("w7"):
            self.progress(f"W7 one loop of {2 * cfg.long_turns + 1} steps")
            results["w7"] = self.long_loop()
        if want("startup"):
            self.progress("start-up")
            results["startup"] = self.startup()
        self.progress("AWS cost model")
        from bench.costs import cost_model

        results["costs"] = cost_model()
        results["targets"] = targets(results)
        results["meta"]["duration_s"] = round(time.time() - started, 1)
        results["meta"]["machine"]["loadavg_end"] = list(__import__("os").getloadavg())
        results["meta"]["machine"]["speed_ms_end"] = speed()
        return results

    def save(self, results: dict[str, Any]) -> None:
        """Write what has been measured so far (a long run that dies still leaves its numbers)."""
        if self.partial is not None:
            import json

            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self.partial.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")

    @staticmethod
    def storage_rows(stored_at: dict[int, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
        rows = []
        for n, by_system in sorted(stored_at.items()):
            raw = workload.raw_message_bytes(n)
            for system, measured in by_system.items():
                if not measured:
                    continue
                total = int(median([m["total"] for m in measured]))
                rows.append(
                    {
                        "system": system,
                        "n": n,
                        "bytes": total,
                        "raw_message_bytes": raw,
                        "ratio_to_raw": round(total / raw, 3),
                        "breakdown": measured[-1],
                    }
                )
        return rows

    def growth_rows(self, w2: list[dict[str, Any]]) -> list[dict[str, Any]]:
        lo, hi = self.config.growth
        by = {(r["system"], r["n"]): r["bytes"] for r in w2}
        return [
            {"system": s, "n_lo": lo, "n_hi": hi, "exponent": round(growth_exponent(lo, by[(s, lo)], hi, by[(s, hi)]), 3)}
            for s in self.config.systems
            if (s, lo) in by and (s, hi) in by
        ]


def _pick(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _sweep_median(values: list[float]) -> float:
    return round(median(values), 2) if values else float("nan")


def _w3_reader(rows: list[dict[str, Any]], peer_at: dict[int, dict[str, Any]]) -> tuple[str, bool]:
    """One Stepwise W3 reader over the sweep: its summary, and whether it is ≤ 2 ms and ahead of LangGraph at every N."""
    worst = max(rows, key=lambda r: r["wall_ms"])
    slower = [r["n"] for r in rows if r["n"] in peer_at and r["wall_ms"] >= peer_at[r["n"]]["wall_ms"]]
    over = [r["n"] for r in rows if r["wall_ms"] > 2]
    ratios = [peer_at[r["n"]]["wall_ms"] / r["wall_ms"] for r in rows if r["n"] in peer_at]
    text = (
        f"p50 median {_sweep_median([r['wall_ms'] for r in rows]):.2f} ms over {len(rows)} N, worst {worst['wall_ms']:.2f} ms at "
        f"N={worst['n']}; LangGraph ÷ it: median {_sweep_median(ratios):.2f}×, min {min(ratios, default=float('nan')):.2f}×"
        + (f"; slower than LangGraph at N={slower}" if slower else "; ahead at every N")
        + (f"; over 2 ms at N={over}" if over else "")
    )
    return text, not slower and not over


def _w6_target(w6: dict[str, Any]) -> dict[str, Any]:
    """W6's target row; results recorded before the ABBA blocks (round 4) were judged on every-run alternation."""
    counts = f"{w6['statements_per_run']:.1f} SQL statements and {w6['commits_per_run']:.1f} write transactions per run"
    if "every_run_wall_ms" not in w6:
        return {
            "target": "3-node run ≤ 1 ms (engine overhead; the nodes do ~µs of work)",
            "measured": f"{w6['wall_ms']:.3f} ms p50 ({w6['cpu_ms']:.3f} ms CPU), p90 {w6['wall_ms_p90']:.3f} ms; {counts}",
            "met": w6["wall_ms"] <= 1.0,
        }
    every = w6["every_run_wall_ms"]
    return {
        "target": "3-node run ≤ 1 ms (engine overhead; the nodes do ~µs of work), judged on the p50 of ABBA blocks of runs "
        "(a process runs its own runs back to back; both systems measured the same way)",
        "measured": f"blocks of {w6['block_runs']}, {w6['runs']} runs: {w6['wall_ms']:.3f} ms p50 ({w6['cpu_ms']:.3f} ms CPU), "
        f"p90 {w6['wall_ms_p90']:.3f} ms; {counts}; alternating every run with LangGraph: {every:.3f} ms p50"
        + (" (over 1 ms: a loss, shown, not judged)" if every > 1.0 else " (not judged)"),
        "met": w6["wall_ms"] <= 1.0,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of the performance issue, each from this run; ``met`` is a plain bool. Sweeps are judged at
    every point (or by their median where the target says so), never at one favourable point."""
    cfg = results["meta"]["config"]
    peers = [s for s in cfg["systems"] if s != "stepwise"]
    out: list[dict[str, Any]] = []

    # W1: ≥ 10× by wall and CPU at N=500 (as stated), with the sweep median beside it
    ratios: list[tuple[int, float, float, str]] = []
    for n in cfg["sizes"]:
        me = _pick(results["w1"], system="stepwise", mode="c", n=n)
        others = [r for p in peers if (r := _pick(results["w1"], system=p, mode="c", n=n))]
        if me and others:
            best = min(others, key=lambda r: r["wall_ms"])
            ratios.append((n, best["wall_ms"] / me["wall_ms"], min(o["cpu_ms"] for o in others) / me["cpu_ms"], best["system"]))
    if ratios:
        n, wall, cpu, peer = next((r for r in ratios if r[0] == TARGET_SIZE), ratios[-1])
        at = "" if n == TARGET_SIZE else f" (largest N here is {n}; the target is stated at N={TARGET_SIZE})"
        med_wall, med_cpu = _sweep_median([r[1] for r in ratios]), _sweep_median([r[2] for r in ratios])
        out.append(
            {
                "id": "W1",
                "target": "durable ReAct step ≥ 10× cheaper than the faster LangGraph + SqliteSaver at N=500, by wall and CPU",
                "measured": f"N={n}: {wall:.1f}× wall, {cpu:.1f}× CPU vs {LABELS[peer]}{at}; median over N={list(cfg['sizes'])}: "
                f"{med_wall:.1f}× wall, {med_cpu:.1f}× CPU",
                "ratio": round(wall, 2),
                "cpu_ratio": round(cpu, 2),
                "sweep_median": med_wall,
                "sweep_median_cpu": med_cpu,
                "met": wall >= 10 and cpu >= 10,
            }
        )

    growth = _pick(results.get("w2_growth") or [], system="stepwise")
    hi = cfg["growth"][1]
    size = _pick(results["w2"], system="stepwise", n=hi)
    if growth and size:
        ok = growth["exponent"] <= 1.1 and size["ratio_to_raw"] <= 2.0
        out.append(
            {
                "id": "W2",
                "target": "linear growth (exponent ≤ 1.1) and total bytes ≤ 2× the raw message bytes",
                "measured": f"exponent {growth['exponent']:.2f} between N={growth['n_lo']} and N={growth['n_hi']}; "
                f"{size['ratio_to_raw']:.2f}× the raw message bytes at N={hi}",
                "exponent": growth["exponent"],
                "ratio_to_raw": size["ratio_to_raw"],
                "met": ok,
            }
        )

    sweep = results.get("w3_sweep") or []
    mine = [r for r in sweep if r["system"] == "stepwise"]
    if mine:
        peer_at = {r["n"]: r for r in sweep if r["system"] == results["meta"].get("w3_peer", W3_PEER)}
        stopped, stopped_ok = _w3_reader(mine, peer_at)
        mid = [r for r in sweep if r["system"] == sw.MIDRUN]
        midrun, midrun_ok = _w3_reader(mid, peer_at) if mid else ("not measured", False)
        cadence = results["meta"].get("snapshot_cadence", 32)
        out.append(
            {
                "id": "W3",
                "target": "cold restore (fresh reader, current state) ≤ 2 ms p50 and faster than LangGraph's at every N, for a "
                f"stopped run's thread and for a reader mid-run (the last cadence snapshot, every {cadence} events, and its tail)",
                "measured": f"stopped run: {stopped}. Mid-run: {midrun}",
                "worst_ms": max(r["wall_ms"] for r in mine),
                "worst_midrun_ms": max((r["wall_ms"] for r in mid), default=float("nan")),
                "met": stopped_ok and midrun_ok,
            }
        )
    w3 = _pick(results["w3"], system="stepwise")
    if w3:
        hist = w3["history"]["wall_ms"]
        out.append(
            {
                "id": "W3h",
                "target": f"whole history ≤ 200 ms at N={w3['n']}",
                "measured": f"{hist:.1f} ms for {w3['history_states']} states",
                "met": hist <= 200,
            }
        )

    widths = sorted({r["workers"] for r in results["w4"]})
    w4 = [
        (w, m, t)
        for w in widths
        if (m := _pick(results["w4"], system="stepwise", mode="c", workers=w))
        and (t := _pick(results["w4"], system="langgraph", mode="c", workers=w))
    ]
    if w4:
        parts = "; ".join(f"{w}: {m['wall_ms']:.1f} vs {t['wall_ms']:.1f} ms ({t['wall_ms'] / m['wall_ms']:.2f}×)" for w, m, t in w4)
        out.append(
            {
                "id": "W4",
                "target": "CPU-bound fan-out, durable, faster than LangGraph + SqliteSaver at every width",
                "measured": f"Stepwise vs LangGraph per run at width {parts}",
                "met": all(t["wall_ms"] > m["wall_ms"] for _, m, t in w4),
            }
        )

    w5_widths = sorted({r["workers"] for r in results["w5"]})
    if w5_widths:
        parts, ok = [], True
        for w in w5_widths:
            rows = [r for r in results["w5"] if r["workers"] == w and "na" not in r]
            mine5 = [r for r in rows if r["system"] == "stepwise"]
            theirs = [r for r in rows if r["system"] != "stepwise"]
            if not mine5 or not theirs:
                ok = False
                continue
            me5, them = min(mine5, key=lambda r: r["wall_ms"]), min(theirs, key=lambda r: r["wall_ms"])
            default = _pick(results["w5"], system="stepwise", workers=w, variant="sync")
            ok = ok and me5["x_ideal"] <= 1.15 and me5["wall_ms"] < them["wall_ms"]
            parts.append(
                f"{w} branches: Stepwise ({me5['variant']}) {me5['wall_ms']:.0f} ms = {me5['x_ideal']:.2f}× ideal "
                f"({me5['x_latency']:.2f}× the latency), best LangGraph ({them['variant']}) {them['wall_ms']:.0f} ms "
                f"({them['wall_ms'] / me5['wall_ms']:.2f}×)"
                + (f"; blocking nodes {default['wall_ms']:.0f} ms" if default and "na" not in default else "")
            )
        out.append(
            {
                "id": "W5",
                "target": "I/O fan-out (200 ms per branch), durable, default settings: ≤ 1.15× ideal and ahead of LangGraph at every width",
                "measured": "; ".join(parts) or "no Stepwise result",
                "met": ok,
            }
        )

    w6 = _pick(results.get("w6") or [], system="stepwise")
    if w6:
        out.append({"id": "W6", **_w6_target(w6)})

    w7 = results.get("w7")
    if w7:
        cpu_part = (
            f"; by CPU time: max {w7['cpu_step_ms_max']:.2f} ms = {w7['cpu_max_over_median']:.1f}× the median "
            f"{w7['cpu_step_ms_median']:.3f} ms ({w7['cpu_steps_over_5x_median']} steps over 5×)"
            if "cpu_max_over_median" in w7
            else ""
        )
        out.append(
            {
                "id": "W7",
                "target": f"no step slower than 5× the median over {w7['steps']} steps (judged by wall time)",
                "measured": f"wall: max {w7['step_ms_max']:.2f} ms = {w7['max_over_median']:.1f}× the median {w7['step_ms_median']:.3f} ms"
                f"{cpu_part}{_w7_attribution(w7)}; last tenth ÷ first tenth {w7['flatness']:.2f}; "
                f"RSS {w7['rss_before_mib']:.0f} → {w7['rss_after_mib']:.0f} MiB",
                "met": w7["max_over_median"] <= 5,
            }
        )

    st = results.get("startup")
    if st:
        imp = st["import_ms"]["stepwise_run"]
        out.append(
            {
                "id": "start-up",
                "target": "`stepwise run` of a function-only graph imports in ≤ 300 ms",
                "measured": f"{imp:.0f} ms of imports (-X importtime), whole process {st['process_ms']['stepwise_run']:.0f} ms "
                f"(empty interpreter {st['process_ms']['empty']:.0f} ms); "
                f"LangGraph's imports {st['import_ms']['langgraph']:.0f} ms",
                "met": imp <= 300,
            }
        )

    costs = results.get("costs")
    if costs:
        turn = costs["react_turn"]["per_turn"]
        out.append(
            {
                "id": "AWS",
                "target": "≤ 2 state transitions per ReAct turn with the default loop",
                "measured": f"{turn:.0f} transitions per turn",
                "met": turn <= 2,
            }
        )
    return out


def run_suite(
    config: Config, workdir: Path | None = None, progress: Callable[[str], None] = log, partial: Path | None = None
) -> dict[str, Any]:
    """Run the whole plan in a scratch directory (removed afterwards) and return the results."""
    base = Path(tempfile.mkdtemp(prefix="stepwise-bench-", dir=workdir))
    try:
        return Runner(config, base, progress, partial).run()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _w7_causes(
    slow: list[int],
    collections: list[dict[str, Any]],
    handovers: list[int],
    faults: list[int],
    preempted: list[int],
    off_cpu_ms: list[float],
) -> dict[int, str]:
    """What else ran inside each slow W7 step: a garbage-collector pass (generation ≥ 1, or a gen-0 pass over
    0.1 ms), a hand-over to a continuation execution, the OS preempting the thread (an involuntary context
    switch), page faults, and wall time not spent on this thread's CPU (over 0.1 ms: with no switch, the
    virtual CPU itself stalled); "" when none of them."""
    out: dict[int, str] = {}
    for i in slow:
        found = [
            f"gen-{c['generation']} GC {c['s'] * 1000:.2f} ms" for c in collections if c["step"] == i and (c["generation"] or c["s"] > 1e-4)
        ]
        if i in handovers:
            found.append("hand-over")
        if preempted[i]:
            found.append(f"preempted ×{preempted[i]}")
        if faults[i]:
            found.append(f"{faults[i]} page fault{'s' * (faults[i] > 1)}")
        if off_cpu_ms[i] > 0.1:
            found.append(f"off-CPU {off_cpu_ms[i]:.2f} ms")
        out[i] = ", ".join(found)
    return out


# what a slow step is counted under: the first of these that ran in it
_W7_KINDS = (
    ("GC", "a GC pass"),
    ("hand-over", "the hand-over"),
    ("preempted", "the OS preempting the thread"),
    ("fault", "page faults"),
    ("off-CPU", "time off this thread's CPU with no switch (the virtual CPU stalled)"),
)
_W7_NOTHING = "nothing else recorded (on CPU throughout, no GC pass, hand-over, page fault or preemption: unattributed)"


def _w7_attribution(w7: dict[str, Any]) -> str:
    """The slow steps counted by what ran in them (see ``_w7_causes``), for the target row."""
    if not w7.get("over_5x"):
        return ""
    groups: dict[str, int] = {}
    for o in w7["over_5x"]:
        kind = next((label for key, label in _W7_KINDS if key in o["in_it"]), _W7_NOTHING)
        groups[kind] = groups.get(kind, 0) + 1
    return "; steps over 5× by what ran in them: " + ", ".join(f"{n} with {k}" for k, n in groups.items())
