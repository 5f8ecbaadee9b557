"""Group `demand`: regional demand per slot, the forecasters' backtest and the
forecasts the macro planner consumes, per multi-day workload."""

import dagster as dg
import polars as pl

from pipelines.lineage import content_version, file_url, table_value, tidy
from pipelines.partitions import workload_partitions
from pipelines.resources import WarehouseResource
from torta.forecast import backtest, forecast, to_history
from torta.workload import get_spec, regional_rates

SEED = 0
HORIZON_SLOTS = 4  # 1 hour of 15-minute slots
FORECAST_FROM_DAY = 11  # days 1-11 are history; day 12 is the first test day (DESIGN.md)


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
    """Rolling-origin backtest (last 3 days held out, 1-hour horizon) of every forecaster, with
    per-series selection on the day before the holdout."""
    name = context.partition_key
    report = backtest(to_history(warehouse.read("demand", name)), horizon=HORIZON_SLOTS, holdout_days=3)
    models = pl.DataFrame(report.models).with_columns(workload=pl.lit(name), horizon=pl.lit(HORIZON_SLOTS))
    selected = pl.DataFrame([{"model": "selected", **report.selected}]).with_columns(
        workload=pl.lit(name), horizon=pl.lit(HORIZON_SLOTS))
    warehouse.write("backtests", name, pl.concat([models, selected], how="diagonal_relaxed"))
    warehouse.write("backtest_choices", name, pl.DataFrame(report.per_series).with_columns(workload=pl.lit(name)))
    warehouse.refresh_views()
    snaive = report.model_row("SeasonalNaive")["mase"]
    sel = report.selected["mase"]
    return dg.MaterializeResult(
        metadata={**tidy({"selected_mase": sel, "seasonal_naive_mase": snaive,
                          "naive_mase": report.model_row("Naive")["mase"],
                          "coverage_80": report.selected["coverage_80"]}),
                  "models": table_value(models.select([c for c in ("model", "mase", "smape", "coverage_80",
                                                                   "fit_s") if c in models.columns]))},
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
