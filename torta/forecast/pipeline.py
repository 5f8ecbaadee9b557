"""The forecasting pipeline shared by the backtest and the planner API.

1. every candidate model forecasts every series of the panel (and, when reconciling, every
   aggregate of the origin x model hierarchy) from each origin;
2. per series and step bucket (steps 1, 2, 3-4, 5-8, 9-12, 13-16, 17-24, 25-32, 33-48, 49-64,
   65-96, ...) the model with the lowest MAE over the selection origins is chosen (targets of
   those origins lie in the selection window, before anything scored or forecast), unless it
   beats the reference by less than the margin on the series (then the reference): the bucket's
   best model over all series and SELECT_MARGIN for the default candidates; with the opt-in
   RATIO_MODELS (`selection_rule`) the SELECT_DEFAULT model, SELECT_MARGIN_RATIO, and SeasonalNaive
   scored but not selected;
3. with reconciliation, per step bucket, one of two coherent forecasts (bottom series that add up
   to every aggregate), whichever has the lower MAE over the selection window: bottom-up (the
   selected bottom forecasts summed) or MinTrace-shrink (hierarchy.py), its error covariance from
   the chosen forecasts' errors over the origins before the selection window (targets there too);
4. intervals: rolling split-conformal per step on the final forecasts' own errors
   (metrics.conformal_bands).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from torta.forecast.data import SERIES_SEP, Panel
from torta.forecast.hierarchy import augment, build_hierarchy, mint_shrink_projection, reconcile
from torta.forecast.metrics import seasonal_naive_scale
from torta.forecast.models import MODELS, is_panel, unavailable

BUCKET_EDGES = (0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96)  # 0-based step k starts of buckets


def step_buckets(h: int) -> np.ndarray:
    """Bucket id of each 0-based step 0..h-1 (buckets past 96 steps are 96 wide)."""
    edges = list(BUCKET_EDGES)
    while edges[-1] < h:
        edges.append(edges[-1] + 96)
    return np.searchsorted(np.array(edges), np.arange(h), side="right") - 1


def groups_of(series: tuple[str, ...]) -> tuple[str, ...]:
    """The group of each series for panel models: its model ("" without a separator)."""
    return tuple(s.split(SERIES_SEP, 1)[1] if SERIES_SEP in s else "" for s in series)


def pool_groups(series: tuple[str, ...]) -> tuple[str, ...]:
    """Groups for models that pool series (Pooled): as `groups_of`, except that an aggregate of
    the hierarchy ("*" as its origin) is a group of its own: a total over regions is no shifted
    copy of one region's series."""
    return tuple(s if s.startswith("*" + SERIES_SEP) else g for s, g in zip(series, groups_of(series)))


def run_models(panel: Panel, origins: np.ndarray, h: int, models: tuple[str, ...], refit,
               season: int, n_jobs: int = 1,
               freeze_at: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Forecasts {model: (S, n_origins, h)} (clipped at 0) and fit+forecast seconds per model
    (summed over series; per-series models split over `n_jobs` processes; panel models run once
    over all series). `refit`: slots between fits, or an array of each origin's fit point.
    `freeze_at` (panel index): combinations (PoolCombo) fit their weights on targets before it
    at the fit points after it."""
    base: list[str] = []
    for m in models:
        if is_panel(m):
            continue
        for b in (MODELS[m]().members if m == "Ensemble" else (m,)):
            if b not in base:
                base.append(b)
    S = len(panel.series)
    out: dict[str, np.ndarray] = {}
    secs: dict[str, float] = {}
    if base:
        args = [(panel.y[s], origins, h, tuple(base), refit, season) for s in range(S)]
        if n_jobs > 1 and S > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=min(n_jobs, S),
                                     mp_context=mp.get_context("fork")) as ex:
                res = list(ex.map(_series_forecasts, *zip(*args)))
        else:
            res = [_series_forecasts(*a) for a in args]
        out = {b: np.stack([r[0][b] for r in res]) for b in base}
        secs = {b: float(sum(r[1][b] for r in res)) for b in base}
    groups, pools = groups_of(panel.series), pool_groups(panel.series)
    means = [m for m in models if is_panel(m) and getattr(MODELS[m], "members", None)]
    singles = [m for m in models if is_panel(m) and m not in means]
    i = 0
    while i < len(means):  # a mean's members may be means themselves: those first
        for x in MODELS[means[i]].members:
            if getattr(MODELS[x], "members", None):
                if x in means[:i]:
                    continue
                if x in means:
                    means.remove(x)
                means.insert(i, x)
                break
        else:
            i += 1
    for m in means:
        singles += [x for x in MODELS[m].members
                    if x not in singles and not getattr(MODELS[x], "members", None)]
    for m in singles:
        t0 = time.perf_counter()
        model = MODELS[m]()
        f = model.rolling_panel(panel.y, panel.masked, pools if getattr(model, "pools", False)
                                else groups, origins, h, refit, season)
        out[m] = np.maximum(f, 0.0)
        secs[m] = time.perf_counter() - t0
    for m in means:
        if getattr(MODELS[m], "combo", False):
            t0 = time.perf_counter()
            f = MODELS[m]().combine(out, panel.y, panel.masked, pools, origins, h, refit, season,
                                    freeze_at)
            out[m] = np.maximum(f, 0.0)
            secs[m] = sum(secs[x] for x in MODELS[m].members) + time.perf_counter() - t0
            continue
        out[m] = np.mean([out[x] for x in MODELS[m].members], axis=0)
        secs[m] = sum(secs[x] for x in MODELS[m].members)
    if "Ensemble" in models:
        members = MODELS["Ensemble"]().members
        out["Ensemble"] = np.mean([out[x] for x in members], axis=0)
        secs["Ensemble"] = sum(secs[x] for x in members)
    return {m: out[m] for m in models}, {m: secs[m] for m in models}


def _series_forecasts(y, origins, h, names, refit, season):
    fc, secs = {}, {}
    for name in names:
        t0 = time.perf_counter()
        fc[name] = np.maximum(MODELS[name]().rolling(y, origins, h, refit, season), 0.0)
        secs[name] = time.perf_counter() - t0
    return fc, secs


def targets(panel: Panel, origins: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets (S, n_o, h) and their masks (masked, or past the history)."""
    idx = origins[:, None] + np.arange(h)[None, :]
    idx_c = np.minimum(idx, panel.n_slots - 1)
    y = panel.y[:, idx_c]
    m = panel.masked[:, idx_c] | (idx >= panel.n_slots)[None]
    return y, m


# The default candidates' rule (models.DEFAULT_MODELS): a series keeps its own best model of a
# step bucket only where it beats the bucket's best model over all series by more than this share
# of that model's error on the series; else it takes that one. One validation day per series is a noisy judge. First chosen (0.1) on the tuning day
# (day 11 of servegen-mid/small/mix, selection on day 10, the default candidates, no
# reconciliation: `python -m benchmarks.forecast_floor --with-models --tune`): the 6-h MASE was
# 0.429 / 0.756 / 0.606 x SeasonalNaive with 10 %, 0.428 / 0.794 / 0.639 with 5 %, 0.428 / 0.914
# / 0.651 with none. With PoolRatioGBM / PoolRatioLGP among the candidates and SeasonalNaive
# left out of the selection (SELECT_EXCLUDE), on two validation folds (day 10 scored with
# selection on day 9, history cut at day 10; day 11 scored with selection on day 10), with the
# bucket's best as the reference, 6-h MASE / SeasonalNaive mid / small / mix: 10 %: 0.574 /
# 0.614 / 0.562 and 0.429 / 0.747 / 0.605; 20 %:
# 0.579 / 0.616 / 0.538 and 0.430 / 0.703 / 0.592; 30 %: 0.578 / 0.620 / 0.540 and 0.430 /
# 0.690 / 0.573; 50 %: 0.579 / 0.623 / 0.540 and 0.432 / 0.693 / 0.575 (sums 3.531 / 3.458 /
# 3.431 / 3.441): 30 % (SELECT_MARGIN_RATIO, the rule of the opt-in models.RATIO_MODELS).
SELECT_MARGIN = 0.10
SELECT_MARGIN_RATIO = 0.30
# Scored (the MASE ratios' baselines) but never selected: SeasonalNaive (yesterday's value) won
# validation days that the next day did not repeat. On the same two folds, keeping it a candidate
# gave 0.679 / 0.695 / 0.613 and 0.430 / 0.690 / 0.573 (margin 30 %), leaving it out 0.578 /
# 0.620 / 0.540 and the same on day 11 (the daily shape stays in SeasonalScaled, Pooled,
# PoolRatioGBM and GBM's features). Only where one of those (DAILY_SHAPE_MODELS) is a candidate.
SELECT_EXCLUDE: tuple[str, ...] = ("SeasonalNaive",)
DAILY_SHAPE_MODELS: tuple[str, ...] = ("SeasonalScaled", "MSTL", "Ensemble", "GBM", "GBMPooled",
                                       "Pooled", "LeaderGBMPooled", "PoolRatioGBM",
                                       "PoolRatioLGP", "PoolCombo")

# The reference of the margin rule where it is a candidate, instead of the bucket's best model over
# all series on the selection window: a series leaves it only where its own best beats it by
# SELECT_MARGIN. The model that wins one validation day often loses the next (LeaderGBMPooled
# and PoolRatioGBM alternate at steps 13-24); their mean is near the best on each day. On the
# two folds above (SeasonalNaive left out, margin 30 %): 0.501 / 0.611 / 0.509 and 0.390 /
# 0.690 / 0.549 against 0.578 / 0.620 / 0.540 and 0.430 / 0.690 / 0.573 with the bucket's best
# as the reference (10 %: 0.518 / 0.605 / 0.549 and 0.402 / 0.747 / 0.569; 20 %: 0.496 /
# 0.606 / 0.507 and 0.398 / 0.704 / 0.548; 50 %: 0.502 / 0.613 / 0.510 and 0.392 / 0.691 /
# 0.538; with LeaderGBMPooled as the reference, 30 %: 0.457 / 0.628 / 0.496 and 0.430 / 0.744 /
# 0.574).
SELECT_DEFAULT = "PoolRatioLGP"
# With the opt-in combination among the candidates (models.COMBO_MODELS), the reference instead (same
# margin and exclusion). On the two folds (no reconciliation, H = 24, `python -m
# benchmarks.combo_research`), COMBO_MODELS with this rule: 0.447 / 0.589 / 0.491 and 0.391 / 0.733 /
# 0.555 (sum 3.207); RATIO_MODELS + PoolCombo with it: 3.199; PoolCombo alone 3.195: the other
# candidates add nothing, so COMBO_MODELS holds only the two baselines besides it.
SELECT_COMBO = "PoolCombo"


def select_exclude(models: tuple[str, ...]) -> tuple[str, ...]:
    """SELECT_EXCLUDE where a model of DAILY_SHAPE_MODELS is among `models`, else nothing."""
    return SELECT_EXCLUDE if any(m in DAILY_SHAPE_MODELS for m in models) else ()


def selection_rule(models: tuple[str, ...]) -> tuple[float, tuple[str, ...], str | None]:
    """(margin, excluded models, reference) of `select` for these candidates: with SELECT_DEFAULT among
    them (models.RATIO_MODELS, opt-in) the rule chosen with it (SELECT_MARGIN_RATIO, SeasonalNaive not
    selected, SELECT_DEFAULT as the reference); otherwise the default candidates' rule (SELECT_MARGIN
    to the bucket's best, nothing excluded), whose forecasts it leaves as they were."""
    if SELECT_COMBO in models:
        return SELECT_MARGIN_RATIO, select_exclude(models), SELECT_COMBO
    if SELECT_DEFAULT in models:
        return SELECT_MARGIN_RATIO, select_exclude(models), SELECT_DEFAULT
    return SELECT_MARGIN, (), None


def select(fc: dict[str, np.ndarray], y: np.ndarray, ok: np.ndarray, models: tuple[str, ...],
           buckets: np.ndarray, scales: np.ndarray | None = None,
           margin: float = 0.0, exclude: tuple[str, ...] = (),
           default: str | None = None) -> np.ndarray:
    """(S, n_buckets) index into `models`: per series and step bucket the lowest MAE over the
    points `ok`; Naive (else the first model) where a bucket has no point. With `scales` (S,)
    and `margin` > 0, the bucket's overall best model (lowest sum over series of MAE / scale)
    replaces a series' own best unless that beats it on the series by more than `margin`.
    With `default` among `models` (and not excluded), that model replaces the bucket's overall
    best as the reference of the margin rule. Models in `exclude` are never chosen (unless every
    model is excluded)."""
    fallback = models.index("Naive") if "Naive" in models else 0
    nb = int(buckets.max()) + 1
    S = y.shape[0]
    sums = np.zeros((len(models), S, nb))
    cnt = np.zeros((S, nb))
    for b in range(nb):
        cols = buckets == b
        okb = ok[:, :, cols]
        cnt[:, b] = okb.sum(axis=(1, 2))
        for mi, m in enumerate(models):
            e = np.abs(y[:, :, cols] - fc[m][:, :, cols])
            sums[mi, :, b] = np.where(okb, e, 0.0).sum(axis=(1, 2))
    out_ = np.array([m in exclude for m in models], dtype=bool)
    if out_.any() and not out_.all():
        sums[out_] = np.inf
        if models[fallback] in exclude:
            fallback = int(np.flatnonzero(~out_)[0])
    choice = np.argmin(sums, axis=0)
    if scales is not None and margin > 0:
        has = cnt > 0  # (S, nb)
        norm = np.where(has[None], sums / np.maximum(scales, 1e-12)[None, :, None], 0.0)
        overall = np.argmin(norm.sum(axis=1), axis=0)  # (nb,)
        if default in models and default not in exclude:
            overall = np.full(nb, models.index(default))
        own = np.take_along_axis(sums, choice[None], axis=0)[0]
        ref = sums[overall, :, np.arange(nb)].T  # (S, nb): the overall model's error per series
        choice = np.where(own < (1.0 - margin) * ref, choice, overall[None, :])
    return np.where(cnt > 0, choice, fallback)


def assemble(fc: dict[str, np.ndarray], choice: np.ndarray, models: tuple[str, ...],
             buckets: np.ndarray) -> np.ndarray:
    stack = np.stack([fc[m] for m in models])  # (M, S, n_o, h)
    pick = choice[:, buckets]  # (S, h)
    S = pick.shape[0]
    return np.take_along_axis(stack, pick[None, :, None, :].repeat(stack.shape[2], axis=2),
                              axis=0)[0] if S else stack[0]


@dataclass
class PipelineResult:
    fc: dict[str, np.ndarray]  # every model's forecasts of the bottom series
    secs: dict[str, float]
    base: np.ndarray  # per-step selected forecasts of the bottom series, before reconciling
    final: np.ndarray  # what is scored and returned (reconciled when it ran)
    choice: np.ndarray  # (S_bottom, n_buckets) model index
    buckets: np.ndarray
    y: np.ndarray  # bottom targets (S, n_o, h)
    masked: np.ndarray
    info: dict = field(default_factory=dict)


def one_blas_thread():
    """Context limiting BLAS/OpenMP pools to one thread: the matrices here are small, and on a
    busy 2-core machine idle-spinning BLAS threads made the lead search 170x slower in CPU time
    (5.1 s against 0.03 s) and starved LightGBM."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn (a mlforecast dependency)
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_pipeline(panel: Panel, origins: np.ndarray, h: int, models: tuple[str, ...], refit,
                 season: int, select_start: int, select_end: int, *, reconcile_: bool = True,
                 n_jobs: int = 1) -> PipelineResult:
    """Steps 1-3 of the module docstring. Selection origins: origins >= select_start whose
    targets are all before select_end (panel indices); reconciliation errors: origins before
    select_start, targets before select_start."""
    with one_blas_thread():
        return _run_pipeline(panel, origins, h, models, refit, season, select_start, select_end,
                             reconcile_, n_jobs)


def _run_pipeline(panel, origins, h, models, refit, season, select_start, select_end,
                  reconcile_, n_jobs) -> PipelineResult:
    info: dict = {}
    hier = None
    if reconcile_ and len(panel.series) > 1:
        why = unavailable_reconciliation()
        if why:
            info["reconciliation"] = f"skipped: {why}"
        else:
            hier = build_hierarchy(panel.series)
    work = augment(panel, hier) if hier is not None else panel
    fc, secs = run_models(work, origins, h, models, refit, season, n_jobs, freeze_at=select_end)
    y, m = targets(work, origins, h)
    last_t = origins[:, None] + np.arange(h)[None, :]
    in_sel = (origins >= select_start)[:, None] & (last_t < select_end)
    in_sel &= in_sel.all(axis=1, keepdims=True)  # whole forecast inside the window
    ok_sel = ~m & in_sel[None]
    buckets = step_buckets(h)
    scales = np.array([seasonal_naive_scale(work.y[s, :select_start], work.masked[s, :select_start],
                                            season) for s in range(len(work.series))])
    margin, exclude, reference = selection_rule(models)
    choice = select(fc, y, ok_sel, models, buckets, scales, margin, exclude, reference)
    base = assemble(fc, choice, models, buckets)
    nb = len(panel.series)
    final = base[-nb:]
    if hier is not None and len(hier.nodes) > nb:
        ok_rec = ~m & ((origins < select_start)[:, None] & (last_t < select_start))[None]
        final = base[-nb:].copy()  # bottom-up: coherent by construction
        mint = []
        for b in np.unique(buckets):
            cols = buckets == b
            yt = np.where(ok_rec[:, :, cols], y[:, :, cols], np.nan).reshape(len(work.series), -1)
            keep = np.isfinite(yt).all(axis=0)
            if keep.sum() < 4:  # no errors to weigh with: stay bottom-up
                continue
            P = mint_shrink_projection(hier, yt[:, keep],
                                       base[:, :, cols].reshape(len(work.series), -1)[:, keep])
            rec = reconcile(P, base[:, :, cols])
            okb = ok_sel[-nb:][:, :, cols]
            e_rec = np.abs(y[-nb:][:, :, cols] - rec)[okb].sum()
            e_bu = np.abs(y[-nb:][:, :, cols] - base[-nb:][:, :, cols])[okb].sum()
            if e_rec <= e_bu:  # per step bucket, whichever did better on the selection window
                final[:, :, cols] = rec
                mint.append(int(np.flatnonzero(cols)[0]) + 1)
        info["reconciliation"] = (f"MinTrace mint_shrink over {len(hier.nodes)} nodes "
                                  f"({len(hier.nodes) - nb} aggregates) for the step buckets "
                                  f"starting at steps {mint}, bottom-up for the others (chosen "
                                  "per bucket on the selection window)")
    elif "reconciliation" not in info:
        info["reconciliation"] = "none"
    return PipelineResult({k: v[-nb:] for k, v in fc.items()}, secs, base[-nb:], final,
                          choice[-nb:], buckets, y[-nb:], m[-nb:], info)


def unavailable_reconciliation() -> str | None:
    import importlib

    try:
        importlib.import_module("hierarchicalforecast.methods")
    except ImportError as e:
        return (f"reconciliation needs the Python package 'hierarchicalforecast', which failed to "
                f"import ({e}); forecasts are not reconciled")
    return None
