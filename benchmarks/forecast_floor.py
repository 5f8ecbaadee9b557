"""How far below SeasonalNaive can any forecaster get on the synthesized workloads? (issue 20)

`python -m benchmarks.forecast_floor --workload servegen-mid-14d --horizon 24 [--json]`

Scores, with the metric and geometry of `torta forecast backtest --holdout-days 3` (origins every
4 slots from the calibration window on; test origins on days 12-14; pooled MASE = sum |e| / sum of
the per-series in-sample seasonal-naive MAE before the validation window), forecasts that need no
fitting:

- `Oracle`: the generating rate itself (`expected_requests` of `torta.workload.regional_rates`, the
  scaled ServeGen rate integrated over the slot that the counts were drawn from). Its error is the
  sampling noise alone: the floor below which no forecaster of the counts can go.
- `SMean<k>`: the mean of the last k days at the target's time of day (k = 1 is SeasonalNaive).
- `DOW`: the value one week before the target; `DOWMean`: the mean of that and SMean7.
- `...Scaled<w>`: the same shape times the ratio of the last w observed slots to the shape there.
- `Pooled...`: the series of a model pooled across regions after aligning local time (regions see
  one curve shifted by lon / 15 h, known here from the workload's regions: an upper bound on what
  data-estimated leads give), each region's forecast read from the pooled curve at its own local
  time, times its share of the pool. The pooled curve is known further ahead than a western
  region's own series (the eastern regions have seen it already): the `Pooled` rows use that.
- `Best(val)`: per series and step bucket the candidate with the lowest validation MAE (the
  backtest's selection, `torta.forecast.pipeline.select`), scored on the test days.

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
from torta.forecast.pipeline import assemble, run_models, select, step_buckets, targets

SEASON = 96
STEP = 4


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


def select_shrunk(fc, y, ok, models, buckets, scales, eps):
    """Per step bucket the model with the lowest pooled MASE over all series (the global
    choice); a series keeps its own best model only where that beats the global one on its own
    validation MAE by more than `eps` (relative); eps = 0 with `own=False`: the global choice."""
    own = select(fc, y, ok, models, buckets)
    out = np.empty_like(own)
    for b in range(own.shape[1]):
        cols = buckets == b
        okb = ok[:, :, cols]
        err = np.stack([np.where(okb, np.abs(y[:, :, cols] - fc[m][:, :, cols]), 0).sum(axis=(1, 2))
                        for m in models])  # (M, S)
        g = int(np.argmin((err / scales[None, :]).sum(axis=1)))
        if eps == 0:
            out[:, b] = g
            continue
        S = err.shape[1]
        better = err[own[:, b], np.arange(S)] < (1 - eps) * err[g]
        out[:, b] = np.where(better, own[:, b], g)
    return out


def score(fc: dict, y, ok, scale_pts) -> dict:
    den = scale_pts[ok].sum()
    return {k: float(np.abs(y - f)[ok].sum() / den) for k, f in fc.items()}


def run(workload: str, h: int, seed: int = 0, with_models: bool = False,
        tune: bool = False) -> dict:
    from torta.workload import prepare, regional_rates

    plan = prepare(workload, seed=seed)
    rr = regional_rates(workload, seed=seed, plan=plan)
    hist = to_history(rr)
    if tune:  # days 1-11 only: day 10 selects, day 11 scores (the tuning day of the protocol)
        hist = hist.filter(pl.col("slot") < 11 * SEASON)
        rr = rr.filter(pl.col("slot") < 11 * SEASON)
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
    if with_models:  # the backtest's own candidates (refit every day from the first origin)
        got, _ = run_models(panel, origins, h, (*DEFAULT_MODELS, "GBMPooled", "Pooled"), SEASON,
                            SEASON)
        fc.update({m: v for m, v in got.items() if m not in fc})
        fc["mean(GBM,Leader)"] = (fc["GBM"] + fc["Leader"]) / 2
        fc["mean(GBMPooled,Leader)"] = (fc["GBMPooled"] + fc["Leader"]) / 2
        fc["mean(GBMPooled,Leader,Pooled)"] = (fc["GBMPooled"] + fc["Leader"] + fc["Pooled"]) / 3
        for pooled in ("Pooled", "PooledSMean7Scaled4", "PooledSMean7Scaled2", "PooledSMean5Scaled4",
                       "PooledSMean3Scaled4", "PooledSMean7Scaled8"):
            for a in ("GBM", "Leader"):
                fc[f"mean({a},{pooled})"] = (fc[a] + fc[pooled]) / 2
            fc[f"mean(GBM,Leader,{pooled})"] = (fc["GBM"] + fc["Leader"] + fc[pooled]) / 3
    buckets = step_buckets(h)
    cands = tuple(x for x in fc if x != "Oracle")
    sets = {"all": cands}
    if with_models:
        D = DEFAULT_MODELS
        c3 = "mean(GBM,Leader,Pooled)"
        sets.update({"default": D, "default+Pooled": (*D, "Pooled"),
                     "default+GBMPooled": (*D, "GBMPooled"),
                     "default+Pooled+GBMPooled": (*D, "Pooled", "GBMPooled"),
                     "default+combo3": (*D, c3), "default+Pooled+combo3": (*D, "Pooled", c3),
                     "default+Pooled+combos": (*D, "Pooled", c3, "mean(GBM,Leader)",
                                               "mean(Leader,Pooled)", "mean(GBM,Pooled)"),
                     "default+GP+mean(GP,L)": (*D, "GBMPooled", "mean(GBMPooled,Leader)"),
                     "default-GBM+GP+mean(GP,L)": (*(x for x in D if x != "GBM"), "GBMPooled",
                                                   "mean(GBMPooled,Leader)"),
                     "default+GP+P+means(GP,L,P)": (*D, "GBMPooled", "Pooled",
                                                    "mean(GBMPooled,Leader)",
                                                    "mean(GBMPooled,Leader,Pooled)"),
                     "default+allPooled": (*D, *(x for x in cands if x.startswith("Pooled")))})
    picked = {}
    for name, ms in sets.items():
        choice = select(fc, y, ok_val, ms, buckets)
        picked[name] = dict(zip(*np.unique(np.array(ms)[choice], return_counts=True)))
        fc[f"Best(val,{name})"] = np.maximum(assemble(fc, choice, ms, buckets), 0.0)
        for eps in (0.0, 0.05, 0.1):  # one model per bucket for every series unless beaten by eps
            ch = select_shrunk(fc, y, ok_val, ms, buckets, scales, eps)
            fc[f"Best(val,{name},global{'' if eps == 0 else f'-or-{eps:g}'})"] = np.maximum(
                assemble(fc, ch, ms, buckets), 0.0)
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
@click.option("--json", "as_json", is_flag=True)
def main(workloads, horizons, with_models, tune, as_json) -> None:
    docs = [run(w, h, with_models=with_models, tune=tune) for w in workloads for h in horizons]
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
