"""PoolCombo (torta/forecast/combo_models.py): the L1 simplex weights, a real fit on a small
synthetic panel through pipeline.run_models (weights from the fit window only, forecasts finite and
non-negative), and weights that would change if they saw errors past the freeze point."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from torta.forecast.combo_models import (COMBO_MEMBERS, COMBO_PRIOR, COMBO_SHRINK, PoolCombo,
                                         j_buckets, simplex_l1_weights)
from torta.forecast.models import COMBO_MODELS, MODELS
from torta.forecast.pipeline import run_models, selection_rule
from test_forecast_ratio import _regime_panel


def _panel(Y):
    from torta.forecast.data import to_panel

    names = tuple(f"{c}|m" for c in "abc")[:Y.shape[0]]
    S, T = Y.shape
    return to_panel(pl.DataFrame({"series": [n for n in names for _ in range(T)],
                                  "slot": np.tile(np.arange(T), S), "y": Y.ravel(),
                                  "masked": [False] * (S * T)}), 96)


def test_simplex_l1_weights_find_the_exact_member_and_stay_on_the_simplex():
    rng = np.random.default_rng(0)
    y = rng.uniform(10, 100, 400)
    F = np.stack([y + rng.normal(0, 20, 400), y, y * 1.5], axis=1)  # member 1 is exact
    w = simplex_l1_weights(F, y)
    assert w.min() >= 0 and abs(w.sum() - 1) < 1e-12 and w[1] > 0.99
    # the unique optimum of a mixture: y is the mean of members 0 and 1
    e = rng.normal(0, 10, 400)
    w = simplex_l1_weights(np.stack([y + e, y - e, y * 3], axis=1), y)
    np.testing.assert_allclose(w, [0.5, 0.5, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="400 rows but y 3"):
        simplex_l1_weights(F, y[:3])


def test_j_buckets():
    b = j_buckets(np.array([-1, 3]), 8)
    assert b[0].tolist() == [1, 2, 2, 3, 3, 3, 3, 4]  # j = 1..8
    assert b[1].tolist() == [0, 0, 0, 1, 1, 2, 2, 3]  # j = -3..4


def test_real_fit_weights_from_the_fit_window_only_finite_non_negative():
    """Through run_models (the members computed once): every weight is fitted on errors whose
    targets are before its fit point; the forecasts are finite, >= 0, deterministic, and the
    combination of the members with the weights it reports."""
    Y = _regime_panel(n_slots=7 * 96)
    panel = _panel(Y)
    origins = np.arange(4 * 96, 7 * 96 - 24, 4)
    fc, secs = run_models(panel, origins, 24, ("PoolCombo", *COMBO_MEMBERS), 96, 96)
    f = fc["PoolCombo"]
    assert f.shape == (3, len(origins), 24) and np.isfinite(f).all() and f.min() >= 0
    fc2, _ = run_models(panel, origins, 24, ("PoolCombo",), 96, 96)
    np.testing.assert_array_equal(f, fc2["PoolCombo"])
    assert secs["PoolCombo"] >= secs["PoolRatioGBM"]
    # the first fit point has no errors yet: the prior; later ones are fitted (and shrunk)
    model = PoolCombo()
    got = model.combine({m: fc[m] for m in COMBO_MEMBERS}, panel.y, panel.masked, ("m",) * 3,
                        origins, 24, 96, 96)
    np.testing.assert_allclose(np.maximum(got, 0), f)
    first = [w for (fp, _, _), w in model.weights.items() if fp == origins[0]]
    assert first and all(np.allclose(w, COMBO_PRIOR) for w in first)
    later = [w for (fp, _, _), w in model.weights.items() if fp > origins[0]]
    assert later and any(not np.allclose(w, COMBO_PRIOR) for w in later)
    for w in model.weights.values():
        assert w.min() >= 0 and abs(w.sum() - 1) < 1e-9
        assert (w >= COMBO_SHRINK * np.array(COMBO_PRIOR) - 1e-12).all()
    # no weight sees the targets at or after its fit point: changing them leaves every weight
    Y2 = Y.copy()
    fit_pts = sorted({fp for fp, _, _ in model.weights})
    Y2[:, fit_pts[-1]:] *= 5
    m2 = PoolCombo()
    m2.combine({m: fc[m] for m in COMBO_MEMBERS}, Y2, panel.masked, ("m",) * 3, origins, 24,
               96, 96)
    for k, w in model.weights.items():
        np.testing.assert_array_equal(w, m2.weights[k])


def test_weights_do_not_leak_the_future_past_the_freeze_point():
    """Member "A" is exact before the freeze point and far off after it, "B" the reverse. Weights
    fitted on the errors before the freeze point favour A; had they seen a target past it, B's
    exact forecasts there would pull them towards B (checked: without the freeze they do)."""
    Y = _regime_panel(n_slots=8 * 96)
    S, T = Y.shape
    origins = np.arange(4 * 96, 8 * 96 - 24, 4)
    freeze = 5 * 96
    tgt = origins[:, None] + np.arange(24)[None, :]
    truth = Y[:, np.minimum(tgt, T - 1)]
    after = np.broadcast_to((tgt >= freeze)[None], truth.shape)
    a = np.where(after, truth * 2.0, truth)  # exact before, double after
    b = np.where(after, truth, truth * 2.0)  # double before, exact after
    members = {"PoolRatioGBM": a, "Leader": b, "GBM": b, "Pooled": b}
    masked = np.zeros(Y.shape, bool)
    model = PoolCombo()
    model.combine(members, Y, masked, ("m",) * S, origins, 24, 96, 96, freeze_at=freeze)
    late = {k: w for k, w in model.weights.items() if k[0] >= freeze + 96}
    assert late
    for w in late.values():  # fitted before the freeze: A (index 0) gets all the fitted share
        np.testing.assert_allclose(w[0], COMBO_SHRINK * COMBO_PRIOR[0] + (1 - COMBO_SHRINK))
    rolling = PoolCombo()  # without the freeze the last fit sees two days of B exact: towards B
    rolling.combine(members, Y, masked, ("m",) * S, origins, 24, 96, 96)
    last = max(k[0] for k in late)
    assert all(rolling.weights[k][0] < late[k][0] - 0.1 for k in late if k[0] == last)


def test_registered_opt_in_with_its_rule():
    from torta.forecast.models import DEFAULT_MODELS, RATIO_MODELS, unavailable

    assert MODELS["PoolCombo"].members == COMBO_MEMBERS
    assert "PoolCombo" not in DEFAULT_MODELS and "PoolCombo" not in RATIO_MODELS
    assert unavailable("PoolCombo") is None
    assert selection_rule(COMBO_MODELS) == (0.30, ("SeasonalNaive",), "PoolCombo")
    assert selection_rule(DEFAULT_MODELS) == (0.10, (), None)
    with pytest.raises(ValueError, match="shrink must be within 0-1, got 2"):
        PoolCombo(shrink=2)


def test_bench_forecast_models_option():
    import json

    from click.testing import CliRunner

    from torta.commands.bench import bench_forecast

    r = CliRunner().invoke(bench_forecast, ["--workloads", "servegen-small-14d", "--regions", "0",
                                            "--horizon", "4", "--jobs", "1", "--models",
                                            "SeasonalNaive,Naive,PoolCombo", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["models"] == ["SeasonalNaive", "Naive", "PoolCombo"]
    assert set(doc["cases"][0]["models"]) <= {"Naive", "PoolCombo"}
    bad = CliRunner().invoke(bench_forecast, ["--models", "Naive,NoSuchModel", "--json"])
    assert bad.exit_code != 0 and "NoSuchModel" in str(bad.exception)
