"""Wall time (the library behind `torta bench forecast`, torta/commands/bench.py) of forecasting every origin region of a scenario.

Cases (history = the workload's 14 days of 15-min slots, every series of the scenario):
- `<workload>/forecast`: one `forecast(history, H, "auto")` call (selection over all default
  models on the last day, conformal intervals from the two days before, refit at the end).
- `<workload>/rolling-day`: `forecast_rolling` from every slot of the last day (96 origins per
  series, "auto"), what a replay of one test day consumes.
"""

from __future__ import annotations

import json
import os
import resource
import time


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its reaped children (the worker pools)."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_bench(scenario: str, workloads: list[str], horizon: int, seed: int, rolling: bool, jobs: int,
              log=lambda msg: None) -> dict:
    """The cases of the module docstring for each workload; {"scenario", "seed", "cases", ...}."""
    import polars as pl

    import statsforecast.models  # noqa: F401  (imports are not timed)

    from torta.forecast import forecast, forecast_rolling, to_history
    from torta.workload import regional_rates

    cases = []
    for w in workloads:
        hist = to_history(regional_rates(w, scenario, seed))
        n_series = hist["series"].n_unique()
        n_slots = hist["slot"].n_unique()
        t0, c0 = time.perf_counter(), _cpu_s()
        fc = forecast(hist, horizon, "auto", n_jobs=jobs)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
        cases.append({"case": f"{w}/forecast", "series": n_series, "history_slots": n_slots,
                      "horizon": horizon, "origins": 1, "wall_s": wall, "cpu_s": cpu,
                      "jobs": jobs,
                      "models": dict(fc.group_by("model").len().sort("model").iter_rows()),
                      "peak_rss_mib": _rss_mib()})
        log(f"{w}: forecast {n_series} series in {wall:.1f} s")
        if rolling:
            last = int(hist["slot"].max())
            t0, c0 = time.perf_counter(), _cpu_s()
            fr = forecast_rolling(hist, horizon, "auto", start_slot=last - 95, end_slot=last,
                                  step=1, n_jobs=jobs)
            wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
            cases.append({"case": f"{w}/rolling-day", "series": n_series,
                          "history_slots": n_slots, "horizon": horizon,
                          "origins": int(fr["origin_slot"].n_unique()), "wall_s": wall,
                          "cpu_s": cpu, "jobs": jobs,
                          "models": dict(fr.group_by("model").len().sort("model")
                                         .with_columns(pl.col("len") // (horizon * 96))
                                         .iter_rows()),
                          "peak_rss_mib": _rss_mib()})
            log(f"{w}: rolling day {n_series} series in {wall:.1f} s")
    return {"scenario": scenario, "seed": seed, "cases": cases,
            "load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count()}
