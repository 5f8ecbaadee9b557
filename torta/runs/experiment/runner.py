"""Run one experiment cell: build its requests once, replay every policy on them (pure: returns rows
and frames; the Dagster asset in `pipelines/experiment.py` writes them to the warehouse)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

import polars as pl

from torta.runs.experiment.definition import ORACLE_SUFFIX, PPO_POLICIES, TRACE_DAY, Cell, Experiment

# Rough replay cost per request and policy for the run-time estimate (s): replay wall time over requests
# of the multi-day test runs (abilene, geant and chinanet pooled; they differ by < 10 % except torta-ot)
# in batch paper-20261128T070528, `torta experiment paper --workers 2` on this 2-core machine (load
# average about 2: the two workers alone), rounded up. torta-ot refits its forecaster as it plans: 0.10
# ms (abilene) to 0.27 ms (chinanet) per request. Earlier figures (batch paper-20261128T043818, before
# the engine's speed-ups, load 5-9) were 3-6x these: scale up on a busier machine.
COST_S_PER_REQUEST = {  # measured: abilene, servegen-mix-14d, test days 12-13, whole day after 2 h warm-up,
    # S = 5 s (docs/data/paper/runs: wall_s / (requests + warmup_requests)), 2 workers on 2 cores shared
    # with other work (load average 3-6 for part of the cells): wall time, so an upper bound; acs and torta
    # ran while the load was highest (their figures are the least reliable)
    "round-robin": 2.1e-5, "local-only": 2.9e-5, "least-loaded": 4.0e-5, "least-loaded-d2": 2.6e-5,
    "least-loaded-d4": 3.2e-5, "skylb": 5.3e-5, "myopic-ot": 5.2e-5, "acs": 2.07e-4, "torta-ot": 4.2e-5,
    "torta-ot-last": 3.6e-5, "torta-ot-oracle": 3.4e-5, "torta": 2.15e-4, "torta-no-forecast": 7.4e-5,
    "torta-no-micro": 4.6e-5, "torta-ot-hungarian": 4.8e-5,
    # torta-horizon (issue 18): about 200 s per abilene test day (7.1 M requests, warm-up included) on a
    # quiet core; rounded up for the busier topologies
    "torta-horizon": 3.5e-5,
    # torta-horizon-ppo: torta-horizon plus one actor forward pass per slot (unmeasured on a whole day yet:
    # torta-horizon's figure with its ablations' loaded-machine margin)
    "torta-horizon-ppo": 5.0e-5,
    # its ablations (torta.planner.horizon_policy): measured on abilene test day 12 (7.08 M requests, warm-up
    # included) in batch ablation-20261204T204233, `torta experiment ablation` niced 15, one worker, on the
    # 2-core machine at load average 5-6 (other sessions' work): wall time, an upper bound. torta-horizon
    # itself took 8.6e-5 there (608 s, with this session's tests beside it): the same replay costs 1.5-2.5x
    # a quiet core's on a loaded one. The first estimate (3.5e-5 each) gave 29 min per cell; it took 46.
    "torta-horizon-h1": 5.3e-5, "torta-horizon-h4": 4.3e-5, "torta-horizon-h12": 4.6e-5,
    "torta-horizon-oracle": 5.1e-5, "torta-horizon-last": 5.4e-5, "torta-horizon-no-preload": 5.0e-5}
DEFAULT_COST_S_PER_REQUEST = 2e-4
CELL_OVERHEAD_S = 3.0  # workload build + Dagster materialization per cell


def available_policies(scenarios: tuple[str, ...], wanted: tuple[str, ...] = PPO_POLICIES
                       ) -> tuple[set[str], dict[str, str]]:
    """Registered policies, minus PPO ones without a checkpoint for every scenario. Returns the set and
    the reason each left-out policy of `wanted` was dropped."""
    import torta.planner.register  # noqa: F401  (registers the planner-layer policies)
    from torta.policy import list_policies

    if any(p in PPO_POLICIES for p in wanted):
        try:  # the learned policies register on import (torta.rl, imports torch); absent -> not available
            import torta.rl.learned  # noqa: F401
        except ImportError:
            pass
    names = {n for n, _ in list_policies()}
    dropped: dict[str, str] = {p: "not registered" for p in wanted if p not in names and p not in PPO_POLICIES}
    for p in (q for q in PPO_POLICIES if q in wanted):
        if p not in names:
            dropped[p] = "not registered"
            continue
        from torta.rl.train import default_checkpoint

        variant = "torta" if p == "torta-no-micro" else p
        missing = [sc for sc in scenarios if not default_checkpoint(sc, variant).exists()]
        if missing:
            names.discard(p)
            dropped[p] = f"no checkpoint for {', '.join(missing)} (train with `torta train`)"
    return names, dropped


def cell_input(cell: Cell, exp_hours: float, trace_hours: float, warmup_h: float = 0.0,
               trace_warmup_h: float = 0.0):
    """The cell's input (torta.runs.inputs.SeedInput): the first `exp_hours` of its day after `warmup_h`
    unscored hours (the end of the day before); of an hour trace, the first `trace_hours` with the first
    `trace_warmup_h` of them unscored, or for its validation cell (any day other than TRACE_DAY) only
    those first `trace_warmup_h` hours, scored from a cold start."""
    import dataclasses

    from torta.fleet.scenario import load_scenario
    from torta.runs.inputs import is_multiday, multiday_input, trace_input

    world = load_scenario(cell.scenario)
    if not is_multiday(cell.workload):
        if cell.day != TRACE_DAY:  # the trace's validation window
            return trace_input(cell.workload, world, cell.seed, None, trace_warmup_h or trace_hours, {})
        inp = trace_input(cell.workload, world, cell.seed, None, trace_hours, {})
        return dataclasses.replace(inp, warmup_s=float(trace_warmup_h) * 3600.0) if trace_warmup_h else inp
    return multiday_input(cell.workload, cell.scenario, world, cell.seed, 1, exp_hours, cell.day, warmup_h=warmup_h)


@dataclass
class CellResult:
    runs: list[dict]  # one summary row per policy
    slots: dict[str, pl.DataFrame]  # policy -> slot metrics
    requests: int
    response_slots: dict = None  # policy -> per-slot completed and response_mean_s of the scored window


def run_cell(cell: Cell, policies: tuple[str, ...], *, hours: float, trace_hours: float,
             skylb_threshold: float | None = None, log: Callable[[str], None] | None = None,
             inp=None, state_refresh_s: float = 0.0) -> CellResult:
    """Replay every policy on the cell's requests (identical for all of them), gateways on the
    information model at `state_refresh_s`; a name `<policy>@S0` replays `policy` at S = 0 (the oracle
    reference). `inp`: the cell's input (torta.runs.inputs.SeedInput) when already built."""
    from torta.runs.execute import run_policy

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    inp = inp if inp is not None else cell_input(cell, hours, trace_hours)
    runs, slots, resp = [], {}, {}
    for name in policies:
        t0 = time.perf_counter()
        base, oracle = (name[:-len(ORACLE_SUFFIX)], True) if name.endswith(ORACLE_SUFFIX) else (name, False)
        run = run_policy(base, inp, skylb_threshold=skylb_threshold,
                         state_refresh_s=0.0 if oracle else float(state_refresh_s))
        res = run.result
        s = {k: v for k, v in res.summary.items() if not isinstance(v, (dict, list))}
        s.update({f"dropped_{k}": v for k, v in res.summary.get("dropped_reasons", {}).items()})
        s.update(scenario=cell.scenario, workload=cell.workload, policy=name, seed=cell.seed, day=cell.day,
                 role=cell.role, cell=cell.key, key=f"{cell.key}|{name}", policy_params=str(run.params))
        runs.append(s)
        slots[name] = res.slots
        resp[name] = res.response_slots
        log(f"  {cell.key} {name}: response_mean_s {s['response_mean_s']:.3f} cost_usd {s['cost_usd']:.3f} "
            f"switches {s.get('switches', 0):.0f} ({time.perf_counter() - t0:.1f} s)")
    return CellResult(runs, slots, int(inp.requests.height), resp)


def estimate_s(exp: Experiment, requests_per_cell: dict[str, int], workers: int = 1,
               done: set[str] | None = None, missing: dict[str, list[str]] | None = None) -> float:
    """Run-time estimate: per cell not yet `done` (cell keys), requests x per-policy cost + overhead,
    divided by `workers` (cells run that many at a time; assumes a core each). `requests_per_cell` maps
    a workload name to the request count of one of its test cells, warm-up included (measured on the
    first cell); validation cells are taken as the same size. `missing`: cell key -> the only policies
    that cell still needs (a cell with rows for the others: only those are counted, no SkyLB tuning
    unless skylb is among them)."""
    def cost(p: str) -> float:
        return COST_S_PER_REQUEST.get(p.removesuffix(ORACLE_SUFFIX), DEFAULT_COST_S_PER_REQUEST)

    names = (*exp.policies, *exp.reference_policies())
    per_req = sum(COST_S_PER_REQUEST.get(p.removesuffix(ORACLE_SUFFIX), DEFAULT_COST_S_PER_REQUEST) for p in names)
    base_req = sum(COST_S_PER_REQUEST.get(p, DEFAULT_COST_S_PER_REQUEST) for p in exp.baselines)
    total = 0.0
    for c in exp.test_cells() + exp.validation_cells():
        if done and c.key in done:
            continue
        n = requests_per_cell.get(c.workload, 0)
        if missing and c.key in missing:
            only = missing[c.key]
            k = sum(cost(p) for p in only)
            if c.role != "test" and "skylb" in only:
                k += len(exp.skylb_candidates) * COST_S_PER_REQUEST["skylb"]
            total += n * k + CELL_OVERHEAD_S
            continue
        k = per_req if c.role == "test" else base_req + len(exp.skylb_candidates) * COST_S_PER_REQUEST["skylb"]
        total += n * k + CELL_OVERHEAD_S
    return total / max(1, int(workers))
