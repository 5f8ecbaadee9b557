"""PoolRatioGBM (torta/forecast/ratio_models.py): shape, determinism, no look-ahead, the pool read
within its frontier, the ratio to the seasonal mean learned beyond it, and PoolRatioLGP as the
mean of its members."""

from __future__ import annotations

import numpy as np
import polars as pl

from torta.forecast.models import MODELS, SeasonalNaive
from torta.forecast.ratio_models import PoolRatioGBM

OFFS = np.array([0.0, -3.5, -9.2])  # series 2 is the westernmost: the others lead it by ~9 slots
WEIGHTS = np.array([1.0, 0.5, 2.0])


def _regime_panel(n_slots=9 * 96, seed=0, offsets=OFFS, weights=WEIGHTS):
    """One curve seen by every series at slot t + offsets[s], times weights[s]: a daily wave times
    a level that jumps at random times (about every 20 h) and then stays, plus 2 % noise."""
    rng = np.random.default_rng(seed)
    n = n_slots + 64
    level = np.ones(n)
    t = 0
    while t < n:
        t += int(rng.integers(40, 120))
        level[t:] = rng.uniform(0.6, 1.6)
    tc = np.arange(n)
    curve = 100 * (1 + 0.5 * np.sin(2 * np.pi * tc / 96)) * level
    x = np.arange(n_slots)[None, :] + 32 + np.asarray(offsets)[:, None]
    Y = np.vstack([np.interp(xs, tc, curve) for xs in x]) * np.asarray(weights)[:, None]
    return Y * (1 + 0.02 * rng.standard_normal(Y.shape))


def _run(Y, origins, h, **kw):
    return PoolRatioGBM(**kw).rolling_panel(Y, np.zeros(Y.shape, bool), ("m",) * Y.shape[0],
                                            origins, h, 96, 96)


def test_shape_and_determinism():
    Y = _regime_panel()
    origins = np.arange(7 * 96, 9 * 96 - 24, 4)
    a = _run(Y, origins, 24)
    assert a.shape == (3, len(origins), 24) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, _run(Y, origins, 24))


def test_reads_only_the_past():
    """Forecasts from origins up to t0 do not change when the data from t0 on change."""
    Y = _regime_panel()
    origins = np.arange(7 * 96, 9 * 96 - 24, 4)
    t0 = 8 * 96 + 10
    Y2 = Y.copy()
    Y2[:, t0:] = Y2[:, t0:] * 3 + 500
    a, b = _run(Y, origins, 24), _run(Y2, origins, 24)
    keep = origins <= t0
    np.testing.assert_array_equal(a[:, keep], b[:, keep])
    assert not np.array_equal(a[:, ~keep], b[:, ~keep])


def test_the_pool_within_its_frontier_and_the_level_beyond():
    """Targets the eastern series have observed are read from the pool (within the noise); beyond
    the frontier the learned ratio beats yesterday's value (SeasonalNaive) by a wide margin on a
    curve whose level jumps and stays."""
    Y = _regime_panel(n_slots=12 * 96)
    origins = np.arange(10 * 96, 12 * 96 - 24, 4)
    f = _run(Y, origins, 24)
    idx = origins[:, None] + np.arange(24)[None, :]
    truth = Y[2, np.minimum(idx, Y.shape[1] - 1)]
    within = np.abs(f[2, :, :8] - truth[:, :8]) / truth[:, :8]
    assert np.median(within) < 0.04
    sn = SeasonalNaive().rolling(Y[2], origins, 24)
    beyond = slice(12, 24)
    e_f = np.abs(f[2, :, beyond] - truth[:, beyond]).mean()
    e_sn = np.abs(sn[:, beyond] - truth[:, beyond]).mean()
    assert e_f < 0.8 * e_sn


def test_pool_ratio_lgp_is_the_mean_of_its_members_each_computed_once():
    from torta.forecast.data import to_panel
    from torta.forecast.pipeline import run_models

    Y = _regime_panel(n_slots=6 * 96)
    names = ("a|m", "b|m", "c|m")
    S, T = Y.shape
    panel = to_panel(pl.DataFrame({"series": [n for n in names for _ in range(T)],
                                   "slot": np.tile(np.arange(T), S), "y": Y.ravel(),
                                   "masked": [False] * (S * T)}), 96)
    origins = np.arange(4 * 96, 6 * 96 - 8, 4)
    fc, secs = run_models(panel, origins, 8, ("PoolRatioLGP", "Leader"), 96, 96)
    alone, _ = run_models(panel, origins, 8, ("PoolRatioGBM", "LeaderGBMPooled"), 96, 96)
    np.testing.assert_allclose(fc["PoolRatioLGP"],
                               (alone["PoolRatioGBM"] + alone["LeaderGBMPooled"]) / 2)
    assert list(fc) == ["PoolRatioLGP", "Leader"] and secs["PoolRatioLGP"] >= secs["Leader"]
    assert MODELS["PoolRatioLGP"].members == ("PoolRatioGBM", "LeaderGBMPooled")
