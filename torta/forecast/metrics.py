"""Point and interval scores, and rolling conformal intervals."""

from __future__ import annotations

import numpy as np


def seasonal_naive_scale(y: np.ndarray, masked: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast (lag `season`) over pairs where neither point is
    masked: the MASE denominator. Falls back to lag 1 if no seasonal pair exists; 1.0 if still 0."""
    for lag in (season, 1):
        if len(y) > lag:
            ok = ~masked[lag:] & ~masked[:-lag]
            if ok.any():
                d = float(np.mean(np.abs(y[lag:] - y[:-lag])[ok]))
                if d > 0:
                    return d
    return 1.0


def smape_terms(y: np.ndarray, f: np.ndarray) -> np.ndarray:
    """200 |y - f| / (|y| + |f|) per point (percent, 0-200); NaN where both are 0."""
    den = np.abs(y) + np.abs(f)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 200.0 * np.abs(y - f) / den, np.nan)


def conformal_quantile(abs_err: np.ndarray, level: float) -> float:
    """Split-conformal quantile: the ceil((n+1) level)-th smallest of n errors (the largest if
    that exceeds n); NaN for no errors."""
    e = np.sort(abs_err[np.isfinite(abs_err)])
    n = e.size
    if n == 0:
        return np.nan
    return float(e[min(int(np.ceil((n + 1) * level)) - 1, n - 1)])


def rolling_conformal(abs_err: np.ndarray, step: int, window: int, levels: tuple[float, ...],
                      min_points: int = 8) -> np.ndarray:
    """Half-widths per (origin, step k, level) from errors of earlier origins only.

    abs_err: (n_origins, h) |y - forecast| for origins spaced `step` slots apart, NaN where the
    target is masked. Row i's forecast for step k targets slot o_i + k (o_i: origin). Its
    calibration set: the step-k errors of origins o_j with o_j + k < o_i (target already observed)
    and o_j >= o_i - window. The half-width is the split-conformal quantile (finite-sample
    correction ceil((n+1) level)/n); NaN where fewer than `min_points` errors exist.
    """
    n_o, h = abs_err.shape
    W = max(1, window // step)
    out = np.full((n_o, h, len(levels)), np.nan)
    pad = np.full((W, h), np.nan)
    padded = np.vstack([pad, abs_err])  # row i of abs_err is row i + W here
    for k in range(h):
        d = k // step + 1  # i - j >= d
        if d > W:
            continue
        # rows j in [i - W, i - d]  ->  padded rows [i, i + W - d]
        win = np.lib.stride_tricks.sliding_window_view(padded[:, k], W - d + 1)[:n_o]
        srt = np.sort(win, axis=1)  # NaN last
        n = np.isfinite(win).sum(axis=1)
        for li, lev in enumerate(levels):
            idx = np.ceil((n + 1) * lev).astype(int) - 1
            idx = np.clip(idx, 0, np.maximum(n - 1, 0))
            q = np.take_along_axis(srt, idx[:, None], axis=1)[:, 0]
            out[:, k, li] = np.where(n >= min_points, q, np.nan)
    return out


def conformal_bands(f: np.ndarray, y: np.ndarray, masked: np.ndarray, step: int, window: int,
                    levels: tuple[float, ...], min_points: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Rolling conformal intervals for one series' rolling forecasts.

    f, y, masked: (n_origins, h) forecasts, targets and target masks. Scores are relative errors
    |y - f| / max(f, 1) (errors grow with the level of demand), so the half-width at a point is
    q x max(f, 1). Chosen over absolute errors on the validation windows of servegen-mid/small
    (80 % coverage 0.80 / 0.74 relative against 0.77 / 0.73 absolute). Returns lo, hi of shape
    (n_origins, h, len(levels)); lo is clipped at 0; +-inf where no calibration errors exist.
    """
    norm = np.maximum(f, 1.0)
    err = np.where(masked, np.nan, np.abs(y - f) / norm)
    q = rolling_conformal(err, step, window, levels, min_points)
    half = np.where(np.isfinite(q), q, np.inf) * norm[..., None]
    return np.maximum(f[..., None] - half, 0.0), f[..., None] + half
