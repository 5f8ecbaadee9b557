"""A run's inputs: the requests one replay sees and the context a policy may be given (`SeedInput`).

Workloads: a multi-day workload name (torta.workload: a window of days from `start_day`, by default the
protocol's first test day; requests differ per seed), a shipped trace name or a canonical Parquet path
(the same requests for every seed; origins drawn per seed by the replay).

Multi-day windows are replayed on their own clock: arrival times are shifted so the window starts at
t = 0 and the world's `start_hour_of_year` moves by the same amount (prices stay aligned). Their context:
the demand history before the window (series "region|model", slot, y, masked; the last `history_days`
days; only data before the window), the mean token lengths of the workload's length pool, the model mix
of the history, and the oracle demand per slot (used only by policies asked to plan on the oracle).
A trace has no calendar before its first request: no history, no oracle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from torta.config import EVAL_PROTOCOL


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
    workload: str = ""
    """The workload or trace the requests come from (names the input in error messages)."""
    warmup_s: float = 0.0
    """Seconds of unscored warm-up at the start of `requests` (the hours before the window; the replay
    scores from t = warmup_s on, torta.sim.replay)."""


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
                   start_day: int, history_days: int = EVAL_PROTOCOL.history_days,
                   warmup_h: float = 0.0) -> SeedInput:
    """`days` days of a multi-day workload from `start_day` (the first `hours` hours when given) on
    `world` (the loaded `scenario`: the scenario is parsed once, by the caller). With `warmup_h` > 0
    the requests of the `warmup_h` hours before the window come first (the end of the previous day;
    fewer when the window starts earlier than that in the workload) and `warmup_s` says how long that
    is: the replay's clock and history then start at the warm-up's start."""
    from torta.workload.build import _requests_between, build_workload, prepare, regional_rates
    from torta.workload.registry import get_spec

    spec = get_spec(workload)
    if not 1 <= start_day <= spec.days:
        raise ValueError(f"start_day must be in 1..{spec.days}, got {start_day}")
    if not (np.isfinite(warmup_h) and warmup_h >= 0):
        raise ValueError(f"warmup_h must be a finite number of hours >= 0, got {warmup_h}")
    end_day = min(spec.days, start_day + max(1, int(days)) - 1)
    plan = prepare(workload, world, seed)
    df, meta = build_workload(workload, days=(start_day, end_day), hours=hours, plan=plan)
    start_s = float(meta["start_s"])
    warm_s = min(float(warmup_h) * 3600.0, start_s)
    if warm_s > 0:  # the same window, built from the warm-up's start (one request stream)
        df = _requests_between(plan, start_s - warm_s, float(meta["end_s"]))
        start_s -= warm_s
    df = df.with_columns((pl.col("arrival_s") - start_s).alias("arrival_s"))
    w = dataclasses.replace(world, start_hour_of_year=int(world.start_hour_of_year + start_s // 3600))
    slot_s = float(world.slot_s)
    rates = regional_rates(workload, slot_s=slot_s, plan=plan)
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
                     share if share.sum() > 0 else None, workload, warm_s)


def trace_input(trace: str, world, seed: int, days: int | None, hours: float | None,
                cache: dict) -> SeedInput:
    """A shipped trace or canonical Parquet file (its first `days` days / `hours` hours when given);
    `cache` keeps the loaded frame between seeds."""
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
    return SeedInput(seed, df, world, None, None, mp or 0.0, mo or 0.0, None, str(trace))


def workload_input(workload: str, scenario: str, world, seed: int, *, days: int = 1, hours: float | None = None,
                   start_day: int = EVAL_PROTOCOL.first_test_day, cache: dict | None = None,
                   warmup_h: float = 0.0) -> SeedInput:
    """The input of one replay of any kind of workload: a multi-day workload's window (`days` from
    `start_day`, after `warmup_h` hours of warm-up), or a trace (whole, or its first `hours`; a trace
    has no hours before its start, so no warm-up: a ValueError)."""
    if is_multiday(workload):
        return multiday_input(workload, scenario, world, seed, days, hours, start_day, warmup_h=warmup_h)
    if warmup_h:
        raise ValueError(f"a warm-up needs a multi-day workload (the hours before the window); {workload!r} "
                         "is a trace")
    return trace_input(workload, world, seed, None, hours, {} if cache is None else cache)
