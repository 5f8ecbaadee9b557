"""Forecasters, backtest metrics (hand-computed), no leakage, the planner API, CLI smoke."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from torta.errors import UnknownNameError
from torta.forecast import FORECAST_SCHEMA, backtest, forecast, to_history
from torta.forecast.metrics import (conformal_quantile, rolling_conformal, seasonal_naive_scale,
                                    smape_terms)
from torta.forecast.models import MODELS
from torta.workload import prepare, regional_rates
from torta.workload.lengths import LengthPool

POOL = LengthPool("test-pool", np.array([1000]), np.array([200]))


@pytest.fixture(scope="module")
def real_history() -> pl.DataFrame:
    """Two real ServeGen m-small regional series (15-min slots, 14 days, gaps masked)."""
    plan = prepare("servegen-small-14d", regions=[("a", -75.0, 2.0), ("b", -120.0, 1.0)],
                   capacity_rps={"llama2-7b": 60.0}, lengths=POOL)
    return to_history(regional_rates("servegen-small-14d", plan=plan))


def _tiny(y, masked=None):
    return pl.DataFrame({"series": ["s"] * len(y), "slot": list(range(len(y))), "y": y,
                         "masked": masked or [False] * len(y)})


def test_metric_building_blocks_by_hand():
    y = np.array([1.0, 2, 3, 4, 3, 2, 5, 4])
    m = np.zeros(8, bool)
    # lag-4 pairs: |3-1|,|2-2|,|5-3|,|4-4| -> mean 1.0
    assert seasonal_naive_scale(y, m, 4) == pytest.approx(1.0)
    m[6] = True  # drops the pair (6, 2)
    assert seasonal_naive_scale(y, m, 4) == pytest.approx(2 / 3)
    np.testing.assert_allclose(smape_terms(np.array([10.0, 0, 0]), np.array([5.0, 0, 2])),
                               [200 * 5 / 15, np.nan, 200.0])
    e = np.arange(1.0, 11.0)  # n = 10: ceil(11 * 0.8) / 10 = 0.9 -> 9th smallest
    assert conformal_quantile(e, 0.8) == 9.0
    assert conformal_quantile(e, 0.95) == 10.0


def test_rolling_conformal_uses_only_observed_earlier_errors():
    err = np.arange(16.0).reshape(8, 2)  # rows = origins 0..7 (step 1), cols = steps
    q = rolling_conformal(err, step=1, window=5, levels=(0.8,), min_points=1)
    # origin 6, step 0: origins 1..5 (o' >= 1, o' < 6): errors 2,4,6,8,10; n=5 -> idx ceil(4.8)=5 -> 10
    assert q[6, 0, 0] == 10.0
    # origin 6, step 1: target o'+1 < 6 -> o' <= 4: origins 1..4: 3,5,7,9 -> idx ceil(4)=4 -> 9
    assert q[6, 1, 0] == 9.0
    assert np.isnan(q[0, 0, 0])  # nothing observed yet
    q8 = rolling_conformal(err, step=1, window=5, levels=(0.8,), min_points=8)
    assert np.isnan(q8).all()


def test_backtest_metrics_match_a_hand_computation():
    rng = np.random.default_rng(1)
    y = (10 + 5 * np.sin(np.arange(24) * np.pi / 2) + rng.integers(0, 4, 24)).tolist()
    rep = backtest(_tiny(y), horizon=1, holdout_days=1, val_days=1, cal_days=1, step=1,
                   slot_s=21600, models=("Naive", "SeasonalNaive"), min_cal_points=2)
    ya = np.array(y)
    # 24 slots of 4 per day: calibration from 12, validation from 16, test from 20
    scale = np.mean(np.abs(ya[4:16] - ya[0:12]))  # seasonal naive before validation
    test = np.arange(20, 24)
    naive_mae = np.mean(np.abs(ya[test] - ya[test - 1]))
    sn_mae = np.mean(np.abs(ya[test] - ya[test - 4]))
    assert rep.model_row("Naive")["mase"] == pytest.approx(naive_mae / scale)
    assert rep.model_row("SeasonalNaive")["mase"] == pytest.approx(sn_mae / scale)
    sm = np.mean(200 * np.abs(ya[test] - ya[test - 1]) / (ya[test] + ya[test - 1]))
    assert rep.model_row("Naive")["smape"] == pytest.approx(sm)
    # selection on validation (slots 16..19) only
    val = np.arange(16, 20)
    pick = "Naive" if np.mean(np.abs(ya[val] - ya[val - 1])) <= np.mean(np.abs(ya[val] - ya[val - 4])) \
        else "SeasonalNaive"
    assert rep.per_series[0]["model"] == pick
    assert rep.selected["mase"] == pytest.approx(rep.model_row(pick)["mase"])
    # coverage by hand for Naive at origin 20..23: relative errors of origins in [o-4, o-1]
    f = ya[11:23]  # naive forecasts for targets 12..23 (origins 12..23)
    rel = np.abs(ya[12:24] - f) / np.maximum(f, 1)
    hits = []
    for o in test:
        i = o - 12
        e = np.sort(rel[i - 4:i])
        qi = min(int(np.ceil(5 * 0.8)) - 1, 3)
        half = e[qi] * max(f[i], 1)
        hits.append(abs(ya[o] - f[i]) <= half)
    assert rep.model_row("Naive")["coverage_80"] == pytest.approx(np.mean(hits))


def test_masked_targets_are_never_scored():
    y = [5.0, 6, 7, 8] * 6
    masked = [False] * 24
    masked[21] = True
    rep = backtest(_tiny(y, masked), horizon=1, holdout_days=1, val_days=1, cal_days=1, step=1,
                   slot_s=21600, models=("Naive",), min_cal_points=2)
    assert rep.n_test_points == 3
    assert rep.model_row("Naive")["n_points"] == 3


@pytest.mark.parametrize("name", ["Naive", "SeasonalNaive", "SeasonalScaled", "EWMA", "AutoETS",
                                  "MSTL", "Ensemble"])
def test_no_leakage_forecast_for_t_ignores_data_at_or_after_t(real_history, name):
    y = real_history.filter(pl.col("series") == "a|llama2-7b")["y"].to_numpy()[:480].copy()
    origins = np.arange(288, 473, 8)
    base = MODELS[name]().rolling(y, origins, 4, 96, 96)
    t0 = 400
    y2 = y.copy()
    y2[t0:] = y2[t0:] * 3 + 1000
    pert = MODELS[name]().rolling(y2, origins, 4, 96, 96)
    keep = origins <= t0
    np.testing.assert_array_equal(base[keep], pert[keep])
    if name != "SeasonalNaive":  # its forecasts from these origins read only y[:o - 92]
        assert not np.array_equal(base[~keep], pert[~keep])


@pytest.mark.parametrize("models", [("Naive", "SeasonalNaive", "EWMA"),
                                    ("Naive", "SeasonalScaled", "Leader", "Pooled")])
def test_selection_does_not_look_at_the_holdout(real_history, models):
    hist = real_history.filter(pl.col("slot") < 7 * 96)
    rep = backtest(hist, horizon=4, holdout_days=2, models=models)
    test_start = rep.config["test_start"]
    noisy = hist.with_columns(pl.when(pl.col("slot") >= test_start)
                              .then(pl.col("y") * 0 + 1e6).otherwise(pl.col("y")).alias("y"))
    rep2 = backtest(noisy, horizon=4, holdout_days=2, models=models)
    assert [p["model"] for p in rep.per_series] == [p["model"] for p in rep2.per_series]
    assert [p["models_by_step"] for p in rep.per_series] == \
        [p["models_by_step"] for p in rep2.per_series]
    assert [m["val_mase"] for m in rep.models] == [m["val_mase"] for m in rep2.models]
    assert rep.selected["mase"] != rep2.selected["mase"]  # the change did reach the test days


def test_smoke_real_slice_beats_seasonal_naive(real_history):
    hist = real_history.filter(pl.col("slot") < 8 * 96)
    rep = backtest(hist, horizon=4, holdout_days=2,
                   models=("SeasonalNaive", "Naive", "EWMA", "AutoETS"))
    assert rep.n_series == 2 and rep.n_test_points > 300
    assert rep.selected["mase"] < rep.model_row("SeasonalNaive")["mase"]
    for r in rep.models + [rep.selected]:
        assert 0 <= r["coverage_80"] <= r["coverage_95"] <= 1
        assert np.isfinite(r["mase"]) and np.isfinite(r["smape"])
    assert rep.model_row("AutoETS")["fit_s"] > 0


def test_forecast_api_shape_bounds_and_models(real_history):
    hist = real_history.filter(pl.col("slot") < 5 * 96)
    fc = forecast(hist, 8, "auto", models=("Naive", "SeasonalNaive", "EWMA"))
    assert dict(fc.schema) == FORECAST_SCHEMA
    assert fc.height == 16
    assert sorted(fc["series"].unique()) == ["a|llama2-7b", "b|llama2-7b"]
    assert fc.filter(pl.col("series") == "a|llama2-7b")["slot"].to_list() == list(range(480, 488))
    assert (fc["lo95"] <= fc["lo80"]).all() and (fc["lo80"] <= fc["mean"]).all()
    assert (fc["mean"] <= fc["hi80"]).all() and (fc["hi80"] <= fc["hi95"]).all()
    assert (fc["hi80"] > fc["lo80"]).all()
    one = forecast(hist, 3, "Naive")
    last = hist.filter(pl.col("slot") == 479).sort("series")["y"].to_list()
    assert one.group_by("series").agg(pl.col("mean").first()).sort("series")["mean"].to_list() == last
    per = forecast(hist, 2, {"a|llama2-7b": "SeasonalNaive", "b|llama2-7b": "Naive"})
    assert dict(per.group_by("series").agg(pl.col("model").first()).iter_rows()) == \
        {"a|llama2-7b": "SeasonalNaive", "b|llama2-7b": "Naive"}
    with pytest.raises(UnknownNameError):
        forecast(hist, 2, "Prophet")
    with pytest.raises(ValueError):
        forecast(hist, 0)


def test_history_validation():
    with pytest.raises(ValueError, match="duplicate"):
        backtest(pl.DataFrame({"series": ["s", "s"], "slot": [1, 1], "y": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="too short"):
        backtest(_tiny([1.0] * 30))
    with pytest.raises(UnknownNameError):
        backtest(_tiny([1.0] * 30), models=("Nope",))


def test_cli_workload_list_and_backtest_json():
    from torta.cli import main

    r = CliRunner().invoke(main, ["workload", "list", "--json"])
    assert r.exit_code == 0, r.output
    names = [w["name"] for w in json.loads(r.stdout)]
    assert names == ["servegen-large-14d", "servegen-mid-14d", "servegen-mix-14d",
                     "servegen-small-14d"]
    r = CliRunner().invoke(main, ["forecast", "backtest", "--workload", "servegen-small-14d",
                                  "--horizon", "4", "--horizons", "4,12",
                                  "--models", "Naive,SeasonalNaive", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [m["model"] for m in doc["models"]] == ["Naive", "SeasonalNaive"]
    for k in ("mase", "smape", "coverage_80", "coverage_95"):
        assert isinstance(doc["selected"][k], float)
    assert {p["model"] for p in doc["per_series"]} <= {"Naive", "SeasonalNaive"}
    assert [h["horizon"] for h in doc["horizons"]] == [4, 12]


def test_forecast_rolling_uses_only_the_past(real_history):
    from torta.forecast import forecast_rolling

    hist = real_history.filter(pl.col("slot") < 6 * 96)
    kw = dict(start_slot=5 * 96, end_slot=5 * 96 + 40, step=4,
              models=("Naive", "SeasonalNaive", "EWMA"))
    base = forecast_rolling(hist, 4, "auto", **kw)
    t0 = 5 * 96 + 20
    changed = hist.with_columns(pl.when(pl.col("slot") >= t0).then(pl.col("y") * 5 + 99)
                                .otherwise(pl.col("y")).alias("y"))
    pert = forecast_rolling(changed, 4, "auto", **kw)
    early = pl.col("origin_slot") <= t0
    assert base.filter(early).equals(pert.filter(early))
    assert not base.filter(~early).equals(pert.filter(~early))
    assert base["origin_slot"].unique().sort().to_list() == list(range(480, 521, 4))
    one = forecast(hist.filter(pl.col("slot") < 480), 4, "auto",
                   models=("Naive", "SeasonalNaive", "EWMA"))
    first = base.filter(pl.col("origin_slot") == 480).drop("origin_slot")
    assert one.sort("series", "slot").equals(first.sort("series", "slot"))


def test_parallel_backtest_is_identical(real_history):
    hist = real_history.filter(pl.col("slot") < 6 * 96)
    kw = dict(horizon=4, holdout_days=1, models=("Naive", "EWMA"))
    one = backtest(hist, **kw)
    two = backtest(hist, n_jobs=2, **kw)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "fit_s"} for r in rows]  # noqa: E731
    assert strip(one.models) == strip(two.models)
    assert one.per_series == two.per_series


def test_report_is_strict_json_when_validation_is_all_masked():
    y = [5.0, 6, 7, 8] * 6
    masked = [False] * 16 + [True] * 4 + [False] * 4  # the whole validation day is a gap
    rep = backtest(_tiny(y, masked), horizon=1, holdout_days=1, val_days=1, cal_days=1, step=1,
                   slot_s=21600, models=("Naive", "SeasonalNaive"), min_cal_points=2)
    doc = json.dumps(rep.to_dict(), allow_nan=False)
    assert json.loads(doc)["per_series"][0]["val_points"] == 0


@pytest.mark.slow
def test_bench_forecast_smoke():
    from torta.commands.bench import bench_forecast

    r = CliRunner().invoke(bench_forecast, ["--workloads", "servegen-small-14d", "--no-rolling",
                                            "--regions", "0", "--horizon", "4", "--jobs", "1",
                                            "--json"])
    assert r.exit_code == 0, r.output
    case = json.loads(r.stdout)["cases"][0]
    assert case["series"] == 12 and case["wall_s"] > 0 and case["cpu_s"] > 0


def test_statsforecast_frontend_on_polars_matches_our_models(real_history):
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS as SFAutoETS

    from torta.forecast.data import freq_string, to_statsforecast

    hist = real_history.filter(pl.col("slot") < 4 * 96)
    df = to_statsforecast(hist)
    assert freq_string(900) == "15m" and freq_string(3600) == "1h"
    sf = StatsForecast(models=[SFAutoETS(season_length=1, model="ZZN")], freq="15m")
    got = sf.forecast(df=df, h=4).sort("unique_id", "ds")
    assert isinstance(got, pl.DataFrame)
    ours = forecast(hist, 4, "AutoETS").sort("series", "slot")
    np.testing.assert_allclose(got["AutoETS"].to_numpy(), ours["mean"].to_numpy(), rtol=1e-6)
