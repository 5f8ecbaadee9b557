"""Rolling-origin backtests with per-series model selection on a validation window that ends
before the holdout, and rolling conformal intervals.

Protocol (all slot counts in slots of the series):
- the last `holdout_days` are the test window; the `val_days` before it the validation window;
  the `cal_days` before that only warm up the conformal intervals. Models are fitted at the first
  origin (start of the calibration window) and re-fitted every `refit` slots on all data before
  the fit point.
- origins every `step` slots; from origin o each model forecasts slots o .. o+h-1 from y[:o].
- validation scores: origins with every target inside the validation window (targets never reach
  the test window). Test scores: origins in the test window. Masked targets are never scored.
- per series, the model with the lowest validation MAE is selected; its test forecasts and its
  own conformal intervals make up the "selected" row.
- MASE scale per series: in-sample MAE of the daily seasonal-naive forecast on all clean data
  before the validation window. Pooled scores: MASE = sum |e| / sum scale over all scored points
  (a volume-weighted MASE); sMAPE (percent) and coverage are pooled over points.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from torta.forecast.data import to_panel
from torta.forecast.metrics import conformal_bands, seasonal_naive_scale, smape_terms
from torta.forecast.models import DEFAULT_MODELS, MODELS, unavailable
from torta.forecast.pipeline import run_models, run_pipeline  # noqa: F401  (run_models: API)

LEVELS = (0.80, 0.95)
MASE_SCALE = "in-sample MAE of the daily seasonal-naive forecast before the validation window"
REPORT_HOURS = (1, 3, 6)  # horizons of `horizon_scores` (those within the backtest's horizon)


class ModelUnavailableWarning(RuntimeWarning):
    """A forecast model's library failed to import; the run goes on without that model."""


def usable_models(models: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """(models that can run, {left-out model: why}); warns once per model left out. Raises
    ValueError when none can run."""
    keep, skipped = [], {}
    for m in models:
        why = unavailable(m)
        if why is None:
            keep.append(m)
        else:
            skipped[m] = why
            warnings.warn(why + "; continuing without it", ModelUnavailableWarning, stacklevel=3)
    if not keep:
        raise ValueError(f"no forecast model can run: {skipped}")
    return tuple(keep), skipped


@dataclass(frozen=True)
class BacktestConfig:
    horizon: int = 4  # slots
    holdout_days: int = 3
    val_days: int = 1
    cal_days: int = 2
    step: int = 4  # slots between origins
    refit: int | None = None  # slots between parameter fits (default: one day)
    slot_s: float = 900.0
    models: tuple[str, ...] = DEFAULT_MODELS
    min_cal_points: int = 8  # fewer calibration errors than this: no interval (infinite)
    n_jobs: int = 1  # processes over series (fit_s stays the sum over series)
    reconcile: bool = True  # MinTrace-shrink over the origin x model hierarchy (pipeline.py)

    @property
    def season(self) -> int:
        return int(round(86400 / self.slot_s))

    def validate(self) -> None:
        if self.horizon < 1 or self.step < 1:
            raise ValueError(f"horizon and step must be >= 1, got {self.horizon}, {self.step}")
        if min(self.holdout_days, self.val_days, self.cal_days) < 1:
            raise ValueError("holdout_days, val_days and cal_days must be >= 1")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            from torta.errors import UnknownNameError

            raise UnknownNameError("forecast model", unknown[0], list(MODELS))


@dataclass
class BacktestReport:
    models: list[dict]
    selected: dict
    per_series: list[dict]
    config: dict
    mase_scale: str = MASE_SCALE
    n_series: int = 0
    n_test_points: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"models": self.models, "selected": self.selected, "per_series": self.per_series,
             "config": self.config, "mase_scale": self.mase_scale, "n_series": self.n_series,
             "n_test_points": self.n_test_points}
        d.update(self.extra)
        return d

    def model_row(self, name: str) -> dict:
        for r in self.models:
            if r["model"] == name:
                return r
        raise KeyError(name)


def _finite(x: float) -> float:
    """JSON numbers are never null or infinite: 0.0 stands for "no points to score"."""
    x = float(x)
    return x if np.isfinite(x) else 0.0


def _scores(y, f, lo, hi, ok, scale_pts) -> dict:
    e = np.abs(y - f)[ok]
    n = int(ok.sum())
    if n == 0:
        return {"mase": 0.0, "smape": 0.0, "coverage_80": 0.0, "coverage_95": 0.0, "n_points": 0}
    sm = smape_terms(y[ok], f[ok])
    cov = []
    for li in range(len(LEVELS)):
        lo_, hi_ = lo[..., li][ok], hi[..., li][ok]
        cov.append(float(np.mean((y[ok] >= lo_) & (y[ok] <= hi_))))
    return {
        "mase": float(e.sum() / scale_pts[ok].sum()),
        "smape": float(np.nanmean(sm)) if np.isfinite(sm).any() else 0.0,
        "coverage_80": cov[0],
        "coverage_95": cov[1],
        "n_points": n,
    }


def _bands(f, y, m, cfg) -> tuple[np.ndarray, np.ndarray]:
    window = cfg.cal_days * cfg.season
    b = [conformal_bands(f[s], y[s], m[s], cfg.step, window, LEVELS, cfg.min_cal_points)
         for s in range(f.shape[0])]
    return np.stack([x[0] for x in b]), np.stack([x[1] for x in b])


def _horizon_scores(y, sel, lo, hi, fc, ok, scale_pts, h, slot_s) -> list[dict]:
    """Per reporting horizon (1, 3, 6 h within h): the selected forecast's pooled scores over
    steps 1..that horizon, as MASE ratios against Naive and SeasonalNaive, with coverage."""
    out = []
    per_hour = int(round(3600 / slot_s))
    for hours in REPORT_HOURS:
        k = hours * per_hour
        if k > h:
            continue
        okk = ok.copy()
        okk[:, :, k:] = False
        row = {"hours": hours, "horizon": k, **_scores(y, sel, lo, hi, okk, scale_pts)}
        den = float(scale_pts[okk].sum())
        row["mase_by_model"] = {m: float(np.abs(y - f)[okk].sum() / den) if den > 0 else 0.0
                                for m, f in fc.items()}
        for base in ("Naive", "SeasonalNaive"):
            if base in fc:
                e = row["mase_by_model"][base]
                row[f"mase_{base}"] = e
                row[f"ratio_{base}"] = row["mase"] / e if e > 0 else 0.0
        out.append(row)
    return out


def backtest(history: pl.DataFrame, config: BacktestConfig | None = None, **kw) -> BacktestReport:
    """Rolling-origin backtest of `config.models` on a history frame (series, slot, y[, masked]).

    Keyword arguments override fields of BacktestConfig (horizon=, holdout_days=, ...). Models
    whose library fails to import are left out with a ModelUnavailableWarning (and listed under
    "skipped_models").
    """
    cfg = config or BacktestConfig()
    if kw:
        cfg = BacktestConfig(**{**asdict(cfg), **kw})
    cfg.validate()
    models, skipped = usable_models(cfg.models)
    season, h = cfg.season, cfg.horizon
    refit = cfg.refit or season
    panel = to_panel(history, season)
    T = panel.n_slots
    test_start = T - cfg.holdout_days * season
    val_start = test_start - cfg.val_days * season
    cal_start = val_start - cfg.cal_days * season
    if cal_start < 2 * season:
        raise ValueError(f"history of {T} slots is too short: need at least "
                         f"{(2 + cfg.cal_days + cfg.val_days + cfg.holdout_days)} days of "
                         f"{season} slots (2 training days, then calibration, validation and "
                         f"holdout)")
    origins = np.arange(cal_start, T - h + 1, cfg.step)
    res = run_pipeline(panel, origins, h, models, refit, season, val_start, test_start,
                       reconcile_=cfg.reconcile, n_jobs=cfg.n_jobs)
    fc, secs, ytg, mtg = res.fc, res.secs, res.y, res.masked
    S = len(panel.series)
    scales = np.array([seasonal_naive_scale(panel.y[s, :val_start], panel.masked[s, :val_start],
                                            season) for s in range(S)])
    scale_pts = np.broadcast_to(scales[:, None, None], ytg.shape)
    is_val = (origins >= val_start) & (origins + h <= test_start)
    is_test = origins >= test_start
    val_ok = ~mtg & is_val[None, :, None]
    test_ok = ~mtg & is_test[None, :, None]
    rows = []
    val_mae = np.full((len(models), S), np.inf)
    for mi, m in enumerate(models):
        f = fc[m]
        lo, hi = _bands(f, ytg, mtg, cfg)
        for s in range(S):
            ok = val_ok[s]
            if ok.any():
                val_mae[mi, s] = float(np.abs(ytg[s] - f[s])[ok].mean())
        row = {"model": m, **_scores(ytg, f, lo, hi, test_ok, scale_pts), "fit_s": secs[m]}
        v = _scores(ytg, f, lo, hi, val_ok, scale_pts)
        row["val_mase"] = v["mase"]
        row["val_coverage_80"] = v["coverage_80"]
        row["val_coverage_95"] = v["coverage_95"]
        rows.append(row)
    sel_f = res.final
    sel_lo, sel_hi = _bands(sel_f, ytg, mtg, cfg)
    selected = _scores(ytg, sel_f, sel_lo, sel_hi, test_ok, scale_pts)
    sel_val = _scores(ytg, sel_f, sel_lo, sel_hi, val_ok, scale_pts)
    selected.update({f"val_{k}": v for k, v in sel_val.items() if k != "n_points"})
    b_lo, b_hi = _bands(res.base, ytg, mtg, cfg)
    unrec = _scores(ytg, res.base, b_lo, b_hi, test_ok, scale_pts)
    unrec["val_mase"] = _scores(ytg, res.base, b_lo, b_hi, val_ok, scale_pts)["mase"]
    steps_per_bucket = np.bincount(res.buckets)
    per_series = []
    for s, name in enumerate(panel.series):
        one = _scores(ytg[s:s + 1], sel_f[s:s + 1], sel_lo[s:s + 1], sel_hi[s:s + 1],
                      test_ok[s:s + 1], scale_pts[s:s + 1])
        by_steps = np.bincount(res.choice[s], weights=steps_per_bucket, minlength=len(models))
        main = int(np.argmax(by_steps))
        per_series.append({"series": name, "model": models[main], "mase": one["mase"],
                           "coverage_80": one["coverage_80"], "scale": float(scales[s]),
                           "val_mae": _finite(val_mae[main, s]),
                           "val_points": int(val_ok[s].sum()),
                           "models_by_step": [models[c] for c in res.choice[s][res.buckets]]})
    by = {r["model"]: r for r in rows}
    ratios = {}
    for base in ("SeasonalNaive", "Naive"):
        if base in by and by[base]["mase"] > 0:
            ratios[f"selected_over_{base}"] = selected["mase"] / by[base]["mase"]
    conf = asdict(cfg)
    conf.update(models=list(models), season=season, refit=refit, first_slot=panel.first_slot,
                n_slots=T, cal_start=cal_start + panel.first_slot,
                val_start=val_start + panel.first_slot,
                test_start=test_start + panel.first_slot, n_origins=int(len(origins)),
                selection="per series and step bucket (first steps of the buckets: "
                          f"{[int(np.flatnonzero(res.buckets == b)[0]) + 1 for b in np.unique(res.buckets)]}), "
                          "lowest validation MAE",
                intervals="rolling split-conformal per step on the final forecast's relative "
                          f"errors |y-f|/max(f,1) over the previous {cfg.cal_days} days",
                reconciliation=res.info.get("reconciliation", "none"))
    in_band = sum(1 for p in per_series if 0.75 <= p["coverage_80"] <= 0.85)
    hs = _horizon_scores(ytg, sel_f, sel_lo, sel_hi, fc, test_ok, scale_pts, h, cfg.slot_s)
    return BacktestReport(rows, selected, per_series, conf, n_series=S,
                          n_test_points=int(test_ok.sum()),
                          extra={"ratios": ratios, "series_coverage_80_in_75_85": in_band,
                                 "horizon_scores": hs, "selected_unreconciled": unrec,
                                 "skipped_models": skipped})
