"""Compare policies on the same requests and seeds (the library behind `torta compare`).

Every policy of a seed (or of a (seed, day) unit with `hours_per_day`) replays the identical request frame
(torta.runs.inputs: multi-day windows start on the protocol's first test day unless `start_day` says
otherwise) through the one runner, torta.runs.execute. SkyLB's threshold is tuned per scenario on the
protocol's validation day (first `tune_hours` hours, seed 0) by mean response time, and recorded in the
result's `params`. Means and intervals: torta.runs.stats.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from torta.config import EVAL_PROTOCOL, EvalProtocol
from torta.runs.execute import make_policy, run_policy, tune_skylb
from torta.runs.inputs import SeedInput, is_multiday, multiday_input, trace_input
from torta.runs.stats import METRICS, paired, parse_baselines, t_interval

REPLAY_REQUESTS_PER_S = 60_000.0
"""Rough replay speed for the run-time estimate (measured 60-70k requests/s on abilene)."""


@dataclass
class CompareResult:
    rows: list[dict]
    runs: list[dict] = field(default_factory=list)  # one summary per (policy, seed)
    requests_per_seed: list[int] = field(default_factory=list)
    requests_per_unit: list[int] = field(default_factory=list)  # per (seed, day) with hours_per_day, else per seed


def run_compare(scenario: str, workload: str, policies: list[str], seeds: int, *, days: int = 1,
                hours: float | None = None, start_day: int | None = None, tune_hours: float = 1.0,
                skylb_threshold: float | None = None, baseline: str | list[str] | None = None,
                hours_per_day: float | None = None,
                log: Callable[[str], None] | None = None, progress: bool = False,
                protocol: EvalProtocol = EVAL_PROTOCOL, warmup_h: float = 0.0,
                state_refresh_s: float = 0.0) -> CompareResult:
    """Replay every policy on the same requests per seed; rows of means and 95 % t-intervals over seeds.

    `hours_per_day` (multi-day workloads only; not with `hours`): replay the first H hours of EACH day
    of the window (`days` days from `start_day`), one paired unit per (seed, day) as in the
    experiment (DESIGN.md, Evaluation protocol); means and intervals are then over those units.
    With `baseline` (one of `policies`, or a comma list / list of them), each row carries `paired_vs`
    (baseline -> paired differences over units, absolute and in percent) and `paired` (the first
    baseline's, the protocol's intervals for claims).

    `warmup_h` (multi-day workloads): each unit's window is preceded by that many hours of unscored
    warm-up through the same policy (`torta.runs.inputs.multiday_input`; the protocol's experiment
    default is `EvalProtocol.warmup_h`, the library's and the CLI's 0 keeps quick looks quick).
    `state_refresh_s`: the control-plane information model for every policy (`torta.sim.infomodel`;
    0 = instant global state). Every row and run carries `warmup_s` and `state_refresh_s`. SkyLB's
    tuning runs under the same warm-up and information model."""
    from torta.fleet.scenario import load_scenario

    start_day = protocol.first_test_day if start_day is None else start_day
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if not policies:
        raise ValueError("no policies given")
    baselines = parse_baselines(baseline)
    for b in baselines:
        if b not in policies:
            raise ValueError(f"baseline {b!r} is not among the policies {policies}")
    for p in policies:  # fail fast on unknown names
        make_policy(p, None) if p != "skylb" else None
    multi = is_multiday(workload)
    if warmup_h and not multi:
        raise ValueError(f"warmup_h needs a multi-day workload (the hours before the window); {workload!r} "
                         "is not one")
    replay_kw = dict(state_refresh_s=float(state_refresh_s))
    if hours_per_day is not None:
        if not multi:
            raise ValueError(f"hours_per_day needs a multi-day workload (days to cut); {workload!r} is not one")
        if hours is not None:
            raise ValueError("give either hours (first H hours of the whole window) or hours_per_day, not both")
        if not 0 < hours_per_day <= 24:
            raise ValueError(f"hours_per_day must be in (0, 24], got {hours_per_day}")
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
    world = load_scenario(scenario)
    cache: dict = {}
    if hours_per_day is not None:
        from torta.workload.registry import get_spec

        last = min(get_spec(workload).days, start_day + days - 1)
        day_list = list(range(start_day, last + 1))
    else:
        day_list = [0]  # one unit per seed: the whole window

    def unit_input(seed: int, day: int) -> SeedInput:
        if hours_per_day is not None:
            return multiday_input(workload, scenario, world, seed, 1, hours_per_day, day, warmup_h=warmup_h)
        if multi:
            return multiday_input(workload, scenario, world, seed, days, hours, start_day, warmup_h=warmup_h)
        return trace_input(workload, world, seed, days if days != 1 or hours is None else None, hours, cache)

    first = unit_input(0, day_list[0])
    n0 = first.requests.height * len(day_list)  # the first day's count stands for every day
    est = n0 * len(policies) * seeds / REPLAY_REQUESTS_PER_S
    tuning = "skylb" in policies and skylb_threshold is None and multi
    window = (f"first {hours_per_day:g} h of each of days {day_list[0]}-{day_list[-1]}; "
              if hours_per_day is not None else "")
    log(f"compare: {window}{'~' if len(day_list) > 1 else ''}{n0:,} requests per seed x {len(policies)} policies "
        f"x {seeds} seeds on {world.name} ({len(world.servers)} servers); estimated run time {est:.0f} s"
        + (" + skylb tuning" if tuning else ""))
    th, table = skylb_threshold, []
    if tuning:
        tune = multiday_input(workload, scenario, world, 0, 1, tune_hours, protocol.validation_day, history_days=1,
                              warmup_h=warmup_h)
        log(f"tuning skylb on day {protocol.validation_day}, first {tune_hours:g} h ({tune.requests.height:,} "
            f"requests, {len(protocol.skylb_candidates)} candidates)")
        th, table = tune_skylb(tune, protocol.skylb_candidates, log, **replay_kw)
        log(f"skylb threshold {th:g} pending requests per server")
    runs: list[dict] = []
    params: dict[str, dict] = {}
    counts, unit_counts = [], []
    for seed in range(seeds):
        per_seed = 0
        for day in day_list:
            inp = first if (seed, day) == (0, day_list[0]) else unit_input(seed, day)
            per_seed += inp.requests.height
            unit_counts.append(inp.requests.height)
            for name in policies:
                t0 = time.perf_counter()
                run = run_policy(name, inp, skylb_threshold=th, progress=progress, **replay_kw)
                s = dict(run.result.summary)
                s["policy"] = name
                s["seed"] = seed
                if hours_per_day is not None:
                    s["day"] = day
                runs.append(s)
                p = run.params
                if name == "skylb" and table:
                    p = {**p, "tuned": True, "tuning_table": [[a, b] for a, b in table],
                         "tuning_window": f"day {protocol.validation_day}, first {tune_hours:g} h, seed 0"}
                params[name] = p
                where = f"seed {seed}" + (f" day {day}" if hours_per_day is not None else "")
                log(f"{where} {name}: response_mean_s {s['response_mean_s']:.3f}  cost_usd "
                    f"{s['cost_usd']:.3f}  switches {s['switches']}  ({time.perf_counter() - t0:.1f} s)")
        counts.append(per_seed)
    rows = []
    for name in policies:
        mine = [r for r in runs if r["policy"] == name]
        row: dict[str, Any] = {"policy": name, "seeds": seeds,
                               "requests": float(np.mean([r["requests"] for r in mine])),
                               "warmup_s": float(mine[0]["warmup_s"]),
                               "state_refresh_s": float(mine[0]["state_refresh_s"])}
        if hours_per_day is not None:
            row.update(units=len(mine), days=day_list, hours_per_day=float(hours_per_day))
        for m in METRICS:
            mean, half = t_interval([float(r[m]) for r in mine])
            row[m] = mean
            row[m + "_ci95"] = half
        row["params"] = params.get(name, {})
        if baselines:
            row["paired_vs"] = {b: paired(runs, name, b) for b in baselines}
            row["paired"] = row["paired_vs"][baselines[0]]
        rows.append(row)
    return CompareResult(rows=rows, runs=runs, requests_per_seed=counts, requests_per_unit=unit_counts)
