"""Compare policies on the same requests and seeds (the library behind `torta compare`).

Workloads: a multi-day workload name (torta.workload: the evaluation window starts on the protocol's
first test day, day 12, unless `start_day` says otherwise; requests differ per seed), a shipped trace
name or a canonical Parquet path (the same requests for every seed; origins drawn per seed by the
replay). Every policy of a seed replays the identical request frame.

Multi-day windows are replayed on their own clock: arrival times are shifted so the window starts at
t = 0 and the world's `start_hour_of_year` moves by the same amount (prices stay aligned). Policies
that accept context (`prepare`) get: the demand history before the window (series "region|model",
slot, y, masked; the last `history_days` days; only data before the window), the mean token lengths of
the workload's length pool, the model mix of the history, and the oracle demand per slot (used only by
policies asked to plan on the oracle).

SkyLB's threshold is tuned per scenario on a training window (day 11, the protocol's validation day,
first `tune_hours` hours, seed 0) by mean response time, and recorded in the result's `params`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import polars as pl

METRICS = ("response_mean_s", "response_p95_s", "load_std", "cost_usd", "energy_usd", "transfer_usd",
           "switching_usd", "switches", "planner_ms_per_slot")
TEST_START_DAY = 12  # DESIGN.md, Evaluation protocol: days 12-14 are the test
TUNE_DAY = 11  # day 11 picks hyperparameters
SKYLB_CANDIDATES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # pending requests per server
REPLAY_REQUESTS_PER_S = 60_000.0  # rough replay speed for the run-time estimate (measured 60-70k/s on abilene)


@dataclass
class SeedInput:
    seed: int
    requests: pl.DataFrame
    world: Any
    history: pl.DataFrame | None
    oracle: np.ndarray | None
    mean_prompt_tokens: float
    mean_output_tokens: float
    model_share: np.ndarray | None


@dataclass
class CompareResult:
    rows: list[dict]
    runs: list[dict] = field(default_factory=list)  # one summary per (policy, seed)
    requests_per_seed: list[int] = field(default_factory=list)
    requests_per_unit: list[int] = field(default_factory=list)  # per (seed, day) with hours_per_day, else per seed


def t_interval(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 95 % t-interval half-width over seeds (0.0 with one seed)."""
    from scipy.stats import t as student_t

    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        return 0.0, 0.0
    mean = float(x.mean())
    if n < 2:
        return mean, 0.0
    half = float(student_t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, (half if math.isfinite(half) else 0.0)


def is_multiday(workload: str) -> bool:
    from torta.workload.registry import WORKLOADS

    return workload in WORKLOADS


def _oracle(df: pl.DataFrame, world, slot_s: float) -> np.ndarray:
    r_idx = {r.name: i for i, r in enumerate(world.regions)}
    m_idx = {m: i for i, m in enumerate(world.models)}
    n_slots = int(df["arrival_s"].max() // slot_s) + 1 if df.height else 1
    out = np.zeros((n_slots, len(r_idx), len(m_idx)))
    if df.height == 0 or df["origin_region"].null_count() == df.height:
        return out
    g = (df.with_columns((pl.col("arrival_s") // slot_s).cast(pl.Int64).alias("slot"))
         .group_by("slot", "origin_region", "model").len())
    for slot, reg, mod, n in g.iter_rows():
        if reg in r_idx:
            out[slot, r_idx[reg], m_idx.get(mod, 0) if mod is not None else 0] += n
    return out


def multiday_input(workload: str, scenario: str, world, seed: int, days: int, hours: float | None,
                   start_day: int, history_days: int = 4) -> SeedInput:
    from torta.workload.build import build_workload, regional_rates
    from torta.workload.registry import get_spec

    spec = get_spec(workload)
    if not 1 <= start_day <= spec.days:
        raise ValueError(f"start_day must be in 1..{spec.days}, got {start_day}")
    end_day = min(spec.days, start_day + max(1, int(days)) - 1)
    df, meta = build_workload(workload, scenario, seed=seed, days=(start_day, end_day), hours=hours)
    start_s = float(meta["start_s"])
    df = df.with_columns((pl.col("arrival_s") - start_s).alias("arrival_s"))
    w = dataclasses.replace(world, start_hour_of_year=int(world.start_hour_of_year + start_s // 3600))
    slot_s = float(world.slot_s)
    rates = regional_rates(workload, scenario, seed=seed, slot_s=slot_s)
    first = int(round(start_s / slot_s))
    lo = max(0, first - int(history_days * 86400 / slot_s))
    hist = (rates.filter((pl.col("slot") >= lo) & (pl.col("slot") < first))
            .select((pl.col("origin_region") + "|" + pl.col("model")).alias("series"),
                    pl.col("slot").cast(pl.Int64), pl.col("requests").cast(pl.Float64).alias("y"),
                    pl.col("masked")))
    per_model = (rates.filter(pl.col("slot") < first).group_by("model").agg(pl.col("requests").sum()))
    share = np.zeros(len(world.models))
    for m, n in per_model.iter_rows():
        if m in world.models:
            share[world.models.index(m)] = n
    return SeedInput(seed, df, w, hist if hist.height else None, _oracle(df, w, slot_s),
                     float(meta["mean_prompt_tokens"]), float(meta["mean_output_tokens"]),
                     share if share.sum() > 0 else None)


def trace_input(trace: str, world, seed: int, days: int | None, hours: float | None,
                cache: dict) -> SeedInput:
    from torta.traces import load_trace

    if "df" not in cache:
        df = load_trace(trace)
        if days is not None:
            df = df.filter(pl.col("arrival_s") < float(days) * 86400.0)
        if hours is not None:
            df = df.filter(pl.col("arrival_s") < float(hours) * 3600.0)
        cache["df"] = df
    df = cache["df"]
    mp = float(df["prompt_tokens"].mean()) if df.height else None
    mo = float(df["output_tokens"].mean()) if df.height else None
    return SeedInput(seed, df, world, None, None, mp or 0.0, mo or 0.0, None)


def tune_skylb(workload: str, scenario: str, world, tune_hours: float,
               log: Callable[[str], None]) -> tuple[float, list[tuple[float, float]]]:
    """Threshold minimising mean response time on the training window (day 11, seed 0)."""
    from torta.plan.policies import SkyLB
    from torta.plan.skylb import tune_threshold
    from torta.sim.replay import replay

    inp = multiday_input(workload, scenario, world, 0, 1, tune_hours, TUNE_DAY, history_days=1)

    def evaluate(th: float) -> float:
        res = replay(inp.world, inp.requests, SkyLB(threshold=th), seed=0)
        v = res.summary["response_mean_s"]
        log(f"  skylb threshold {th:g}: response_mean_s {v:.3f}")
        return v

    log(f"tuning skylb on day {TUNE_DAY}, first {tune_hours:g} h ({inp.requests.height:,} requests, "
        f"{len(SKYLB_CANDIDATES)} candidates)")
    res = tune_threshold(evaluate, SKYLB_CANDIDATES)
    return res.threshold, list(res.table)


def make_policy(name: str, skylb_threshold: float | None):
    import torta.plan.policies  # noqa: F401  (registers the planner-layer policies)
    from torta.policy import get_policy

    cls = get_policy(name)
    if name == "skylb" and skylb_threshold is not None:
        return cls(threshold=skylb_threshold)
    return cls()


def _unit(r: dict) -> tuple[int, int]:
    return int(r["seed"]), int(r.get("day", 0) or 0)


def paired(runs: list[dict], policy: str, baseline: str) -> dict:
    """Paired differences policy - baseline over the units both ran: one unit per seed, or per
    (seed, day) when the runs carry a `day` (`hours_per_day`). Mean and 95 % t-interval per metric,
    absolute (`<m>_diff`) and relative to the baseline in percent (`<m>_diff_pct`: per-unit
    (policy - baseline) / baseline x 100, over the units where the baseline is not 0)."""
    base = {_unit(r): r for r in runs if r["policy"] == baseline}
    mine = {_unit(r): r for r in runs if r["policy"] == policy}
    units = sorted(set(base) & set(mine))
    out: dict[str, Any] = {"baseline": baseline, "pairs": len(units)}
    for m in METRICS:
        mean, half = t_interval([float(mine[k][m]) - float(base[k][m]) for k in units])
        out[m + "_diff"] = mean
        out[m + "_diff_ci95"] = half
        rel = [100.0 * (float(mine[k][m]) - float(base[k][m])) / float(base[k][m])
               for k in units if float(base[k][m]) != 0.0]
        mean, half = t_interval(rel)
        out[m + "_diff_pct"] = mean
        out[m + "_diff_pct_ci95"] = half
    return out


def parse_baselines(baseline: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """`--baseline` as a list: None -> [], "a,b" -> ["a", "b"] (order kept, duplicates dropped)."""
    if baseline is None:
        return []
    items = baseline.split(",") if isinstance(baseline, str) else list(baseline)
    return list(dict.fromkeys(b.strip() for b in items if b and b.strip()))


def prepared_policy(name: str, inp: SeedInput, skylb_threshold: float | None = None):
    """A fresh policy instance given the context of `inp` (history, oracle, token means, model mix)
    through its optional `prepare` hook: the one way every runner sets a policy up for a replay."""
    pol = make_policy(name, skylb_threshold)
    if hasattr(pol, "prepare"):
        pol.prepare(history=inp.history, oracle_demand=inp.oracle,
                    mean_prompt_tokens=inp.mean_prompt_tokens or None,
                    mean_output_tokens=inp.mean_output_tokens or None, model_share=inp.model_share)
    return pol


def run_compare(scenario: str, workload: str, policies: list[str], seeds: int, *, days: int = 1,
                hours: float | None = None, start_day: int = TEST_START_DAY, tune_hours: float = 1.0,
                skylb_threshold: float | None = None, baseline: str | list[str] | None = None,
                hours_per_day: float | None = None,
                log: Callable[[str], None] | None = None, progress: bool = False) -> CompareResult:
    """Replay every policy on the same requests per seed; rows of means and 95 % t-intervals over seeds.

    `hours_per_day` (multi-day workloads only; not with `hours`): replay the first H hours of EACH day
    of the window (`days` days from `start_day`), one paired unit per (seed, day) as in the
    experiment (DESIGN.md, Evaluation protocol); means and intervals are then over those units.
    With `baseline` (one of `policies`, or a comma list / list of them), each row carries `paired_vs`
    (baseline -> paired differences over units, absolute and in percent) and `paired` (the first
    baseline's, the protocol's intervals for claims)."""
    from torta.fleet.scenario import load_scenario
    from torta.sim.replay import replay

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
            return multiday_input(workload, scenario, world, seed, 1, hours_per_day, day)
        if multi:
            return multiday_input(workload, scenario, world, seed, days, hours, start_day)
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
        th, table = tune_skylb(workload, scenario, world, tune_hours, log)
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
                pol = prepared_policy(name, inp, th)
                t0 = time.perf_counter()
                res = replay(inp.world, inp.requests, pol, seed=seed, progress=progress)
                s = dict(res.summary)
                s["policy"] = name
                s["seed"] = seed
                if hours_per_day is not None:
                    s["day"] = day
                runs.append(s)
                p = pol.params() if hasattr(pol, "params") else {}
                if name == "skylb" and table:
                    p = {**p, "tuned": True, "tuning_table": [[a, b] for a, b in table],
                         "tuning_window": f"day {TUNE_DAY}, first {tune_hours:g} h, seed 0"}
                params[name] = p
                where = f"seed {seed}" + (f" day {day}" if hours_per_day is not None else "")
                log(f"{where} {name}: response_mean_s {s['response_mean_s']:.3f}  cost_usd "
                    f"{s['cost_usd']:.3f}  switches {s['switches']}  ({time.perf_counter() - t0:.1f} s)")
        counts.append(per_seed)
    rows = []
    for name in policies:
        mine = [r for r in runs if r["policy"] == name]
        row: dict[str, Any] = {"policy": name, "seeds": seeds,
                               "requests": float(np.mean([r["requests"] for r in mine]))}
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
