"""`torta bench forecast`: wall time of forecasting every series of a workload.

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

import click


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


@click.command("forecast")
@click.option("--scenario", default="abilene", show_default=True)
@click.option("--regions", default=50, show_default=True, type=int,
              help="Synthetic origin regions instead of SCENARIO's (0: use SCENARIO).")
@click.option("--workloads", default="servegen-mid-14d,servegen-mix-14d", show_default=True)
@click.option("--horizon", default=96, show_default=True, type=int, help="Slots ahead (96 = 24 h).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--rolling/--no-rolling", default=False, show_default=True)
@click.option("--jobs", default=2, show_default=True, type=int, help="Processes over series.")
@click.option("--json", "as_json", is_flag=True)
def bench_forecast(scenario, regions, workloads, horizon, seed, rolling, jobs, as_json) -> None:
    """Time forecasting every series of WORKLOADS (14 days of 15-min slots)."""
    import polars as pl

    import statsforecast.models  # noqa: F401  (imports are not timed)

    from torta.forecast import forecast, forecast_rolling
    from torta.forecast.models import DEFAULT_MODELS, usable

    import importlib

    from torta.forecast.models import REQUIRES

    for m in usable(DEFAULT_MODELS):  # import each model's libraries before timing
        for mod in REQUIRES.get(m, ()):
            importlib.import_module(mod)
    try:
        importlib.import_module("hierarchicalforecast.methods")
    except ImportError:
        pass

    cases = []
    for w in [x.strip() for x in workloads.split(",") if x.strip()]:
        hist = _history(w, scenario, regions, seed)
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
        click.echo(f"{w}: forecast {n_series} series in {wall:.1f} s", err=True)
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
            click.echo(f"{w}: rolling day {n_series} series in {wall:.1f} s", err=True)
    doc = {"scenario": f"{regions} synthetic regions" if regions else scenario, "seed": seed,
           "cases": cases,
           "load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count()}
    if as_json:
        click.echo(json.dumps(doc))
    else:
        for c in cases:
            click.echo(f"{c['case']:<36} {c['series']:>3} series {c['wall_s']:7.1f} s wall "
                       f"{c['cpu_s']:7.1f} s cpu")
