"""Replay throughput and peak memory (the library behind `torta bench replay`, torta/commands/bench.py).

Cases (each run in a fresh subprocess for a clean peak RSS; `requests_per_s` = requests / wall time of
the timed section = trace loading + seeded replication + the `replay` call including writing the
completions Parquet; interpreter start-up and imports excluded; median of `--repeats`, one thread):
- `normal`: Azure 2023 conv replicated (seeded) to ~N requests, time-scaled so the offered rate is 60 %
  of the `abilene` fleet's capacity (`torta.sim.cluster.capacity_rps`), policy `least-loaded`;
- `overloaded`: the same at 200 % of capacity;
- `large-fleet`: a 5,000-server fleet (abilene's regions, servers cloned round-robin from abilene's
  servers that can serve the trace's model) at 200 % of capacity;
- `memory-10m` (with `--memory-check`): 10,000,000 requests at 60 % on abilene; reports peak RSS;
- `prefix-cache` / `prefix-cache-off` (only when asked for with `--case`): a synthetic multi-turn
  conversation trace with 512-token prefix block ids (`torta.workload.conversations`, seeded, ~N
  requests over one day, prompts up to 16,384 tokens; generated and written to Parquet before the timed
  section, which reads it back) at 60 % of abilene's capacity, replayed with and without the prefix cache
  (`torta.sim.prefix`). Asking for `prefix-cache` runs both, alternating on / off, and its row carries
  `speed_ratio_vs_off` = the median over the pairs of (rate with the cache / rate without).

With the default 1,000,000 requests each row also carries the goal of the simulator issue
(`target_requests_per_s`: 100,000 normal and overloaded, 50,000 large-fleet; `target_peak_rss_mib`:
2,048 for memory-10m) and `meets_target` for the median.

`reference_s` and `reference_mem_s` (medians per case) time fixed pure-Python workloads in the same
process just before the timed section (`reference_s()`: heap and list work on hot data;
`reference_mem_s()`: 1 M float reads in random order, memory latency). They measure the machine, not
TORTA: a slow window on a shared host shows up there too, and rates from runs with different
reference times should not be compared.

Each row also reports `requests_per_cpu_s` (requests / CPU seconds of the same timed section): on a
machine shared with other jobs the wall-clock rate understates what one free core does.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {
    "normal": dict(scenario="abilene", load=0.6, servers=0),
    "overloaded": dict(scenario="abilene", load=2.0, servers=0),
    "large-fleet": dict(scenario="abilene", load=2.0, servers=5000),
    # a trace with prefix block ids (torta.workload.conversations), replayed with the prefix cache and,
    # in alternating runs, without it (the speed ratio of issue 21); not in the default set
    "prefix-cache": dict(scenario="abilene", load=0.6, servers=0, trace="conversations", prefix_cache=True),
    "prefix-cache-off": dict(scenario="abilene", load=0.6, servers=0, trace="conversations", prefix_cache=False),
}
DEFAULT_CASES = ("normal", "overloaded", "large-fleet")
PAIRED = {"prefix-cache": "prefix-cache-off"}  # run alternately; the first's row gets the median speed ratio
CONVERSATION_REQUESTS_PER_CONVERSATION = 3.6  # about what ConversationConfig's defaults give (to size the trace)
# The simulator issue's goals (one core, 1 M requests): requests/s per case; 10 M requests in 2 GiB
TARGET_REQUESTS_PER_S = {"normal": 100_000, "overloaded": 100_000, "large-fleet": 50_000}
TARGET_PEAK_RSS_MIB = {"memory-10m": 2048}


def big_fleet(world, n_servers: int):
    """`world` with `n_servers` servers cloned round-robin from its servers able to run models[0],
    spread over its data-centre regions in turn."""
    from dataclasses import replace

    model = world.models[0]
    proto = [s for s in world.servers if model in s.models]
    dcs = world.dc_regions()
    servers = tuple(replace(proto[k % len(proto)], server_id=k, region=dcs[k % len(dcs)], initial_model=model)
                    for k in range(n_servers))
    return replace(world, servers=servers)


def reference_s(n: int = 200_000) -> float:
    """Seconds for a fixed pure-Python workload shaped like the replay loop (heap pushes and pops of
    tuples, list and dict updates, float arithmetic), run in the same process just before the timed
    section. It does not depend on TORTA's code: when it is slow, the machine was slow (shared hosts
    vary by tens of percent between windows), so rates from runs with different reference times are
    not comparable."""
    import random
    import time
    from heapq import heappop, heappush

    rnd = random.Random(0)
    dts = [rnd.random() for _ in range(1024)]
    heap = [(dts[k], k, k & 63) for k in range(1024)]
    heap.sort()
    acc = [0.0] * 64
    seen: dict = {}
    t0 = time.perf_counter()
    for k in range(n):
        t, i, s = heappop(heap)
        acc[s] += t * 0.5
        seen[i & 4095] = t
        heappush(heap, (t + dts[k & 1023], k, s))
    return time.perf_counter() - t0


def reference_mem_s(n: int = 1_000_000) -> float:
    """Seconds to read `n` float objects of a list in a random order: memory latency, the part of the
    machine that the large-fleet case (state of thousands of servers out of cache) depends on most."""
    import time

    import numpy as np

    xs = [float(k) for k in range(n)]
    order = np.random.default_rng(0).permutation(n).tolist()
    t0 = time.perf_counter()
    acc = 0.0
    for k in order:
        acc += xs[k]
    return time.perf_counter() - t0


def _capable_utilisation(world, slots) -> float:
    """Mean utilisation over the servers that can run the trace's model (`models[0]`: traces without a
    model column are served as the world's first model). `mean_utilisation` averages over the whole
    fleet, where on abilene 37 of 45 servers cannot run it and stay at 0."""
    import polars as pl

    ids = [s.server_id for s in world.servers if world.models[0] in s.models]
    sel = slots.filter(pl.col("server_id").is_in(ids)) if slots.height else slots
    return float(sel["utilisation"].mean()) if sel.height else 0.0


def run_case(case: dict) -> dict:
    """Runs in the subprocess: time the replay of one case."""
    import resource
    import time

    from torta.fleet.scenario import load_scenario
    from torta.sim.cluster import build_tables, capacity_rps
    from torta.sim.engine import EngineConfig
    from torta.sim.replay import replay, scale_load
    from torta.traces import load_trace

    import numpy as np
    import pyarrow as pa

    # pyarrow imports pandas on first use (~0.3 s): imports are excluded from the timed section
    pa.table({"warm": pa.array(np.zeros(1))})
    ref_s = reference_s()
    ref_mem_s = reference_mem_s()
    world = load_scenario(case["scenario"])
    if case["servers"]:
        world = big_fleet(world, case["servers"])
    with tempfile.TemporaryDirectory() as tmp:
        config = EngineConfig()
        if case.get("trace") == "conversations":
            trace = conversation_trace(case["requests"], case["seed"], Path(tmp) / "conversations.parquet")
            config = EngineConfig(prefix_cache=case["prefix_cache"])
        t0 = time.perf_counter()
        c0 = time.process_time()
        if case.get("trace") == "conversations":
            base = load_trace(trace)
            reqs = base
        else:
            base = load_trace(case.get("trace", "azure-2023-conv"))
            reqs = scale_load(base, case["requests"] / base.height, "replicate", seed=case["seed"])
        span = float(reqs["arrival_s"].max() - reqs["arrival_s"].min())
        cap = capacity_rps(build_tables(world), float(base["prompt_tokens"].mean()),
                           float(base["output_tokens"].mean()))
        compress = case["load"] * cap / (reqs.height / span)
        del base
        res = replay(world, reqs, "least-loaded", seed=case["seed"], out_dir=Path(tmp) / "run", load_factor=compress,
                     config=config)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    s = res.summary
    return dict(requests=s["requests"], wall_s=wall, requests_per_s=s["requests"] / wall, peak_rss_mib=rss_mib,
                cpu_s=cpu, requests_per_cpu_s=s["requests"] / cpu if cpu > 0 else 0.0,
                replay_wall_s=s["wall_s"], capacity_rps=cap, offered_rps=reqs.height / span * compress,
                servers=s["servers"], completed=s["completed"], dropped=s["dropped"],
                response_p50_s=s["response_p50_s"], response_p99_s=s["response_p99_s"],
                mean_utilisation=float(res.slots["utilisation"].mean()) if res.slots.height else 0.0,
                mean_utilisation_capable=_capable_utilisation(world, res.slots),
                events=s["events"], reference_s=ref_s, reference_mem_s=ref_mem_s, prefix_cache=s["prefix_cache"],
                cache_hit_rate=s["cache_hit_rate"], prefill_tokens_saved=s["prefill_tokens_saved"])


def conversation_trace(n_requests: int, seed: int, path: Path) -> Path:
    """A synthetic conversation trace of about `n_requests` requests over one day, written to `path`."""
    from torta.workload.conversations import ConversationConfig, generate

    day = 86400.0
    rate = n_requests / CONVERSATION_REQUESTS_PER_CONVERSATION / day
    generate(ConversationConfig(duration_s=day, conversations_per_s=rate, max_context_tokens=16384),
             seed=seed).write_parquet(path)
    return path


def goal(case: str, n_requests: int, requests_per_s: float, peak_rss_mib: float) -> dict:
    """The issue's goal for a case and whether the measured median meets it (the throughput goals are
    stated for 1,000,000 requests: other sizes get none)."""
    if case in TARGET_PEAK_RSS_MIB:
        return dict(target_peak_rss_mib=TARGET_PEAK_RSS_MIB[case],
                    meets_target=peak_rss_mib <= TARGET_PEAK_RSS_MIB[case])
    if case in TARGET_REQUESTS_PER_S and n_requests == 1_000_000:
        return dict(target_requests_per_s=TARGET_REQUESTS_PER_S[case],
                    meets_target=requests_per_s >= TARGET_REQUESTS_PER_S[case])
    return {}


def spawn(module: str, fn: str, *args) -> dict:
    """`module.fn(*args)` in a fresh Python process with one compute thread; its JSON result. The args
    travel as JSON; the function prints nothing else on stdout's last line."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               POLARS_MAX_THREADS="1", RAYON_NUM_THREADS="1")
    code = (f"import json,sys; from {module} import {fn}; "
            f"print(json.dumps({fn}(*json.loads(sys.argv[1]))))")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"bench {module}.{fn}{tuple(args)} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _spawn(case: dict) -> dict:
    return spawn("torta.sim.bench", "run_case", case)


def run_bench(n_requests: int, repeats: int, only: tuple[str, ...] = (), memory_check: bool = False,
              seed: int = 0, log=lambda msg: None) -> dict:
    """Every case (or `only` these) `repeats` times in fresh subprocesses: {"cases": [one row per case]}
    with the median rate, the peak RSS and the goal where one applies (see the module docstring)."""
    out = []
    names = list(only) or list(DEFAULT_CASES)
    names = [n for n in names if n not in PAIRED.values() or not any(PAIRED.get(x) == n for x in names)]
    jobs = [(n, dict(CASES[n], requests=n_requests, seed=seed), repeats) for n in names]
    if memory_check:
        jobs.append(("memory-10m", dict(CASES["normal"], requests=10_000_000, seed=seed), 1))

    def timed(name, case, k, reps):
        r = _spawn(case)
        log(f"{name} run {k + 1}/{reps}: {r['requests']} requests, {r['requests_per_s']:,.0f} req/s "
            f"({r['requests_per_cpu_s']:,.0f} per CPU-second), "
            f"peak {r['peak_rss_mib']:.0f} MiB, reference {r['reference_s']:.3f} s "
            f"(memory {r['reference_mem_s']:.3f} s)")
        return r

    for name, case, reps in jobs:
        mate = PAIRED.get(name)
        runs, mate_runs = [], []
        for k in range(reps):  # a paired case alternates with its mate, run for run
            runs.append(timed(name, case, k, reps))
            if mate is not None:
                mate_runs.append(timed(mate, dict(CASES[mate], requests=n_requests, seed=seed), k, reps))
        out.append(_row(name, runs, n_requests))
        if mate is not None:
            out[-1]["speed_ratio_vs_off"] = statistics.median(
                a["requests_per_s"] / b["requests_per_s"] for a, b in zip(runs, mate_runs))
            out.append(_row(mate, mate_runs, n_requests))
    return {"cases": out}


def _row(name: str, runs: list[dict], n_requests: int) -> dict:
    """One case's row from its runs: medians, the peak RSS, the first run's details, the goal."""
    med = statistics.median(r["requests_per_s"] for r in runs)
    row = dict(case=name, requests=runs[0]["requests"], requests_per_s=med,
               peak_rss_mib=max(r["peak_rss_mib"] for r in runs),
               requests_per_cpu_s=statistics.median(r["requests_per_cpu_s"] for r in runs),
               reference_s=statistics.median(r["reference_s"] for r in runs),
               reference_mem_s=statistics.median(r["reference_mem_s"] for r in runs),
               runs_requests_per_s=[r["requests_per_s"] for r in runs])
    row.update({k: v for k, v in runs[0].items() if k not in row and k != "wall_s"})
    row.update(goal(name, n_requests, med, row["peak_rss_mib"]))
    return row
