"""Group `demand`: regional demand per slot, the forecasters' backtest and the
forecasts the macro planner consumes, per multi-day workload."""

import dagster as dg
import polars as pl

from pipelines.lineage import content_version, file_url, table_value, tidy
from pipelines.partitions import workload_partitions
from pipelines.resources import WarehouseResource
from torta.config import EVAL_PROTOCOL
from torta.forecast import backtest, forecast, to_history
from torta.workload import get_spec, regional_rates

SEED = 0
HORIZON_SLOTS = 4  # 1 hour of 15-minute slots
BACKTEST_HORIZON_SLOTS = 24  # 6 hours: the backtest scores 1, 3 and 6 h from one run
FORECAST_FROM_DAY = EVAL_PROTOCOL.first_test_day - 1  # the days before the first test day are history


@dg.asset(partitions_def=workload_partitions, group_name="demand", kinds={"parquet"})
def demand(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Requests per 15-minute slot, origin region and model of the workload (seed 0), with the
    ServeGen collection-gap mask."""
    name = context.partition_key
    rates = regional_rates(name, None, SEED).with_columns(workload=pl.lit(name), seed=pl.lit(SEED))
    path = warehouse.write("demand", name, rates)
    warehouse.refresh_views()
    return dg.MaterializeResult(metadata={
        "rows": rates.height, "series": rates.select("origin_region", "model").n_unique(),
        "requests": int(rates["requests"].sum()), "masked_slots": int(rates["masked"].sum()),
        "scenario": get_spec(name).scenario, "parquet": file_url(path),
    }, data_version=content_version(path))


@dg.asset(partitions_def=workload_partitions, group_name="demand", deps=[demand], kinds={"statsforecast"},
          check_specs=[dg.AssetCheckSpec("selected_beats_seasonal_naive", asset="demand_backtest",
                                         partitions_def=workload_partitions,
                                         description="per-series selection has lower MASE than SeasonalNaive")])
def demand_backtest(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Rolling-origin backtest (last 3 days held out, 6-hour horizon) of every forecaster, with
    per-series and per-step selection on the day before the holdout and reconciliation; one row
    per model and reporting horizon (1, 3, 6 h) with MASE ratios against Naive and
    SeasonalNaive, coverage for the selected forecast."""
    name = context.partition_key
    report = backtest(to_history(warehouse.read("demand", name)), horizon=BACKTEST_HORIZON_SLOTS,
                      holdout_days=3)
    rows = []
    for hs in report.extra["horizon_scores"]:  # 1, 3 and 6 h, each pooled over steps 1..h
        for m, mase in hs["mase_by_model"].items():
            rows.append({"model": m, "horizon": hs["horizon"], "hours": float(hs["hours"]),
                         "mase": mase, "ratio_naive": mase / hs["mase_Naive"],
                         "ratio_seasonal_naive": mase / hs["mase_SeasonalNaive"]})
        rows.append({"model": "selected", "horizon": hs["horizon"], "hours": float(hs["hours"]),
                     "mase": hs["mase"], "smape": hs["smape"], "coverage_80": hs["coverage_80"],
                     "coverage_95": hs["coverage_95"], "ratio_naive": hs["ratio_Naive"],
                     "ratio_seasonal_naive": hs["ratio_SeasonalNaive"], "n_points": hs["n_points"]})
    fit_s = {m["model"]: m["fit_s"] for m in report.models}
    table = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        fit_s=pl.col("model").replace_strict(fit_s, default=None, return_dtype=pl.Float64),
        workload=pl.lit(name))
    warehouse.write("backtests", name, table)
    warehouse.write("backtest_choices", name, pl.DataFrame(
        [{k: v for k, v in p.items() if k != "models_by_step"} for p in report.per_series])
        .with_columns(workload=pl.lit(name)))
    warehouse.refresh_views()
    snaive = report.model_row("SeasonalNaive")["mase"]
    sel = report.selected["mase"]
    return dg.MaterializeResult(
        metadata={**tidy({"selected_mase": sel, "seasonal_naive_mase": snaive,
                          "naive_mase": report.model_row("Naive")["mase"],
                          "coverage_80": report.selected["coverage_80"],
                          **{f"selected_over_naive_{int(hs['hours'])}h": hs["ratio_Naive"]
                             for hs in report.extra["horizon_scores"]}}),
                  "models": table_value(table.select([c for c in ("model", "hours", "mase", "ratio_naive",
                                                                  "ratio_seasonal_naive", "coverage_80", "fit_s")
                                                      if c in table.columns]))},
        check_results=[dg.AssetCheckResult(
            check_name="selected_beats_seasonal_naive", passed=bool(sel < snaive),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"selected_mase": sel, "seasonal_naive_mase": snaive})],
    )


@dg.asset(partitions_def=workload_partitions, group_name="demand", deps=[demand], kinds={"statsforecast"})
def demand_forecasts(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Forecast of the first test day (day 12) from days 1-11, every series, with intervals and the
    actual demand beside it."""
    name = context.partition_key
    hist = to_history(warehouse.read("demand", name))
    season = 96
    cut = FORECAST_FROM_DAY * season
    fc = forecast(hist.filter(pl.col("slot") < cut), season)
    actual = hist.filter((pl.col("slot") >= cut) & (pl.col("slot") < cut + season)).select(
        "series", "slot", pl.col("y").alias("actual"))
    out = fc.join(actual, on=["series", "slot"], how="left").with_columns(workload=pl.lit(name))
    path = warehouse.write("forecasts", name, out)
    warehouse.refresh_views()
    err = (out["mean"] - out["actual"]).abs().mean()
    return dg.MaterializeResult(metadata={"rows": out.height, "mae_requests_per_slot": float(f"{err or 0.0:.4g}"),
                                          "parquet": file_url(path)},
                                data_version=content_version(path))
