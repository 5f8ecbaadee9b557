"""How far below SeasonalNaive can any forecaster get on the synthesized workloads? (issue 20)

`python -m benchmarks.forecast_floor [--workload W ...] [--horizon H ...] [--with-models] [--tune]
[--json]` (default: servegen-mid/small/mix-14d at H = 4, 12, 24 slots)

Scores, with the metric and geometry of `torta forecast backtest --holdout-days 3` (origins every
4 slots from the calibration window on; test origins on days 12-14; pooled MASE = sum |e| / sum of
the per-series in-sample seasonal-naive MAE before the validation window), these forecasts of the
bottom series (no reconciliation):

- `Oracle`: the generating rate itself (`expected_requests` of `torta.workload.regional_rates`, the
  scaled ServeGen rate integrated over the slot that the counts were drawn from). Its error is the
  sampling noise alone: no forecaster of the counts can beat it on average.
- `SMean<k>`: the mean of the last k days at the target's time of day (k = 1 is SeasonalNaive);
  `DOW`: the value one week before the target; `DOWMean`: the mean of that and SMean7;
  `...Scaled<w>`: the same shape times the ratio of the last w observed slots to the shape there.
- `PooledSMean<k>Scaled<w>`: `torta.forecast.panel_models.Pooled(days=k, window=w)`: the regions'
  series of one model pooled after aligning local time (offsets estimated from the data;
  `PooledKnown...`: the true offsets lon / 15 h), read from the pool where an eastern region has
  seen the target already, else the pool's k-day shape times its level over its last w slots.
- with `--with-models`: the backtest's candidates (`DEFAULT_MODELS`, `GBMPooled`, `Pooled`) and
  means of them; `Best(val,<set>,margin m)`: the backtest's selection among a set of candidates
  per series and step bucket on the validation day (`torta.forecast.pipeline.select` with margin
  m; 1.0: the bucket's overall best for every series); `before` is the default set before this
  study.
- `Best(test,all) hindsight`: per series and step bucket the candidate with the lowest error on
  the test days themselves. Not a forecaster (it looks at the answers): a bound on what selection
  among these candidates could reach.

`--tune`: the same on days 1-11 only, day 10 selecting and day 11 scored: the tuning day of the
protocol, on which the shipped choices (the candidates, the selection margin, Pooled's days and
window) were made; `--tune --tune-day 10`: days 1-10 only, day 9 selecting and day 10 scored (the
second validation fold of PoolRatioGBM and the selection rule). `Best(val,defaults,backtest
rule)` / `Best(val,ratio models,backtest rule)`: the backtest's selection among DEFAULT_MODELS /
RATIO_MODELS (`pipeline.selection_rule`).
Ratios are against SeasonalNaive and Naive scored on the same points.
"""

from __future__ import annotations

import json

import click
import numpy as np
import polars as pl

from torta.forecast.data import to_history, to_panel
from torta.forecast.metrics import seasonal_naive_scale
from torta.forecast.models import DEFAULT_MODELS, Naive, SeasonalNaive
from torta.forecast.panel_models import Pooled
from torta.forecast.models import RATIO_MODELS
from torta.forecast.pipeline import assemble, run_models, select, selection_rule, step_buckets, targets

SEASON = 96
STEP = 4
# the default candidates before this study (commit c394d60)
BEFORE = ("SeasonalNaive", "Naive", "EWMA", "SeasonalScaled", "Leader", "GBM")
MARGINS = (0.0, 0.05, 0.1, 1.0)  # pipeline.select's margin (the shipped SELECT_MARGIN: 0.1)


def geometry(T: int, h: int, holdout_days=3, val_days=1, cal_days=2):
    """(origins, is_val, is_test, val_start) as `torta.forecast.backtest.backtest` sets them."""
    test_start = T - holdout_days * SEASON
    val_start = test_start - val_days * SEASON
    cal_start = val_start - cal_days * SEASON
    origins = np.arange(cal_start, T - h + 1, STEP)
    is_val = (origins >= val_start) & (origins + h <= test_start)
    return origins, is_val, origins >= test_start, val_start


def seasonal_mean(Y: np.ndarray, tgt: np.ndarray, days: tuple[int, ...]) -> np.ndarray:
    """Mean of Y[:, tgt - d * SEASON] over d in `days` (targets < one day ahead: all observed)."""
    return np.mean([Y[:, np.clip(tgt - d * SEASON, 0, None)] for d in days], axis=0)


def scaled(Y, shape_fn, origins, tgt, w):
    """shape at the targets x (sum of the last w observed slots / sum of the shape there)."""
    recent = origins[:, None] - np.arange(1, w + 1)[None, :]
    obs = Y[:, recent].sum(axis=2)
    ref = shape_fn(recent).sum(axis=2)
    ratio = np.where(ref > 0, obs / np.maximum(ref, 1e-9), 1.0)
    return shape_fn(tgt) * ratio[:, :, None]


def score(fc: dict, y, ok, scale_pts) -> dict:
    den = scale_pts[ok].sum()
    return {k: float(np.abs(y - f)[ok].sum() / den) for k, f in fc.items()}


def run(workload: str, h: int, seed: int = 0, with_models: bool = False,
        tune: bool = False, tune_day: int = 11) -> dict:
    from torta.workload import prepare, regional_rates

    plan = prepare(workload, seed=seed)
    rr = regional_rates(workload, seed=seed, plan=plan)
    hist = to_history(rr)
    if tune:  # days 1-11 only: day 10 selects, day 11 scores (the tuning day of the protocol)
        hist = hist.filter(pl.col("slot") < tune_day * SEASON)
        rr = rr.filter(pl.col("slot") < tune_day * SEASON)
    panel = to_panel(hist, SEASON)
    exp = to_panel(to_history(rr, "expected_requests"), SEASON)
    assert exp.series == panel.series
    Y, T, S = panel.y, panel.n_slots, len(panel.series)
    origins, is_val, is_test, val_start = geometry(T, h, holdout_days=1 if tune else 3)
    y, m = targets(panel, origins, h)
    tgt = origins[:, None] + np.arange(h)[None, :]
    scales = np.array([seasonal_naive_scale(Y[s, :val_start], panel.masked[s, :val_start], SEASON)
                       for s in range(S)])
    scale_pts = np.broadcast_to(scales[:, None, None], y.shape)
    ok_test = ~m & is_test[None, :, None]
    ok_val = ~m & is_val[None, :, None]
    fc = {"Oracle": exp.y[:, np.minimum(tgt, T - 1)],
          "Naive": np.stack([Naive().rolling(Y[s], origins, h) for s in range(S)]),
          "SeasonalNaive": np.stack([SeasonalNaive().rolling(Y[s], origins, h) for s in range(S)])}
    for k in range(2, 8):
        fc[f"SMean{k}"] = seasonal_mean(Y, tgt, tuple(range(1, k + 1)))
    fc["DOW"] = seasonal_mean(Y, tgt, (7,))
    fc["DOWMean"] = (fc["DOW"] + fc["SMean7"]) / 2
    for k in (1, 2, 3, 5, 7):
        for w in (4, 8, 16):
            fc[f"SMean{k}Scaled{w}"] = scaled(Y, lambda t, k=k: seasonal_mean(Y, t, tuple(range(1, k + 1))),
                                              origins, tgt, w)
    fc["DOWScaled4"] = scaled(Y, lambda t: seasonal_mean(Y, t, (7,)), origins, tgt, 4)
    region_off = {r.name: r.offset_s / 900.0 for r in plan.regions}
    offs = np.array([region_off[s.split("|")[0]] for s in panel.series])
    groups = [s.split("|")[1] for s in panel.series]
    for k in (1, 3, 5, 7):
        for w in (1, 2, 4, 8):
            for known in (True, False) if (k, w) == (7, 4) else (False,):
                name = f"Pooled{'Known' if known else ''}SMean{k}Scaled{w}"
                fc[name] = np.maximum(Pooled(days=k, window=w).rolling_panel(
                    Y, panel.masked, tuple(groups), origins, h, SEASON, SEASON,
                    offsets=offs if known else None), 0.0)
    if with_models:  # the backtest's candidates (refit every day from the first origin)
        got, _ = run_models(panel, origins, h, (*RATIO_MODELS, "GBMPooled", "Pooled"), SEASON,
                            SEASON)
        fc.update({m: v for m, v in got.items() if m not in fc})
        for a, b in (("GBM", "Leader"), ("GBMPooled", "Leader"), ("Leader", "Pooled"),
                     ("GBM", "Pooled")):
            fc[f"mean({a},{b})"] = (fc[a] + fc[b]) / 2
        fc["mean(GBMPooled,Leader,Pooled)"] = (fc["GBMPooled"] + fc["Leader"] + fc["Pooled"]) / 3
    buckets = step_buckets(h)
    cands = tuple(x for x in fc if x != "Oracle")
    sets = {"all": cands}
    if with_models:
        B = BEFORE
        sets.update({
            "before": B, "before+Pooled": (*B, "Pooled"), "before+GBMPooled": (*B, "GBMPooled"),
            "defaults": DEFAULT_MODELS, "defaults+Pooled": (*DEFAULT_MODELS, "Pooled"),
            "defaults+Pooled+means": (*DEFAULT_MODELS, "Pooled", "mean(GBM,Leader)",
                                      "mean(Leader,Pooled)", "mean(GBM,Pooled)"),
            "before+GBMPooled+means": (*B, "GBMPooled", "mean(GBMPooled,Leader)",
                                       "mean(GBMPooled,Leader,Pooled)")})
    picked = {}
    for name, ms in sets.items():
        for margin in MARGINS:  # 1.0: the bucket's overall best for every series
            choice = select(fc, y, ok_val, ms, buckets, scales, margin)
            key = f"Best(val,{name},margin {margin:g})"
            picked[key] = dict(zip(*np.unique(np.array(ms)[choice], return_counts=True)))
            fc[key] = np.maximum(assemble(fc, choice, ms, buckets), 0.0)
    if with_models:  # the backtest's rules (pipeline.run_pipeline, before reconciliation)
        for label, ms in (("defaults", DEFAULT_MODELS), ("ratio models", RATIO_MODELS)):
            choice = select(fc, y, ok_val, ms, buckets, scales, *selection_rule(ms))
            key = f"Best(val,{label},backtest rule)"
            picked[key] = dict(zip(*np.unique(np.array(ms)[choice], return_counts=True)))
            fc[key] = np.maximum(assemble(fc, choice, ms, buckets), 0.0)
    # hindsight: selection on the test days themselves (not a forecaster: a bound on selection)
    choice = select(fc, y, ok_test, cands, buckets)
    fc["Best(test,all) hindsight"] = assemble(fc, choice, cands, buckets)
    test = score(fc, y, ok_test, scale_pts)
    val = score(fc, y, ok_val, scale_pts)
    rows = [{"model": k, "test_mase": test[k], "val_mase": val[k],
             "test_over_SeasonalNaive": test[k] / test["SeasonalNaive"],
             "test_over_Naive": test[k] / test["Naive"],
             "val_over_SeasonalNaive": val[k] / val["SeasonalNaive"]} for k in fc]
    return {"workload": workload, "horizon": h, "seed": seed, "n_series": S, "tune": tune,
            "n_test_points": int(ok_test.sum()), "rows": rows,
            "picked": {n: {str(k): int(v) for k, v in d.items()} for n, d in picked.items()}}


@click.command()
@click.option("--workload", "workloads", multiple=True,
              default=("servegen-mid-14d", "servegen-small-14d", "servegen-mix-14d"))
@click.option("--horizon", "horizons", multiple=True, type=int, default=(4, 12, 24))
@click.option("--with-models", is_flag=True,
              help="Also the backtest's default models (GBM, Leader, ...) and means of them.")
@click.option("--tune", is_flag=True,
              help="Score day 11 (selection on day 10) instead of days 12-14 (selection on 11).")
@click.option("--tune-day", default=11, show_default=True, type=int,
              help="With --tune: the day scored (the history cut after it, the day before "
                   "selecting).")
@click.option("--json", "as_json", is_flag=True)
def main(workloads, horizons, with_models, tune, tune_day, as_json) -> None:
    docs = [run(w, h, with_models=with_models, tune=tune, tune_day=tune_day)
            for w in workloads for h in horizons]
    if as_json:
        click.echo(json.dumps(docs, indent=1))
        return
    for d in docs:
        click.echo(f"{d['workload']} H={d['horizon']}: {d['n_series']} series, "
                   f"{d['n_test_points']} test points; picked {d['picked']}")
        for r in sorted(d["rows"], key=lambda r: r["test_mase"]):
            click.echo(f"  {r['model']:<26} test/SN {r['test_over_SeasonalNaive']:.3f}  "
                       f"test/Naive {r['test_over_Naive']:.3f}  val/SN "
                       f"{r['val_over_SeasonalNaive']:.3f}")


if __name__ == "__main__":
    main()
