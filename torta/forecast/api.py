"""The forecast the macro planner consumes: per series, the next H slots with intervals."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from torta.errors import UnknownNameError
from torta.forecast.backtest import LEVELS, run_models
from torta.forecast.data import to_panel
from torta.forecast.metrics import conformal_bands
from torta.forecast.models import DEFAULT_MODELS, MODELS

FORECAST_SCHEMA = {"series": pl.String(), "slot": pl.Int64(), "mean": pl.Float64(),
                   "lo80": pl.Float64(), "hi80": pl.Float64(), "lo95": pl.Float64(),
                   "hi95": pl.Float64(), "model": pl.String()}


def forecast(history: pl.DataFrame, horizon_slots: int, model: str | Mapping[str, str] = "auto", *,
             slot_s: float = 900.0, models: tuple[str, ...] = DEFAULT_MODELS, cal_days: int = 2,
             val_days: int = 1, step: int = 4) -> pl.DataFrame:
    """Forecast slots last+1 .. last+H of every series in `history` (series, slot, y[, masked]).

    `model`: "auto" (per series, the model with the lowest MAE over rolling origins of the last
    `val_days` of history, targets inside history), a model name, or {series: model name} (e.g. a
    backtest's per_series choice). Intervals: rolling split-conformal on the chosen model's own
    errors at each step over the last `cal_days` (widened to the whole history if shorter).
    Uses only `history`; masked slots are imputed as inputs and never used as errors.
    """
    if horizon_slots < 1:
        raise ValueError(f"horizon_slots must be >= 1, got {horizon_slots}")
    season = int(round(86400 / slot_s))
    panel = to_panel(history, season)
    T, S, h = panel.n_slots, len(panel.series), int(horizon_slots)
    if isinstance(model, str) and model != "auto" and model not in MODELS:
        raise UnknownNameError("forecast model", model, [*MODELS, "auto"])
    if isinstance(model, Mapping):
        bad = [v for v in model.values() if v not in MODELS]
        if bad:
            raise UnknownNameError("forecast model", bad[0], list(MODELS))
        need = tuple(dict.fromkeys(model.get(s, "Naive") for s in panel.series))
    elif model == "auto":
        need = tuple(models)
    else:
        need = (model,)
    back = (cal_days + (val_days if model == "auto" else 0)) * season
    back = max(min(back, T - 2 * season), 0) // step * step  # keep two days to fit on
    origins = np.arange(T - back, T + 1, step)
    origins = origins[origins >= 1]
    fc, _ = run_models(panel, origins, h, need, refit=max(back, step), season=season)
    idx = origins[:, None] + np.arange(h)[None, :]
    inside = idx < T
    idx_c = np.minimum(idx, T - 1)
    ytg = panel.y[:, idx_c]
    mtg = panel.masked[:, idx_c] | ~inside[None]
    if isinstance(model, Mapping):
        choice = [model.get(s, "Naive") for s in panel.series]
    elif model == "auto":
        val_from = T - val_days * season
        ok = ~mtg & (origins >= val_from)[None, :, None]
        choice = []
        for s in range(S):
            maes = [float(np.abs(ytg[s] - fc[m][s])[ok[s]].mean()) if ok[s].any() else np.inf
                    for m in need]
            choice.append(need[int(np.argmin(maes))] if np.isfinite(min(maes)) else "Naive"
                          if "Naive" in need else need[0])
    else:
        choice = [model] * S
    rows = {k: [] for k in FORECAST_SCHEMA}
    last = panel.first_slot + T - 1
    for s, name in enumerate(panel.series):
        f = fc[choice[s]][s]
        lo, hi = conformal_bands(f, ytg[s], mtg[s], step, max(back, step), LEVELS, min_points=4)
        lo, hi = lo[-1], hi[-1]  # the final origin: the forecast itself, (h, levels)
        mean = f[-1]
        for li, mult in enumerate((1.3, 2.0)):  # too few errors: widest available, else +-k sd
            bad = ~np.isfinite(hi[:, li])
            if bad.any():
                fin = (hi[:, li] - mean)[~bad]
                w = fin.max() if fin.size else mult * float(np.std(panel.y[s]))
                hi[bad, li] = mean[bad] + w
                lo[bad, li] = np.maximum(mean[bad] - w, 0.0)
        rows["series"] += [name] * h
        rows["slot"] += list(range(last + 1, last + 1 + h))
        rows["mean"] += mean.tolist()
        rows["lo80"] += lo[:, 0].tolist()
        rows["hi80"] += hi[:, 0].tolist()
        rows["lo95"] += lo[:, 1].tolist()
        rows["hi95"] += hi[:, 1].tolist()
        rows["model"] += [choice[s]] * h
    return pl.DataFrame(rows, schema=FORECAST_SCHEMA)
