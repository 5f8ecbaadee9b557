"""Time the macro OT planner per slot and the micro allocators per request (the library behind
`torta bench plan`, torta/commands/bench.py).

Planner: per slot, build the normalised cost matrix from raw terms and solve (R origins x R regions)
with the chosen method; reports median and p95 ms per slot over `--slots` slots of seeded random
demand/capacity/prices/queues on random coordinates. Horizon planner: torta-horizon's LP over H slots
(`bench_horizon`), receding over `--horizon-calls` calls. Allocators: mean microseconds per request of the
simulator-state allocators (`TortaAllocator.choose` and the Hungarian batch window's `assign_batch`) over
a seeded request stream on abilene's tables. One thread; imports excluded.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def bench_planner(regions: int, slots: int, method: str, seed: int) -> dict:
    from torta.planner.config import OTConfig
    from torta.planner.ot import CostInputs, cost_matrix, solve_plan

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
    from torta.planner.config import OTConfig
    from torta.planner.ot import solve_tiered

    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 4000, (regions, 2))
    lat = np.linalg.norm(xy[:, None] - xy[None], axis=2) / 200.0
    base = lat / lat.max()
    from torta.planner.register import OTPolicy

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


def bench_horizon(regions: int, slots: int, models: int, horizon: int, seed: int, k_nearest: int = 4,
                  k_nearest_ahead: int = 4, blocks: tuple | None = None, warm_start: bool = True) -> dict:
    """torta-horizon's per-slot LP (torta.planner.horizon) as the policy calls it, receding: `slots` calls
    on one seeded fleet (2-12 servers per region, every server able to hold every model) whose demand per
    origin and model follows a daily wave with its own phase and noise (some slots above capacity); each
    call starts from the previous call's placement targets. Times include building the sparse matrices; the
    CPU time (this thread's, `time.thread_time`) is reported beside the wall time because it is what a
    busy, shared machine inflates least. `warm_start=False`: every call solves cold (the control)."""
    from torta.planner.config import HorizonConfig
    from torta.planner.horizon import HorizonInputs, HorizonLP

    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 4000, (regions, 2))
    lat = np.linalg.norm(xy[:, None] - xy[None], axis=2) / 200.0 + 0.5 * (1 - np.eye(regions))
    srv = rng.integers(2, 13, regions).astype(float)
    capable = np.repeat(srv[:, None], models, axis=1)
    placement = np.stack([np.bincount(rng.integers(0, models, int(n)), minlength=models) for n in srv]).astype(float)
    rate = rng.uniform(0.3, 0.8, (regions, models))
    per_slot = 0.6 * 900.0 * rate * srv[:, None] / models  # requests per slot at a fair share of the servers
    phase = rng.uniform(0, 96, (regions, models))
    t = np.arange(slots + horizon)[:, None, None]
    wave = 1.0 + 0.6 * np.sin(2 * np.pi * (t + phase[None]) / 96.0)
    demand = per_slot[None] * wave * rng.lognormal(0.0, 0.2, (slots + horizon, regions, models))
    prices = rng.uniform(20, 120, (slots + horizon, regions))
    lp = HorizonLP(lat, capable, HorizonConfig(horizon_slots=horizon, k_nearest=k_nearest,
                                                        k_nearest_ahead=k_nearest_ahead, blocks=blocks,
                                                        warm_start=warm_start))
    times, cpu, iterations, failures, switches = [], [], [], 0, 0.0
    for c in range(slots):
        t0, c0 = time.perf_counter(), time.thread_time()
        p = lp.solve(HorizonInputs(
            demand=demand[c:c + horizon], latency_ms=lat, price_usd_per_mwh=prices[c:c + horizon],
            energy_kwh_rm=np.full((regions, models), 0.005), server_rps_rm=rate,
            service_s_rm=np.full((regions, models), 6.0), load_s_rm=np.full((regions, models), 20.0),
            capable_rm=capable, servers=srv, placement=placement, slot_s=900.0,
            free_share=rng.uniform(0.7, 1.0, regions), queue_delay_s=rng.exponential(5.0, regions),
            transfer_usd_per_request=2e-5))
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        iterations.append(p.simplex_iterations)
        failures += p.status != 0
        switches += float(np.maximum(p.targets - placement, 0).sum())
        placement = p.targets.astype(float)
    ms = np.asarray(times) * 1000.0
    rows = "x".join(map(str, blocks)) if blocks else "1"
    start = "" if warm_start else "-cold"
    return {"case": f"horizon-lp-H{horizon}-k{k_nearest}-ahead{k_nearest_ahead}-rows{rows}{start}", "regions": regions,
            "models": models, "horizon_slots": horizon, "lp_rows": len(blocks) if blocks else horizon,
            "warm_start": warm_start, "slots": slots, "ms_per_slot_median": float(np.median(ms)),
            "ms_per_slot_p95": float(np.percentile(ms, 95)),
            "cpu_ms_per_slot_median": float(np.median(cpu) * 1000.0),
            "simplex_iterations_median": float(np.median(iterations)), "lp_failures": int(failures),
            "switches_per_slot": switches / max(slots, 1)}


def _blocks(horizon: int) -> tuple:
    """(1, 1, 2, 4, 4) for H = 12: rows doubling in length after the first two, the last one what is left."""
    out, n = [1], 1
    while sum(out) < horizon:
        out.append(min(n, horizon - sum(out)))
        n = n * 2 if len(out) >= 2 else n
    return tuple(out)


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
    from torta.allocator.greedy import TortaAllocator
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
    from torta.allocator.greedy import TortaAllocator
    from torta.allocator.batch import HungarianPlannedAllocator
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


def run_bench(regions: int, slots: int, method: str, models: int, requests: int, seed: int,
              horizon: int = 12, horizon_calls: int = 40) -> dict:
    """Every case of the module docstring: {"cases": [...]}."""
    return {"cases": [bench_planner(regions, slots, method, seed), bench_tiered(regions, slots, models, seed),
                      *[bench_horizon(regions, min(slots, horizon_calls), models, horizon, seed, 4, ahead, b, warm)
                        for ahead, b, warm in ((4, None, True), (1, None, True), (1, _blocks(horizon), True),
                                               (1, _blocks(horizon), False))],
                      bench_sim_allocator(min(requests, 100_000), seed),
                      bench_sim_hungarian(min(requests, 100_000), seed)]}
