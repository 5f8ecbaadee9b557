"""Forecasters with a rolling-origin interface: fit on data before a fit point, forecast from
each origin using only data before it.

`rolling(y, origins, h, refit)` -> (len(origins), h) point forecasts. Model parameters are
estimated at fit points (the first origin, then every `refit` slots); between fit points the
model's state is updated with the new observations without re-estimating parameters
(statsforecast `forward`). A forecast from origin o reads y[:o] only.

statsforecast 2.1 models: AutoETS (non-seasonal "ZZN": a long daily season of 96 slots is not
supported by AutoETS, ../shared/notes/forecasting.md), MSTL (daily season, AutoETS trend), AutoARIMA
(non-seasonal; seasonal ARIMA at 96 is unaffordable), EWMA (statsforecast's simple exponential
smoothing, alpha fitted by one-step squared error). Own numpy: Naive, SeasonalNaive (daily),
SeasonalScaled (daily shape x current level), Ensemble (mean of MSTL and AutoETS, the most robust
single choice in the study in the notes). Panel models over all series at once (Leader, GBM,
Pooled, GBMPooled) live in panel_models.py, PoolRatioGBM in ratio_models.py, and are registered
here, with the means LeaderGBMPooled (of Leader, GBM and Pooled) and PoolRatioLGP (of PoolRatioGBM
and LeaderGBMPooled), each member computed once by pipeline.run_models.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SEASON_SLOTS_15M = 96  # one day of 15-min slots


def _fit_points(origins: np.ndarray, refit) -> np.ndarray:
    """The fit point of each origin: `refit` slots apart from the first origin, or `refit`
    itself when it is an array of one fit point per origin (each <= its origin)."""
    if isinstance(refit, np.ndarray):
        if refit.shape != origins.shape or (refit > origins).any():
            raise ValueError("fit points must be one per origin and not after it")
        return refit.astype(np.int64)
    o0 = int(origins[0])
    return o0 + int(refit) * ((origins - o0) // int(refit))


@dataclass(frozen=True)
class Naive:
    name: str = "Naive"

    def rolling(self, y, origins, h, refit=96, season=SEASON_SLOTS_15M):
        return np.repeat(y[origins - 1][:, None], h, axis=1)


@dataclass(frozen=True)
class SeasonalNaive:
    name: str = "SeasonalNaive"

    def rolling(self, y, origins, h, refit=96, season=SEASON_SLOTS_15M):
        k = np.arange(h)
        lag = season * (k // season + 1)
        idx = origins[:, None] + k[None, :] - lag[None, :]
        return y[np.clip(idx, 0, None)]


def _daily_shape(y: np.ndarray, t: np.ndarray, season: int, days: int) -> np.ndarray:
    """Mean of y at the same time of day over the `days` days before slot t (fewer where the
    history is shorter; t itself when none): the daily shape at t from data before t."""
    acc = np.zeros(t.shape)
    n = np.zeros(t.shape)
    for d in range(1, days + 1):
        i = t - d * season
        ok = i >= 0
        acc += np.where(ok, y[np.clip(i, 0, None)], 0.0)
        n += ok
    return np.where(n > 0, acc / np.maximum(n, 1), y[np.clip(t - season, 0, None)])


@dataclass(frozen=True)
class SeasonalScaled:
    """The daily shape scaled by the current level: the mean of the last `days` days at the
    target's time of day, times the ratio of the last `window` observed slots to the shape at
    those slots. Shapes for steps beyond a day use whole days before the origin."""

    name: str = "SeasonalScaled"
    days: int = 7
    window: int = 4

    def rolling(self, y, origins, h, refit=96, season=SEASON_SLOTS_15M):
        k = np.arange(h)
        # shape of the target o+k from days before the origin: shift by whole days past k
        shift = season * (k // season)
        shape = _daily_shape(y, origins[:, None] + k[None, :] - shift[None, :], season, self.days)
        w = np.arange(1, self.window + 1)
        recent = origins[:, None] - w[None, :]
        obs = y[recent].sum(axis=1)
        ref = _daily_shape(y, recent, season, self.days).sum(axis=1)
        ratio = np.where(ref > 0, obs / np.maximum(ref, 1e-9), 1.0)
        return shape * ratio[:, None]


def _ses_levels(y: np.ndarray, alpha: float) -> np.ndarray:
    """levels[t] = simple-exponential-smoothing level after y[:t+1] (statsforecast's compiled SES,
    the same recursion as its SimpleExponentialSmoothing model)."""
    from statsforecast.models import _ses_lib

    last, fitted = _ses_lib.ses_forecast(np.ascontiguousarray(y, dtype=float), float(alpha))
    return np.concatenate([fitted[1:], [last]])


def _fit_alpha(y: np.ndarray) -> float:
    """Alpha in [0.01, 1] minimising the one-step squared error (statsforecast's golden-section
    search, as in SimpleExponentialSmoothingOptimized, with the bounds widened from 0.1-0.3)."""
    from statsforecast.models import _ses_lib

    return float(_ses_lib.golden_section_ses(np.ascontiguousarray(y, dtype=float), 0.01, 1.0))


@dataclass(frozen=True)
class EWMA:
    """Simple exponential smoothing (statsforecast SES), alpha re-fitted at each fit point."""

    name: str = "EWMA"

    def rolling(self, y, origins, h, refit=96, season=SEASON_SLOTS_15M):
        fits = _fit_points(origins, refit)
        out = np.empty((len(origins), h))
        for f in np.unique(fits):
            alpha = _fit_alpha(y[:f])
            lv = _ses_levels(y, alpha)  # level after y[t] uses y[:t+1] only
            sel = fits == f
            out[sel] = lv[origins[sel] - 1][:, None]
        return out


class _SFModel:
    """A statsforecast model fitted at fit points, `forward` at each origin."""

    name = ""

    def make(self, season: int):
        raise NotImplementedError

    def rolling(self, y, origins, h, refit=96, season=SEASON_SLOTS_15M):
        fits = _fit_points(origins, refit)
        out = np.empty((len(origins), h))
        model, fit_at = None, None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, o in enumerate(origins):
                if fits[i] != fit_at:
                    fit_at = int(fits[i])
                    model = self.make(season).fit(y[:fit_at])
                out[i] = self.forward(model, y, fit_at, int(o), h, season)
        return out

    def forward(self, model, y, fit_at, o, h, season):
        return model.forward(y[:o], h)["mean"]


class AutoETS(_SFModel):
    name = "AutoETS"

    def make(self, season):
        from statsforecast.models import AutoETS as M

        return M(season_length=1, model="ZZN")


class AutoARIMA(_SFModel):
    name = "AutoARIMA"

    def make(self, season):
        from statsforecast.models import AutoARIMA as M

        return M(season_length=1)


class MSTL(_SFModel):
    """statsforecast MSTL (daily season, AutoETS trend). At each fit point the series is
    decomposed; between fit points new observations are deseasonalised with the fitted daily
    profile (the last season, as MSTL forecasts it) and the trend model is updated by `forward`
    (re-running the LOESS decomposition at every origin would cost ~0.2 s each)."""

    name = "MSTL"

    def make(self, season):
        from statsforecast.models import MSTL as M
        from statsforecast.models import AutoETS as E

        return M(season_length=[season], trend_forecaster=E(model="ZZN"))

    def forward(self, model, y, fit_at, o, h, season):
        comp = model.model_
        seas_cols = [c for c in comp.columns if str(c).startswith("seasonal")]
        seasonal = comp[seas_cols].sum(axis=1).to_numpy()
        profile = seasonal[-season:]
        x_sa = comp[["trend", "remainder"]].sum(axis=1).to_numpy()
        if o > fit_at:
            j = np.arange(o - fit_at)
            x_sa = np.concatenate([x_sa, y[fit_at:o] - profile[j % season]])
        jf = np.arange(o - fit_at, o - fit_at + h)
        return model.trend_forecaster.forward(x_sa, h)["mean"] + profile[jf % season]


class Ensemble:
    """Mean of MSTL and AutoETS forecasts."""

    name = "Ensemble"
    members = ("MSTL", "AutoETS")

    def rolling(self, y, origins, h, refit=96, season=SEASON_SLOTS_15M, cache=None):
        parts = [cache[m] if cache and m in cache else MODELS[m]().rolling(y, origins, h, refit, season)
                 for m in self.members]
        return np.mean(parts, axis=0)


def _panel(cls_name: str, module: str = "panel_models") -> Callable[[], object]:
    def make():
        import importlib

        return getattr(importlib.import_module(f"torta.forecast.{module}"), cls_name)()

    make.panel = True  # type: ignore[attr-defined]
    return make


def _panel_mean(members: tuple[str, ...]) -> Callable[[], object]:
    """A panel model that is the mean of other panel models (each computed once by
    pipeline.run_models, also when it is a candidate itself)."""
    def make():
        raise TypeError("a mean of panel models is computed by pipeline.run_models")

    make.panel = True  # type: ignore[attr-defined]
    make.members = members  # type: ignore[attr-defined]
    return make


def _panel_combo() -> Callable[[], object]:
    """combo_models.PoolCombo: a weighted mean of panel models (its members computed once by
    pipeline.run_models, which calls its `combine`)."""
    def make():
        from torta.forecast.combo_models import PoolCombo

        return PoolCombo()

    make.panel = True  # type: ignore[attr-defined]
    make.members = ("PoolRatioGBM", "Leader", "Pooled")  # combo_models.COMBO_MEMBERS
    make.combo = True  # type: ignore[attr-defined]
    return make


MODELS: dict[str, Callable[[], object]] = {
    "Naive": Naive,
    "SeasonalNaive": SeasonalNaive,
    "SeasonalScaled": SeasonalScaled,
    "EWMA": EWMA,
    "AutoETS": AutoETS,
    "MSTL": MSTL,
    "AutoARIMA": AutoARIMA,
    "Ensemble": Ensemble,
    "Leader": _panel("Leader"),
    "GBM": _panel("GBM"),
    "Pooled": _panel("Pooled"),
    "GBMPooled": _panel("GBMPooled"),
    "LeaderGBMPooled": _panel_mean(("Leader", "GBM", "Pooled")),
    "PoolRatioGBM": _panel("PoolRatioGBM", "ratio_models"),
    "PoolRatioLGP": _panel_mean(("PoolRatioGBM", "LeaderGBMPooled")),
    "PoolCombo": _panel_combo(),
}
# What each model imports beyond numpy; a model whose library is missing is left out of "auto"
# selections with a message (see `unavailable`), and refused by name.
REQUIRES: dict[str, tuple[str, ...]] = {
    "EWMA": ("statsforecast",), "AutoETS": ("statsforecast",), "MSTL": ("statsforecast",),
    "AutoARIMA": ("statsforecast",), "Ensemble": ("statsforecast",),
    "GBM": ("lightgbm", "mlforecast", "pandas"), "GBMPooled": ("lightgbm", "mlforecast", "pandas"),
    "LeaderGBMPooled": ("lightgbm", "mlforecast", "pandas"),
    "PoolRatioGBM": ("lightgbm",), "PoolRatioLGP": ("lightgbm", "mlforecast", "pandas"),
    "PoolCombo": ("lightgbm",),
}
# The default candidates: cheap enough for every series of a 50-region workload in seconds.
# MSTL, AutoETS, AutoARIMA and Ensemble stay available by name (`--models`): MSTL costs ~0.2 s
# per series and fit (../shared/notes/forecasting.md), i.e. ~60 s for the 150 series of a
# 50-region mixed workload, against a 10 s budget for all of them.
# LeaderGBMPooled (the mean of three panel models whose errors differ: the leader's persistence,
# the GBM and the pooled daily shape) was the best addition on the tuning day (day 11, selection
# on day 10, `python -m benchmarks.forecast_floor --with-models --tune`: 6-h MASE 0.428 / 0.914 /
# 0.651 x SeasonalNaive on servegen-mid/small/mix against 0.473 / 0.919 / 0.721 for the six
# before, 0.467 / 0.977 / 0.693 adding Pooled alone, 0.486 / 0.882 / 0.633 adding GBMPooled
# alone, all without a selection margin); Pooled and GBMPooled run by name.
DEFAULT_MODELS: tuple[str, ...] = ("SeasonalNaive", "Naive", "EWMA", "SeasonalScaled", "Leader",
                                   "GBM", "LeaderGBMPooled")
# Opt-in (`--models`, or BacktestConfig.models): the defaults plus PoolRatioGBM (ratio_models.py:
# LightGBM on the pooled curve's observed / seasonal ratios) and PoolRatioLGP (its mean with
# LeaderGBMPooled, the selection's reference: pipeline.SELECT_DEFAULT, with its own rule,
# pipeline.selection_rule), chosen on two validation folds (day 10 scored with selection on day 9,
# day 11 with selection on day 10). More accurate at 6 h (docs/PERFORMANCE.md, "Forecast accuracy at
# 6 h") but 1.4x the CPU of `torta bench forecast` (over its 10-s target) and it changes the replays of
# the forecast-driven policies: not the default until both are settled.
RATIO_MODELS: tuple[str, ...] = (*DEFAULT_MODELS, "PoolRatioGBM", "PoolRatioLGP")
# Opt-in: the weighted combination of combo_models.py (PoolRatioGBM, Leader, Pooled; weights per
# distance past the pool's frontier fitted on past errors, never on the backtest's test days), with
# the two baselines the backtest's ratios are taken against. Its selection rule: PoolCombo the
# reference, SELECT_MARGIN_RATIO, SeasonalNaive not selected (pipeline.selection_rule).
COMBO_MODELS: tuple[str, ...] = ("SeasonalNaive", "Naive", "PoolCombo")


def is_panel(name: str) -> bool:
    return bool(getattr(MODELS[name], "panel", False))


def unavailable(name: str) -> str | None:
    """None if model `name` can run here, else why not (the failed import, as one line)."""
    import importlib

    for mod in REQUIRES.get(name, ()):
        try:
            importlib.import_module(mod)
        except ImportError as e:  # includes a module set to None in sys.modules
            return (f"forecast model {name} needs the Python package {mod!r}, which failed to "
                    f"import ({e}); install the pins in pyproject.toml")
    return None


def usable(models: tuple[str, ...], warn=None) -> tuple[str, ...]:
    """The models of `models` that can run here; `warn(message)` once per model left out."""
    out = []
    for m in models:
        why = unavailable(m)
        if why is None:
            out.append(m)
        elif warn is not None:
            warn(why + "; continuing without it")
    return tuple(out)
