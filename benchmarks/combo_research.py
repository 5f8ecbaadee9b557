"""How the opt-in PoolCombo (torta/forecast/combo_models.py) was chosen (issue 20, H = 24).

`python -m benchmarks.combo_research build` computes the members' forecasts once per workload and
fold with pipeline.run_models (bottom series, no reconciliation, the backtest's geometry as in
benchmarks/forecast_floor.py: fold 10 = history cut after day 10, day 9 the day before, day 10
scored; fold 11 = cut after day 11, day 11 scored; fold 14 = the full history, days 12-14 scored,
report only) into CACHE; `python -m benchmarks.combo_research score` then scores PoolCombo variants
(PoolCombo.combine on the cached members, its weights frozen at the scored window's start as the
backtest's pipeline does) and the hindsight bound of a combination (weights per bucket fitted on
the scored days themselves: not a forecaster). MASE / SeasonalNaive over steps 1-24. The choice
rule: the lowest sum over the two validation folds (10, 11) of the three workloads, a variant
within 0.005 of it taken where it is cheaper; fold 14 is printed and chose nothing.
"""

from __future__ import annotations

import os
import sys

import numpy as np

CACHE = os.environ.get("COMBO_CACHE", ".cache22")
WORKLOADS = ("servegen-mid-14d", "servegen-small-14d", "servegen-mix-14d")
FOLDS = (10, 11, 14)
MEMBERS = ("Naive", "SeasonalNaive", "SeasonalScaled", "EWMA", "Leader", "GBM", "Pooled",
           "PoolRatioGBM")
SEASON = 96
H = 24


def build(workload: str, fold: int) -> None:
    import polars as pl

    from benchmarks.forecast_floor import geometry
    from torta.forecast.data import to_history, to_panel
    from torta.forecast.metrics import seasonal_naive_scale
    from torta.forecast.pipeline import run_models, targets
    from torta.workload import regional_rates

    hist = to_history(regional_rates(workload, None, 0))
    if fold != 14:
        hist = hist.filter(pl.col("slot") < fold * SEASON)
    panel = to_panel(hist, SEASON)
    origins, is_val, is_test, val_start = geometry(panel.n_slots, H,
                                                   holdout_days=3 if fold == 14 else 1)
    fc, _ = run_models(panel, origins, H, MEMBERS, SEASON, SEASON)
    y, m = targets(panel, origins, H)
    scales = np.array([seasonal_naive_scale(panel.y[s, :val_start], panel.masked[s, :val_start],
                                            SEASON) for s in range(len(panel.series))])
    os.makedirs(CACHE, exist_ok=True)
    np.savez_compressed(f"{CACHE}/{workload}_{fold}_{H}.npz", origins=origins, is_test=is_test,
                        y=y, m=m, scales=scales, series=np.array(panel.series), Y=panel.y,
                        masked=panel.masked, **{f"fc_{k}": v for k, v in fc.items()})


def load(workload: str, fold: int):
    z = dict(np.load(f"{CACHE}/{workload}_{fold}_{H}.npz"))
    fc = {k[3:]: v for k, v in z.items() if k.startswith("fc_")}
    fc["LeaderGBMPooled"] = (fc["Leader"] + fc["GBM"] + fc["Pooled"]) / 3
    fc["PoolRatioLGP"] = (fc["LeaderGBMPooled"] + fc["PoolRatioGBM"]) / 2
    from torta.forecast.panel_models import Pooled
    from torta.forecast.pipeline import groups_of

    for win in (1, 8):  # Pooled (7 days) with another window: cheap, computed here
        fc[f"Pooled(window={win})"] = np.maximum(Pooled(window=win).rolling_panel(
            z["Y"], z["masked"], groups_of(tuple(z["series"])), z["origins"], H, SEASON,
            SEASON), 0.0)
    return z, fc


def mase(z, f) -> float:
    ok = ~z["m"] & z["is_test"][None, :, None]
    sc = np.broadcast_to(z["scales"][:, None, None], z["y"].shape)
    return float(np.abs(z["y"] - f)[ok].sum() / sc[ok].sum())


def combo(z, fc, **kw) -> np.ndarray:
    from torta.forecast.combo_models import PoolCombo
    from torta.forecast.pipeline import groups_of

    model = PoolCombo(**kw)
    origins = z["origins"]
    f = model.combine(fc, z["Y"], z["masked"], groups_of(tuple(z["series"])), origins, H,
                      SEASON, SEASON, freeze_at=int(origins[z["is_test"]][0]))
    return np.maximum(f, 0.0)


def hindsight(z, fc, members) -> np.ndarray:
    """Weights per (kind, j bucket) fitted on the scored days themselves (a bound, not a
    forecaster)."""
    from torta.forecast.combo_models import j_buckets, pool_fronts, simplex_l1_weights
    from torta.forecast.pipeline import groups_of

    origins, y = z["origins"], z["y"]
    ts = int(origins[z["is_test"]][0])
    jb = j_buckets(pool_fronts(z["Y"], z["masked"], groups_of(tuple(z["series"])), ts, SEASON), H)
    F = np.stack([fc[m] for m in members], -1)
    ok = ~z["m"] & z["is_test"][None, :, None]
    out = F.mean(-1)
    for b in np.unique(jb):
        cell = np.broadcast_to((jb == b)[:, None, :], y.shape)
        if (cell & ok).sum():
            out[cell] = F[cell] @ simplex_l1_weights(F[cell & ok], y[cell & ok])
    return out


P4 = ("PoolRatioGBM", "Leader", "GBM", "Pooled")
P3 = ("PoolRatioGBM", "Leader", "Pooled")
VARIANTS = {
    "4 members, shrink 0.5 (first choice)": dict(members=P4, prior=(0.5, 1 / 6, 1 / 6, 1 / 6)),
    "4 members, shrink 0.25": dict(members=P4, prior=(0.5, 1 / 6, 1 / 6, 1 / 6), shrink=0.25),
    "4 members, shrink 0.75": dict(members=P4, prior=(0.5, 1 / 6, 1 / 6, 1 / 6), shrink=0.75),
    "4 members, no shrink": dict(members=P4, prior=(0.5, 1 / 6, 1 / 6, 1 / 6), shrink=0.0),
    "PoolRatioGBM, Leader, Pooled, shrink 0.5 (shipped)": dict(members=P3, prior=(0.5, 0.25, 0.25)),
    "the same, weights per group (model)": dict(members=P3, prior=(0.5, 0.25, 0.25),
                                                by_group=True),
    "the same, equal prior": dict(members=P3, prior=(1 / 3, 1 / 3, 1 / 3)),
    "the same + SeasonalScaled (prior 0)": dict(members=(*P3, "SeasonalScaled"),
                                                prior=(0.5, 0.25, 0.25, 0.0)),
    "the same + GBM (prior 0)": dict(members=(*P3, "GBM"), prior=(0.5, 0.25, 0.25, 0.0)),
    "the same + Pooled(window=1) (prior 0)": dict(members=(*P3, "Pooled(window=1)"),
                                                  prior=(0.5, 0.25, 0.25, 0.0)),
    "the same + Pooled(window=1), (window=8)": dict(
        members=(*P3, "Pooled(window=1)", "Pooled(window=8)"), prior=(0.5, 0.25, 0.25, 0, 0)),
    "PoolRatioGBM, Leader, Pooled(window=1)": dict(
        members=("PoolRatioGBM", "Leader", "Pooled(window=1)"), prior=(0.5, 0.25, 0.25)),
    "PoolRatioGBM, GBM, Pooled": dict(members=("PoolRatioGBM", "GBM", "Pooled"),
                                      prior=(0.5, 0.25, 0.25)),
}


def score() -> None:
    from torta.forecast.models import COMBO_MODELS, RATIO_MODELS
    from torta.forecast.pipeline import assemble, select, selection_rule, step_buckets

    rows: dict = {}
    for w in WORKLOADS:
        for fold in FOLDS:
            z, fc = load(w, fold)
            sn = mase(z, fc["SeasonalNaive"])
            for name in ("PoolRatioLGP", "LeaderGBMPooled", "PoolRatioGBM"):
                rows[(name, w, fold)] = mase(z, fc[name]) / sn
            for name, kw in VARIANTS.items():
                rows[(name, w, fold)] = mase(z, combo(z, fc, **kw)) / sn
            fc["PoolCombo"] = combo(z, fc)
            ok_val = ~z["m"] & (~z["is_test"] & (z["origins"] >= z["origins"][z["is_test"]][0]
                                                  - SEASON))[None, :, None]
            tgt_end = z["origins"] + H <= z["origins"][z["is_test"]][0]
            ok_val &= tgt_end[None, :, None]
            for label, ms in (("selection: COMBO_MODELS, their rule", COMBO_MODELS),
                              ("selection: RATIO_MODELS + PoolCombo, its rule",
                               (*RATIO_MODELS, "PoolCombo"))):
                ch = select(fc, z["y"], ok_val, ms, step_buckets(H), z["scales"],
                            *selection_rule(ms))
                rows[(label, w, fold)] = mase(z, assemble(fc, ch, ms, step_buckets(H))) / sn
            for ms in (P3, P4, (*P4, "SeasonalScaled", "SeasonalNaive", "Naive", "EWMA")):
                rows[(f"hindsight combination of {len(ms)}", w, fold)] = \
                    mase(z, hindsight(z, fc, ms)) / sn
    names = list(dict.fromkeys(k[0] for k in rows))
    print(f"{'':<52} fold 10 mid/small/mix | fold 11 | fold 14 (report only) | val sum")
    for n in names:
        cells = " | ".join(" / ".join(f"{rows[(n, w, f)]:.3f}" for w in WORKLOADS) for f in FOLDS)
        vs = sum(rows[(n, w, f)] for w in WORKLOADS for f in (10, 11))
        print(f"{n:<52} {cells} | {vs:.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["build"]:
        for w in WORKLOADS:
            for fold in FOLDS:
                build(w, fold)
    score()
