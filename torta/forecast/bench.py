"""Wall time of forecasting every series of a workload (the library behind `torta bench forecast`,
torta/commands/bench.py).

Cases (history = the workload's 14 days of 15-min slots, every series of the scenario; with
`--regions N` the scenario is N synthetic origin regions spread over longitudes -170..170 with
log-normal weights, seeded, instead of the named scenario):
- `<workload>/forecast`: one `forecast(history, H, "auto")` call: every default model over the
  three days before the end (selection per series and step on the last day, reconciliation,
  conformal intervals), fits at the first of those origins and on the whole history, H slots
  ahead (default 96 = 24 h).
- `<workload>/rolling-day` (`--rolling`): `forecast_rolling` from every slot of the last day (96
  origins per series, "auto"), what a replay of one test day consumes.
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


def synthetic_regions(n: int, seed: int) -> list[tuple[str, float, float]]:
    """n origin regions (name, lon, weight): longitudes evenly over -170..170, log-normal
    weights (sigma 1), seeded."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lons = np.linspace(-170.0, 170.0, n)
    weights = rng.lognormal(0.0, 1.0, n)
    return [(f"r{i:03d}", float(lon), float(w)) for i, (lon, w) in enumerate(zip(lons, weights))]


def _history(workload: str, scenario: str, regions: int | None, seed: int):
    from torta.forecast import to_history
    from torta.workload import get_spec, prepare, regional_rates

    if not regions:
        return to_history(regional_rates(workload, scenario, seed))
    spec = get_spec(workload)
    plan = prepare(workload, seed=seed, regions=synthetic_regions(regions, seed),
                   capacity_rps={m: 1000.0 for m in spec.models})
    return to_history(regional_rates(workload, plan=plan))


def run_bench(scenario: str, workloads: list[str], horizon: int, seed: int, rolling: bool, jobs: int,
              regions: int | None = None, log=lambda msg: None,
              models: tuple[str, ...] | None = None) -> dict:
    """The cases of the module docstring for each workload; {"scenario", "seed", "cases", ...}.
    `models`: the candidates of the "auto" forecasts (default: DEFAULT_MODELS)."""
    import polars as pl

    import statsforecast.models  # noqa: F401  (imports are not timed)

    from torta.forecast import forecast, forecast_rolling
    import importlib

    from torta.forecast.models import DEFAULT_MODELS, MODELS, REQUIRES, usable

    cands = DEFAULT_MODELS if models is None else tuple(models)
    unknown = [m for m in cands if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown forecast model {unknown[0]!r} (known: {', '.join(MODELS)})")
    for m in usable(cands):  # import each model's libraries before timing
        for mod in REQUIRES.get(m, ()):
            importlib.import_module(mod)
    try:
        importlib.import_module("hierarchicalforecast.methods")
    except ImportError:
        pass

    cases = []
    for w in workloads:
        hist = _history(w, scenario, regions, seed)
        n_series = hist["series"].n_unique()
        n_slots = hist["slot"].n_unique()
        t0, c0 = time.perf_counter(), _cpu_s()
        fc = forecast(hist, horizon, "auto", n_jobs=jobs, models=cands)
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
                                  step=1, n_jobs=jobs, models=cands)
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
    doc = {"scenario": f"{regions} synthetic regions" if regions else scenario, "seed": seed,
           "cases": cases, "models": list(cands),
           "load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count()}
    return doc
