"""The forecasts the macro planner consumes: per series, the next H slots with intervals.

`forecast` gives one forecast from the end of the history; `forecast_rolling` gives the forecast
the planner would have had at each slot of a range (each from data before that slot only), which
is what a replay of a test day consumes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from torta.errors import UnknownNameError
from torta.forecast.backtest import LEVELS, usable_models
from torta.forecast.data import Panel, to_panel
from torta.forecast.metrics import conformal_bands
from torta.forecast.models import DEFAULT_MODELS, MODELS, unavailable
from torta.forecast.pipeline import run_models, run_pipeline, targets

FORECAST_SCHEMA = {"series": pl.String(), "slot": pl.Int64(), "mean": pl.Float64(),
                   "lo80": pl.Float64(), "hi80": pl.Float64(), "lo95": pl.Float64(),
                   "hi95": pl.Float64(), "model": pl.String()}
ROLLING_SCHEMA = {"series": pl.String(), "origin_slot": pl.Int64(), **FORECAST_SCHEMA}
_Z = (1.2816, 1.9600)  # normal quantiles for 80 / 95 %: fallback when no errors are known yet


def _check_model(model) -> None:
    if isinstance(model, Mapping):
        bad = [v for v in model.values() if v not in MODELS]
        if bad:
            raise UnknownNameError("forecast model", bad[0], list(MODELS))
    elif model != "auto" and model not in MODELS:
        raise UnknownNameError("forecast model", model, [*MODELS, "auto"])


def forecast_rolling(history: pl.DataFrame, horizon_slots: int,
                     model: str | Mapping[str, str] = "auto", *, start_slot: int | None = None,
                     end_slot: int | None = None, step: int = 4, slot_s: float = 900.0,
                     models: tuple[str, ...] = DEFAULT_MODELS, cal_days: int = 2,
                     val_days: int = 1, refit: int | None = None, reconcile: bool = True,
                     n_jobs: int = 1) -> pl.DataFrame:
    """Forecasts from every `step`-th origin slot in [start_slot, end_slot] (default: one origin,
    the slot after the history). The forecast from origin o covers slots o .. o+H-1 and uses
    history slots < o only (later rows of `history` are ignored for it).

    `model`: "auto" (torta.forecast.pipeline: per series and step bucket the model of `models`
    with the lowest MAE over origins every `step` slots in the `val_days` before start_slot,
    targets before start_slot; then, with `reconcile`, MinTrace-shrink over the origin x model
    hierarchy, its error covariance from the `cal_days` before those), a model name, or
    {series: model} (series missing from it get Naive; neither is reconciled). Models of
    `models` whose library fails to import are left out with a ModelUnavailableWarning.
    Intervals: rolling split-conformal per step on the final forecasts' own relative errors over
    the previous `cal_days` (fewer where history is short; +-z sd of the series where no error is
    known yet). Parameters are fitted at the first origin (cal_days + val_days before
    start_slot, less where history is short), then at start_slot and every `refit` slots after
    it (default: one day). `n_jobs`: processes over series for the per-series models.
    """
    if horizon_slots < 1 or step < 1:
        raise ValueError(f"horizon_slots and step must be >= 1, got {horizon_slots}, {step}")
    _check_model(model)
    season = int(round(86400 / slot_s))
    panel = to_panel(history, season)
    T, S, h = panel.n_slots, len(panel.series), int(horizon_slots)
    first = panel.first_slot
    start = (first + T) if start_slot is None else int(start_slot)
    end = start if end_slot is None else int(end_slot)
    if not first < start <= end <= first + T:
        raise ValueError(f"need {first} < start_slot <= end_slot <= {first + T} (one past the "
                         f"history), got {start}, {end}")
    s0 = start - first  # panel index of the first origin
    back = max(min((cal_days + val_days) * season, s0 - 2 * season), 0) // step * step
    origins = np.arange(s0 - back, end - first + 1, step)
    origins = origins[origins >= 1]
    every = season if refit is None else int(refit)
    fit_at = np.where(origins < s0, origins[0], s0 + every * ((origins - s0) // every))
    if model == "auto":
        run, _ = usable_models(tuple(models))
        res = run_pipeline(panel, origins, h, run, fit_at, season, s0 - val_days * season, s0,
                           reconcile_=reconcile, n_jobs=n_jobs)
        final = res.final
        names = np.array(run)[res.choice[:, res.buckets]]  # (S, h)
        ytg, mtg = res.y, res.masked
    else:
        choice = [model.get(s, "Naive") for s in panel.series] if isinstance(model, Mapping) \
            else [model] * S
        for m in dict.fromkeys(choice):
            why = unavailable(m)
            if why:
                raise ValueError(why)
        final = np.empty((S, len(origins), h))
        for m in dict.fromkeys(choice):  # each chosen model on its own series only
            rows = [s for s in range(S) if choice[s] == m]
            sub = Panel(tuple(panel.series[s] for s in rows), first, panel.y[rows],
                        panel.masked[rows])
            got, _ = run_models(sub, origins, h, (m,), fit_at, season, n_jobs=n_jobs)
            final[rows] = got[m]
        names = np.array(choice)[:, None].repeat(h, axis=1)
        ytg, mtg = targets(panel, origins, h)
    out_rows = origins >= s0
    cols: dict[str, list] = {k: [] for k in ROLLING_SCHEMA}
    for s, name in enumerate(panel.series):
        f = final[s]
        # the rows before s0 only calibrate; their targets may reach past s0, but an error only
        # enters an interval once its target is before the origin using it
        lo, hi = conformal_bands(f, ytg[s], mtg[s], step, cal_days * season, LEVELS, min_points=4)
        lo, hi, mean = lo[out_rows], hi[out_rows], f[out_rows]
        for li, z in enumerate(_Z):
            bad = ~np.isfinite(hi[..., li])
            if bad.any():
                hist_sd = float(np.std(panel.y[s, :max(s0, 2)]))
                hi[..., li][bad] = mean[bad] + z * hist_sd
                lo[..., li][bad] = np.maximum(mean[bad] - z * hist_sd, 0.0)
        n_o = int(out_rows.sum())
        o_slots = origins[out_rows] + first
        cols["series"] += [name] * (n_o * h)
        cols["origin_slot"] += np.repeat(o_slots, h).tolist()
        cols["slot"] += (o_slots[:, None] + np.arange(h)[None, :]).ravel().tolist()
        cols["mean"] += mean.ravel().tolist()
        cols["lo80"] += lo[..., 0].ravel().tolist()
        cols["hi80"] += hi[..., 0].ravel().tolist()
        cols["lo95"] += lo[..., 1].ravel().tolist()
        cols["hi95"] += hi[..., 1].ravel().tolist()
        cols["model"] += np.tile(names[s], n_o).tolist()
    return pl.DataFrame(cols, schema=ROLLING_SCHEMA)


def forecast(history: pl.DataFrame, horizon_slots: int, model: str | Mapping[str, str] = "auto", *,
             slot_s: float = 900.0, models: tuple[str, ...] = DEFAULT_MODELS, cal_days: int = 2,
             val_days: int = 1, step: int = 4, reconcile: bool = True,
             n_jobs: int = 1) -> pl.DataFrame:
    """Forecast slots last+1 .. last+H of every series in `history` (series, slot, y[, masked]):
    columns series, slot, mean, lo80, hi80, lo95, hi95, model. See `forecast_rolling`; here
    parameters are fitted twice: at the first calibration origin and on the whole history."""
    if horizon_slots < 1:
        raise ValueError(f"horizon_slots must be >= 1, got {horizon_slots}")
    out = forecast_rolling(history, horizon_slots, model, step=step, slot_s=slot_s, models=models,
                           cal_days=cal_days, val_days=val_days, reconcile=reconcile,
                           n_jobs=n_jobs)
    return out.drop("origin_slot")
