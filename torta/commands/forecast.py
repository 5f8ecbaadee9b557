"""`torta forecast ...`: backtest forecasters on a workload's regional demand; forecast it."""

from __future__ import annotations

from pathlib import Path

import click

from torta import strictjson


def _history(workload: str, scenario: str | None, seed: int):
    from torta.forecast import to_history
    from torta.workload import regional_rates

    return to_history(regional_rates(workload, scenario, seed))


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"expected integers >= 1, got {text!r}")
    return out


@click.group()
def cli() -> None:
    """Forecast regional demand and backtest forecasters."""


@cli.command("backtest")
@click.option("--workload", required=True, help="Workload name (see `torta workload list`).")
@click.option("--horizon", default=4, show_default=True, type=int, help="Horizon in slots (15 min).")
@click.option("--horizons", default=None, help="Also report these horizons, e.g. 4,12,24.")
@click.option("--holdout-days", default=3, show_default=True, type=int)
@click.option("--val-days", default=1, show_default=True, type=int)
@click.option("--scenario", default=None, help="Scenario (default: the workload's).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--models", default=None,
              help="Comma-separated model names (default: SeasonalNaive, Naive, EWMA, "
                   "SeasonalScaled, Leader, GBM, LeaderGBMPooled; add PoolRatioGBM,PoolRatioLGP for the "
                   "opt-in ratio models, or SeasonalNaive,Naive,PoolCombo for the opt-in fitted "
                   "combination, docs/PERFORMANCE.md).")
@click.option("--jobs", default=1, show_default=True, type=int, help="Processes over series.")
@click.option("--reconcile/--no-reconcile", default=True, show_default=True,
              help="MinTrace-shrink over the origin x model hierarchy.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def backtest_cmd(workload, horizon, horizons, holdout_days, val_days, scenario, seed, models, jobs,
                 reconcile, as_json) -> None:
    """Rolling-origin backtest with per-series and per-step selection on the day before the
    holdout, reconciliation and conformal intervals."""
    from torta.forecast import DEFAULT_MODELS, backtest

    hist = _history(workload, scenario, seed)
    chosen = tuple(m.strip() for m in models.split(",")) if models else DEFAULT_MODELS
    hs = [horizon] + [h for h in (_ints(horizons) if horizons else []) if h != horizon]
    reports = []
    for h in hs:
        click.echo(f"backtest {workload} horizon {h} slots ...", err=True)
        reports.append((h, backtest(hist, horizon=h, holdout_days=holdout_days,
                                    val_days=val_days, models=chosen, n_jobs=jobs,
                                    reconcile=reconcile)))
    first = reports[0][1].to_dict()
    doc = {"workload": workload, "scenario": scenario or "default", "seed": seed,
           "horizon": horizon, **first,
           "horizons": [{"horizon": h, "hours": h * r.config["slot_s"] / 3600,
                         "models": r.models, "selected": r.selected, "ratios": r.extra["ratios"],
                         "per_series": r.per_series, "horizon_scores": r.extra["horizon_scores"],
                         "selected_unreconciled": r.extra["selected_unreconciled"]}
                        for h, r in reports]}
    if as_json:
        click.echo(strictjson.dumps(doc))
        return
    for h, r in reports:
        click.echo(f"horizon {h} slots ({h * r.config['slot_s'] / 3600:g} h), "
                   f"{r.n_series} series, {r.n_test_points} test points")
        click.echo(f"  {'model':<14}{'MASE':>8}{'sMAPE%':>9}{'cov80':>8}{'cov95':>8}{'fit_s':>8}")
        for m in r.models + [{"model": "selected", **r.selected, "fit_s": 0.0}]:
            click.echo(f"  {m['model']:<14}{m['mase']:>8.3f}{m['smape']:>9.2f}"
                       f"{m['coverage_80']:>8.3f}{m['coverage_95']:>8.3f}{m['fit_s']:>8.1f}")
        click.echo("  " + ", ".join(f"{k} {v:.3f}" for k, v in r.extra["ratios"].items()))
        for hs in r.extra["horizon_scores"]:
            click.echo(f"  steps 1..{hs['horizon']} ({hs['hours']} h): selected / Naive "
                       f"{hs.get('ratio_Naive', float('nan')):.3f}, / SeasonalNaive "
                       f"{hs.get('ratio_SeasonalNaive', float('nan')):.3f}, "
                       f"coverage 80 % {hs['coverage_80']:.3f}, 95 % {hs['coverage_95']:.3f}")


@cli.command("predict")
@click.option("--workload", required=True)
@click.option("--until-day", default=11, show_default=True, type=int,
              help="Use history up to the end of this day (1-based).")
@click.option("--horizon", default=96, show_default=True, type=int, help="Slots to forecast.")
@click.option("--model", default="auto", show_default=True)
@click.option("--scenario", default=None)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Parquet file to write.")
@click.option("--jobs", default=1, show_default=True, type=int, help="Processes over series.")
@click.option("--json", "as_json", is_flag=True)
def predict_cmd(workload, until_day, horizon, model, scenario, seed, out, jobs, as_json) -> None:
    """Forecast every series of WORKLOAD for the next HORIZON slots after day UNTIL_DAY."""
    import time

    import polars as pl

    from torta.forecast import forecast

    from torta.workload import get_spec

    hist = _history(workload, scenario, seed)
    per_day = int(round(86400 / get_spec(workload).slot_s))
    hist = hist.filter(pl.col("slot") < until_day * per_day)
    t0 = time.perf_counter()
    fc = forecast(hist, horizon, model, n_jobs=jobs)
    secs = time.perf_counter() - t0
    doc = {"workload": workload, "until_day": until_day, "horizon": horizon, "seed": seed,
           "series": fc["series"].n_unique(), "rows": fc.height, "forecast_s": secs,
           "models": dict(fc.group_by("model").len().iter_rows())}
    if out:
        from torta.fileio import atomic_file

        path = Path(out)
        with atomic_file(path) as tmp:
            fc.write_parquet(tmp)
        doc["out"] = str(path)
    if as_json:
        click.echo(strictjson.dumps(doc))
    else:
        click.echo(fc)
        click.echo(f"{doc['series']} series in {secs:.1f} s", err=True)
