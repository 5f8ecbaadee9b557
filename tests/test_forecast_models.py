"""The models that use what persistence cannot (daily shape x level, leaders, the global GBM), the
per-step selection, the origin x model reconciliation, and running on when a library is missing."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from torta.forecast import backtest, forecast
from torta.forecast.backtest import ModelUnavailableWarning
from torta.forecast.hierarchy import TOTAL, build_hierarchy, mint_shrink_projection, reconcile
from torta.forecast.models import MODELS, SeasonalScaled, unavailable
from torta.forecast.panel_models import Pooled, estimate_leads, estimate_offsets
from torta.forecast.pipeline import select, step_buckets


def _shifted_panel(n_slots=6 * 96, lead=3, seed=0):
    """Series 'w|m' is series 'e|m' `lead` slots later, at half the volume, plus a daily shape."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_slots + lead)
    base = 100 * (1 + 0.4 * np.sin(2 * np.pi * t / 96)) * np.exp(np.cumsum(rng.normal(0, 0.03, t.size)))
    east = base[lead:]
    west = 0.5 * base[:-lead]
    return np.vstack([east, west])  # row 0: 'e|m' leads row 1: 'w|m' by `lead`


def _frame(Y, names):
    S, T = Y.shape
    return pl.DataFrame({"series": [n for n in names for _ in range(T)],
                         "slot": np.tile(np.arange(T), S), "y": Y.ravel(),
                         "masked": [False] * (S * T)})


def test_seasonal_scaled_is_the_daily_shape_times_the_recent_ratio():
    season, days, w = 4, 2, 2
    y = np.array([1.0, 2, 3, 4, 2, 4, 6, 8, 3, 6, 9, 12.0])
    m = SeasonalScaled(days=days, window=w)
    f = m.rolling(y, np.array([10]), 3, 4, season)
    # shape at slots 10, 11, 12: means of 2 days back (6+3)/2... slot 10: y[6], y[2] -> 4.5
    shape = np.array([(y[6] + y[2]) / 2, (y[7] + y[3]) / 2, (y[8] + y[4]) / 2])
    ref = (y[4] + y[0]) / 2 + (y[5] + y[1]) / 2  # shape at the last 2 observed slots 8, 9
    np.testing.assert_allclose(f[0], shape * (y[8] + y[9]) / ref)


def test_leads_are_found_and_the_leader_forecast_is_exact_within_the_lead():
    Y = _shifted_panel(lead=3)
    masked = np.zeros(Y.shape, bool)
    lead, err = estimate_leads(Y, masked, ("m", "m"), 500, 8, 288)
    assert lead[1, 0] == 3  # 'e' leads 'w' by 3 slots
    assert err[1, 0] < err[0, 1] / 100  # and 'w' does not lead 'e'
    origins = np.arange(500, 560, 4)
    f = MODELS["Leader"]().rolling_panel(Y, masked, ("m", "m"), origins, 5, 96, 96)
    idx = origins[:, None] + np.arange(3)[None, :]
    np.testing.assert_allclose(f[1, :, :3], Y[1, idx], rtol=1e-9)
    # past the lead: the leader's latest view (w at o + 2) for every later step
    np.testing.assert_allclose(f[1, :, 3], Y[1, origins + 2], rtol=1e-9)


def _curve_panel(offsets, weights, n_slots=6 * 96, jump_at=None, jump=1.5):
    """Series s shows one curve at slot t + offsets[s] (fractional: follow-the-sun), times
    weights[s]: a daily wave, times `jump` from curve time `jump_at` on."""
    t = np.arange(n_slots)[None, :] + np.asarray(offsets, float)[:, None]
    c = 100 * (1 + 0.5 * np.sin(2 * np.pi * t / 96))
    if jump_at is not None:
        c = np.where(t >= jump_at, jump * c, c)
    return np.asarray(weights, float)[:, None] * c


def test_offsets_between_regions_are_found_to_a_fraction_of_a_slot():
    offs = np.array([0.0, -2.5, -6.3, 1.7])
    Y = _curve_panel(offs, [1.0, 0.5, 2.0, 1.0])
    delta, ok = estimate_offsets(Y, np.zeros(Y.shape, bool), ("m", "m", "m", "x"), 500, 16, 288)
    assert ok[:3, :3].all() and not ok[:3, 3].any() and not ok[3, :3].any()
    np.testing.assert_allclose(delta[:3, :3], offs[:3, None] - offs[None, :3], atol=0.1)


def test_pooled_reads_the_east_and_scales_by_the_pools_latest_level():
    """A level jump that the eastern series has shown for 8 slots while the western one barely
    has: Pooled forecasts the western series at the new level (read from the pool within its
    lead, the pool's daily shape times its new level beyond), its own scaled daily shape does
    not."""
    offs, w = np.array([0.0, -2.5, -6.3]), np.array([1.0, 0.5, 2.0])
    o = 5 * 96 + 28
    Y = _curve_panel(offs, w, jump_at=o - 8)
    truth = _curve_panel(offs, w, n_slots=o + 12, jump_at=o - 8)[2, o:]
    masked = np.zeros(Y.shape, bool)
    f = Pooled(days=3, window=4).rolling_panel(Y, masked, ("m",) * 3, np.array([o]), 12, 96, 96)
    err = np.abs(f[2, 0] - truth) / truth
    assert err.max() < 0.03
    own = SeasonalScaled(days=3, window=4).rolling(Y[2], np.array([o]), 12, 96, 96)[0]
    assert (np.abs(own - truth) / truth)[6:].min() > 0.1
    # known offsets give the same forecast up to the estimates' error
    known = Pooled(days=3, window=4).rolling_panel(Y, masked, ("m",) * 3, np.array([o]), 12, 96,
                                                   96, offsets=offs)
    assert (np.abs(known[2, 0] - truth) / truth).max() < 0.03


def test_groups_keep_models_apart():
    Y = _shifted_panel(lead=3)
    _, err = estimate_leads(Y, np.zeros(Y.shape, bool), ("a", "b"), 500, 8, 288)
    assert np.isinf(err).all()


@pytest.mark.parametrize("name", ["Leader", "GBM", "Pooled", "GBMPooled", "PoolRatioGBM"])
def test_panel_models_read_only_the_past(name):
    Y = _shifted_panel(n_slots=5 * 96, lead=3)
    masked = np.zeros(Y.shape, bool)
    origins = np.arange(3 * 96, 5 * 96 - 8, 4)
    base = MODELS[name]().rolling_panel(Y, masked, ("m", "m"), origins, 8, 96, 96)
    t0 = 4 * 96 + 10
    Y2 = Y.copy()
    Y2[:, t0:] = Y2[:, t0:] * 3 + 500
    pert = MODELS[name]().rolling_panel(Y2, masked, ("m", "m"), origins, 8, 96, 96)
    keep = origins <= t0
    np.testing.assert_array_equal(base[:, keep], pert[:, keep])
    assert not np.array_equal(base[:, ~keep], pert[:, ~keep])


def test_gbm_beats_the_last_value_on_a_lead_and_a_daily_shape():
    Y = _shifted_panel(n_slots=6 * 96, lead=6)
    masked = np.zeros(Y.shape, bool)
    origins = np.arange(5 * 96, 6 * 96 - 8, 4)
    f = MODELS["GBM"]().rolling_panel(Y, masked, ("m", "m"), origins, 8, 96, 96)
    idx = origins[:, None] + np.arange(8)[None, :]
    naive = np.abs(Y[1, idx] - Y[1, origins - 1][:, None]).mean()
    assert np.abs(Y[1, idx] - f[1]).mean() < 0.7 * naive


def test_selection_is_per_series_and_step_bucket():
    assert step_buckets(6).tolist() == [0, 1, 2, 2, 3, 3]
    y = np.zeros((1, 3, 6))
    fc = {"A": np.zeros((1, 3, 6)), "B": np.zeros((1, 3, 6))}
    fc["A"][..., 2:] = 5.0  # A exact on steps 1-2, B exact on steps 3-6
    fc["B"][..., :2] = 5.0
    ok = np.ones((1, 3, 6), bool)
    assert select(fc, y, ok, ("A", "B"), step_buckets(6)).tolist() == [[0, 0, 1, 1]]
    ok[..., 1] = False  # no point for step 2: Naive, or the first model without Naive
    assert select(fc, y, ok, ("B", "A"), step_buckets(6)).tolist() == [[1, 0, 0, 0]]
    with_naive = {"Naive": fc["B"], "A": fc["A"]}
    assert select(with_naive, y, ok, ("A", "Naive"), step_buckets(6)).tolist() == [[0, 1, 1, 1]]


def test_hierarchy_and_mint_shrink_keep_coherent_forecasts():
    h = build_hierarchy(("a|m1", "a|m2", "b|m1", "b|m2"))
    assert h.nodes[:5] == (TOTAL, "a|*", "b|*", "*|m1", "*|m2")
    assert h.S.shape == (9, 4)
    np.testing.assert_array_equal(h.S[1], [1, 1, 0, 0])
    np.testing.assert_array_equal(h.S[3], [1, 0, 1, 0])
    one = build_hierarchy(("a|m", "b|m"))  # one model: origin totals are the series themselves
    assert one.nodes == (TOTAL, "a|m", "b|m")
    rng = np.random.default_rng(0)
    bottom_true = rng.uniform(10, 20, (4, 60))
    y_true = h.S @ bottom_true
    y_fit = y_true + rng.normal(0, 1, y_true.shape)
    P = mint_shrink_projection(h, y_true, y_fit)
    np.testing.assert_allclose(P @ h.S, np.eye(4), atol=1e-8)  # coherent forecasts stay
    b = rng.uniform(10, 20, (4, 3, 5))
    np.testing.assert_allclose(reconcile(P, np.einsum("nb,bij->nij", h.S, b)), b, rtol=1e-8)


def test_backtest_reconciles_and_reports_horizon_scores():
    Y = np.vstack([_shifted_panel(n_slots=7 * 96, lead=3, seed=s) for s in (1, 2)])
    names = ("e|m1", "w|m1", "e|m2", "w|m2")
    rep = backtest(_frame(Y, names), horizon=12, holdout_days=1,
                   models=("Naive", "SeasonalNaive", "Leader"))
    assert rep.config["reconciliation"].startswith("MinTrace mint_shrink over 9 nodes")
    assert [h["hours"] for h in rep.extra["horizon_scores"]] == [1, 3]
    h1, h3 = rep.extra["horizon_scores"]
    assert h3["mase"] == pytest.approx(rep.selected["mase"])
    assert h1["ratio_Naive"] == pytest.approx(h1["mase"] / h1["mase_by_model"]["Naive"])
    # the leaders make the 'w' series (a third of the volume) exact for 3 steps
    assert h1["ratio_Naive"] < 0.85 and h3["ratio_Naive"] < 0.85
    assert all(len(p["models_by_step"]) == 12 for p in rep.per_series)
    plain = backtest(_frame(Y, names), horizon=12, holdout_days=1, reconcile=False,
                     models=("Naive", "SeasonalNaive", "Leader"))
    assert plain.config["reconciliation"] == "none"
    assert plain.extra["selected_unreconciled"]["mase"] == pytest.approx(plain.selected["mase"])


def test_a_library_that_fails_to_import_leaves_the_others_working(monkeypatch):
    Y = _shifted_panel(n_slots=6 * 96, lead=3)
    hist = _frame(Y, ("e|m", "w|m"))
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # `import lightgbm` raises ImportError
    assert "lightgbm" in unavailable("GBM")
    with pytest.warns(ModelUnavailableWarning, match="GBM needs the Python package 'lightgbm'"):
        rep = backtest(hist, horizon=4, holdout_days=1, models=("Naive", "Leader", "GBM"))
    assert [m["model"] for m in rep.models] == ["Naive", "Leader"]
    assert set(rep.extra["skipped_models"]) == {"GBM"}
    with pytest.warns(ModelUnavailableWarning):
        fc = forecast(hist, 4, "auto", models=("Naive", "Leader", "GBM"))
    assert fc.height == 8 and set(fc["model"]) <= {"Naive", "Leader"}
    with pytest.raises(ValueError, match="lightgbm"):
        forecast(hist, 4, "GBM")
    monkeypatch.setitem(sys.modules, "hierarchicalforecast.methods", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelUnavailableWarning)
        rep = backtest(hist, horizon=4, holdout_days=1, models=("Naive", "Leader", "GBM"))
    assert rep.config["reconciliation"].startswith("skipped: reconciliation needs")
    assert rep.selected["n_points"] > 0


def test_cli_backtest_reports_horizon_scores():
    from torta.cli import main

    r = CliRunner().invoke(main, ["forecast", "backtest", "--workload", "servegen-small-14d",
                                  "--horizon", "12", "--models", "Naive,SeasonalNaive,Leader",
                                  "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [h["hours"] for h in doc["horizon_scores"]] == [1, 3]
    for h in doc["horizon_scores"]:
        assert 0 < h["coverage_80"] <= h["coverage_95"] <= 1
        assert h["ratio_SeasonalNaive"] > 0 and h["ratio_Naive"] > 0
    assert doc["config"]["reconciliation"].startswith("MinTrace mint_shrink")


def test_report_skill_figure_from_horizon_scores(tmp_path):
    from matplotlib import image as mpimg

    from torta.report import figures

    Y = _shifted_panel(n_slots=7 * 96, lead=3)
    rep = backtest(_frame(Y, ("e|m", "w|m")), horizon=24, holdout_days=1,
                   models=("Naive", "SeasonalNaive", "Leader"))
    scores = pl.DataFrame([{"hours": float(h["hours"]), "ratio_naive": h["ratio_Naive"],
                            "ratio_seasonal_naive": h["ratio_SeasonalNaive"],
                            "coverage_80": h["coverage_80"], "coverage_95": h["coverage_95"]}
                           for h in rep.extra["horizon_scores"]])
    assert scores["hours"].to_list() == [1.0, 3.0, 6.0]
    img = mpimg.imread(figures.forecast_skill(scores, tmp_path / "skill.png"))
    assert img.shape[0] > 200 and len(np.unique(img.reshape(-1, img.shape[-1])[:, :3].round(2),
                                                axis=0)) > 20


def test_selection_margin_prefers_the_buckets_overall_best_unless_clearly_beaten():
    y = np.zeros((2, 3, 2))
    ok = np.ones((2, 3, 2), bool)
    fc = {"A": np.ones((2, 3, 2)), "B": np.ones((2, 3, 2))}
    fc["A"][0] = 0.95  # series 0: A 5 % better than B; series 1: A twice B's error
    fc["B"][1] = 0.5
    scales = np.ones(2)
    b = step_buckets(2)
    assert select(fc, y, ok, ("A", "B"), b).tolist() == [[0, 0], [1, 1]]
    # B is the better model over both series (0.5 + 1 < 0.95 + 1): series 0 keeps A only when
    # 5 % is more than the margin
    assert select(fc, y, ok, ("A", "B"), b, scales, 0.1).tolist() == [[1, 1], [1, 1]]
    assert select(fc, y, ok, ("A", "B"), b, scales, 0.04).tolist() == [[0, 0], [1, 1]]
    fc["A"][0] = 0.5  # now 50 % better on series 0: kept against the overall best
    assert select(fc, y, ok, ("A", "B"), b, scales, 0.1).tolist() == [[0, 0], [1, 1]]


def test_selection_default_reference_and_excluded_models():
    """A default model is the margin rule's reference even where another is the bucket's best;
    an excluded model is never chosen, though it is the best; the backtest's rule leaves
    SeasonalNaive out only where a daily-shape model is a candidate."""
    from torta.forecast.pipeline import select_exclude

    y = np.zeros((2, 3, 2))
    ok = np.ones((2, 3, 2), bool)
    fc = {"A": np.full((2, 3, 2), 1.0), "B": np.full((2, 3, 2), 0.5), "C": np.full((2, 3, 2), 0.6),
          "SN": np.full((2, 3, 2), 0.1)}
    fc["A"][1] = 0.2  # series 1: A beats C by 67 %
    scales = np.ones(2)
    b = step_buckets(2)
    ms = ("A", "B", "C", "SN")
    # B is the bucket's best over both series (SN excluded); with C as the reference, series 0
    # takes C (B is only 17 % better), series 1 keeps its own best, A
    assert select(fc, y, ok, ms, b, scales, 0.3, ("SN",)).tolist() == [[1, 1], [0, 0]]
    assert select(fc, y, ok, ms, b, scales, 0.3, ("SN",), "C").tolist() == [[2, 2], [0, 0]]
    assert select(fc, y, ok, ms, b).tolist() == [[3, 3], [3, 3]]
    assert select_exclude(("Naive", "SeasonalNaive", "Leader")) == ()
    assert select_exclude(("Naive", "SeasonalNaive", "PoolRatioGBM")) == ("SeasonalNaive",)


def test_leader_gbm_pooled_is_the_mean_of_its_members_each_computed_once():
    from torta.forecast.data import to_panel
    from torta.forecast.pipeline import run_models

    Y = _shifted_panel(n_slots=5 * 96, lead=3)
    panel = to_panel(_frame(Y, ("e|m", "w|m")), 96)
    origins = np.arange(3 * 96, 5 * 96 - 8, 4)
    fc, secs = run_models(panel, origins, 8, ("LeaderGBMPooled", "Leader"), 96, 96)
    alone, _ = run_models(panel, origins, 8, ("GBM", "Pooled"), 96, 96)
    np.testing.assert_allclose(fc["LeaderGBMPooled"],
                               (fc["Leader"] + alone["GBM"] + alone["Pooled"]) / 3)
    assert list(fc) == ["LeaderGBMPooled", "Leader"] and secs["LeaderGBMPooled"] >= secs["Leader"]


def test_pools_leave_the_hierarchys_aggregates_out():
    from torta.forecast.pipeline import groups_of, pool_groups

    series = ("*|*", "*|m1", "a|*", "a|m1", "b|m1", "b|*")
    assert groups_of(series) == ("*", "m1", "*", "m1", "m1", "*")
    assert pool_groups(series) == ("*|*", "*|m1", "*", "m1", "m1", "*")


def test_the_ratio_models_rule_applies_only_with_the_opt_in_candidates():
    """The default candidates keep the selection they had (10 % to the bucket's best, nothing
    excluded: the forecasts the replays plan on are unchanged); RATIO_MODELS bring their own rule."""
    from torta.forecast.models import DEFAULT_MODELS, RATIO_MODELS
    from torta.forecast.pipeline import SELECT_MARGIN, SELECT_MARGIN_RATIO, selection_rule

    assert "PoolRatioGBM" not in DEFAULT_MODELS and RATIO_MODELS[:len(DEFAULT_MODELS)] == DEFAULT_MODELS
    assert selection_rule(DEFAULT_MODELS) == (SELECT_MARGIN, (), None) and SELECT_MARGIN == 0.10
    assert selection_rule(RATIO_MODELS) == (SELECT_MARGIN_RATIO, ("SeasonalNaive",), "PoolRatioLGP")
