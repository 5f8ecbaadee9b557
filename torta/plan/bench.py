"""`torta bench plan`: time the macro OT planner per slot and the micro allocator per request.

Planner: per slot, build the normalised cost matrix from raw terms and solve (R origins x R regions)
with the chosen method; reports median and p95 ms per slot over `--slots` slots of seeded random
demand/capacity/prices/queues on random coordinates. Allocator: `TortaMicro.choose` over a seeded
request stream on a fleet of `--servers` servers in `--regions` regions (the replay hot path without the
simulator); reports mean microseconds per request; the same for the simulator-state allocators
(`TortaAllocator.choose` and the Hungarian batch window's `assign_batch`, on abilene). One thread; imports excluded.
"""

from __future__ import annotations

import json
import sys
import time

import click
import numpy as np


def bench_planner(regions: int, slots: int, method: str, seed: int) -> dict:
    from torta.plan.config import OTConfig
    from torta.plan.ot import CostInputs, cost_matrix, solve_plan

    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 4000, (regions, 2))  # km
    lat = np.linalg.norm(xy[:, None] - xy[None], axis=2) / 200.0 + 0.5 * (1 - np.eye(regions))
    cfg = OTConfig(method=method)
    times, deferred = [], 0
    for _ in range(slots):
        load = rng.uniform(0.3, 1.3)  # some slots overloaded: exercises the defer column
        cap = rng.uniform(50, 150, regions)
        dem = rng.uniform(0, 2, regions) * cap.mean() * load
        t0 = time.perf_counter()
        c = cost_matrix(CostInputs(latency_ms=lat, price_usd_per_mwh=rng.uniform(20, 120, regions),
                                   energy_kwh_per_request=np.full(regions, 0.005),
                                   queue_delay_s=rng.exponential(10.0, regions),
                                   transfer_usd_per_request=(1 - np.eye(regions)) * 2e-5), cfg)
        plan = solve_plan(dem, cap, c, cfg)
        times.append(time.perf_counter() - t0)
        deferred += plan.total_deferred > 0
    ms = np.asarray(times) * 1000.0
    return {"case": f"ot-{method}", "regions": regions, "slots": slots,
            "ms_per_slot_median": float(np.median(ms)), "ms_per_slot_p95": float(np.percentile(ms, 95)),
            "slots_with_deferral": int(deferred)}


def bench_tiered(regions: int, slots: int, models: int, seed: int) -> dict:
    """The policy's per-slot solve: one tiered EMD per model, with OTPolicy's congestion tiers."""
    from torta.plan.config import OTConfig
    from torta.plan.ot import solve_tiered

    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 4000, (regions, 2))
    lat = np.linalg.norm(xy[:, None] - xy[None], axis=2) / 200.0
    base = lat / lat.max()
    from torta.plan.policies import OTPolicy

    fr = np.diff(np.asarray(OTPolicy.tier_edges, dtype=float))
    times = []
    cfg = OTConfig()
    for _ in range(slots):
        t0 = time.perf_counter()
        for _m in range(models):
            cap = rng.uniform(50, 150, regions)
            dem = rng.uniform(0, 2, regions) * cap.mean() * rng.uniform(0.3, 1.1)
            tc = np.sort(rng.uniform(0, 1, (regions, fr.size)), axis=1)
            solve_tiered(dem, cap, base, fr, tc, cfg)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000.0
    return {"case": f"ot-emd-tiered-x{models}-models", "regions": regions, "slots": slots,
            "ms_per_slot_median": float(np.median(ms)), "ms_per_slot_p95": float(np.percentile(ms, 95))}


def _sim_view(scenario: str):
    """The scenario's simulator tables and a stand-in for the engine's FleetView over fresh live lists
    (what the allocators read): (tables, view)."""
    from types import SimpleNamespace

    from torta.fleet.scenario import load_scenario
    from torta.sim.cluster import build_tables

    t = build_tables(load_scenario(scenario))
    s_n = t.n_servers
    view = SimpleNamespace(tables=t, now_s=0.0, busy_until_s=[0.0] * s_n, tail_models=list(t.initial_model),
                           batch_sizes=[0] * s_n, queue_len=lambda server: 0)
    return t, view


def bench_sim_allocator(requests: int, seed: int, scenario: str = "abilene") -> dict:
    """`TortaAllocator.choose` as the replay calls it: abilene's tables, live per-server lists."""
    from torta.plan.alloc import TortaAllocator
    from torta.policy.base import RequestInfo

    t, view = _sim_view(scenario)
    rng = np.random.default_rng(seed)
    s_n, r_n, m_n = t.n_servers, t.n_regions, t.n_models
    alloc = TortaAllocator()
    reqs = []
    for i in range(requests):
        m = int(rng.integers(0, m_n))
        regs = [r for r in range(r_n) if t.capable[r][m]]
        reqs.append((RequestInfo(i, int(rng.integers(0, r_n)), m, int(rng.integers(10, 3000)),
                                 int(rng.integers(5, 500)), 0.0), regs[int(rng.integers(0, len(regs)))]))
    now = np.cumsum(rng.exponential(0.005, requests)).tolist()
    bu = view.busy_until_s
    choose = alloc.choose
    t0 = time.perf_counter()
    for i in range(requests):
        view.now_s = now[i]
        req, r = reqs[i]
        s = choose(view, req, r)
        bu[s] = max(bu[s], now[i]) + 0.2  # the simulator books the work
    dt = time.perf_counter() - t0
    return {"case": "micro-torta-sim", "scenario": scenario, "servers": s_n, "requests": requests,
            "us_per_request": dt / requests * 1e6}


def bench_sim_hungarian(requests: int, seed: int, batch_window_s: float = 2.0, rps: float = 66.0,
                        scenario: str = "abilene") -> dict:
    """`HungarianPlannedAllocator.assign_batch` as the replay calls it at a window's close: abilene's
    tables, live per-server lists; `rps` requests/s spread uniformly over the regions (66/s: the
    servegen-mix-14d day-12 hour on abilene), so a window holds Poisson(rps / regions x window) requests."""
    from torta.plan.alloc import TortaAllocator
    from torta.plan.alloc_batch import HungarianPlannedAllocator
    from torta.policy.base import RequestInfo

    t, view = _sim_view(scenario)
    rng = np.random.default_rng(seed)
    s_n, r_n, m_n = t.n_servers, t.n_regions, t.n_models
    alloc = HungarianPlannedAllocator(TortaAllocator(), r_n, m_n, seed, batch_window_s)
    batches, done = [], 0
    now = 0.0
    while done < requests:
        now += float(rng.exponential(batch_window_s / r_n))
        r = int(rng.integers(0, r_n))
        k = max(1, int(rng.poisson(rps / r_n * batch_window_s)))
        ms = [m for m in range(m_n) if t.capable[r][m]]
        reqs = [RequestInfo(done + j, r, ms[int(rng.integers(0, len(ms)))], int(rng.integers(10, 3000)),
                            int(rng.integers(5, 500)), now) for j in range(k)]
        batches.append((now, r, reqs))
        done += k
    bu = view.busy_until_s
    t0 = time.perf_counter()
    for now, r, reqs in batches:
        view.now_s = now
        for k, s in alloc.assign_batch(view, reqs, r):
            bu[s] = max(bu[s], now) + 0.2  # the simulator books the work
    dt = time.perf_counter() - t0
    return {"case": "micro-hungarian-sim", "scenario": scenario, "servers": s_n, "requests": done,
            "batch_window_s": batch_window_s, "mean_batch_requests": done / len(batches),
            "us_per_request": dt / done * 1e6}


def bench_allocator(servers: int, regions: int, models: int, requests: int, seed: int) -> dict:
    from torta.plan.micro import MicroTables, TortaMicro

    rng = np.random.default_rng(seed)
    region = np.arange(servers) % regions
    speed = rng.choice([0.5, 1.0, 2.0], servers)[:, None] * np.ones((1, models))
    tables = MicroTables(region=region, prefill_s_per_token=1e-4 / speed, tpot_s=0.02 / speed,
                         work_s_per_prompt_token=1e-5 / speed, work_s_per_output_token=0.002 / speed,
                         load_s=np.full((servers, models), 10.0), capable=np.ones((servers, models), bool),
                         initial_model=rng.integers(0, models, servers))
    alloc = TortaMicro(tables, n_regions=regions)
    reg = rng.integers(0, regions, requests).tolist()
    mod = rng.integers(0, models, requests).tolist()
    pr = rng.integers(10, 4000, requests).tolist()
    ou = rng.integers(5, 800, requests).tolist()
    now = np.cumsum(rng.exponential(servers / 200.0 / servers, requests)).tolist()
    choose = alloc.choose
    t0 = time.perf_counter()
    for i in range(requests):
        choose(now[i], reg[i], mod[i], pr[i], ou[i])
    dt = time.perf_counter() - t0
    return {"case": "micro-torta", "servers": servers, "regions": regions, "models": models,
            "requests": requests, "us_per_request": dt / requests * 1e6, "switches": alloc.switches}


@click.command("plan")
@click.option("--regions", default=50, show_default=True, help="regions for the planner benchmark")
@click.option("--slots", default=200, show_default=True)
@click.option("--method", type=click.Choice(["emd", "sinkhorn", "unbalanced"]), default="emd", show_default=True)
@click.option("--servers", default=50, show_default=True, help="servers for the allocator benchmark")
@click.option("--alloc-regions", default=12, show_default=True)
@click.option("--models", default=3, show_default=True)
@click.option("--requests", default=200_000, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
def bench_plan(regions, slots, method, servers, alloc_regions, models, requests, seed, as_json):
    """Planner ms per slot (OT) and micro allocator microseconds per request."""
    cases = [bench_planner(regions, slots, method, seed), bench_tiered(regions, slots, models, seed),
             bench_allocator(servers, alloc_regions, models, requests, seed),
             bench_sim_allocator(min(requests, 100_000), seed),
             bench_sim_hungarian(min(requests, 100_000), seed)]
    if as_json:
        click.echo(json.dumps({"cases": cases}))
        return
    for c in cases:
        click.echo("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items()))
    print("(target: <= 5 ms per slot at 50 regions with exact EMD; <= 20 us per request)", file=sys.stderr)
