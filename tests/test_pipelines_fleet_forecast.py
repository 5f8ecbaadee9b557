"""The fleet, workload and forecast groups, materialized for real into a warehouse under tmp_path."""

import dagster as dg
import polars as pl

from pipelines import warehouse as wh
from pipelines.assets import fleet, forecast
from pipelines.resources import WarehouseResource


def test_fleet_group_materializes_abilene(warehouse_db):
    res = dg.materialize([fleet.topology, fleet.fleet, fleet.price_curves], partition_key="abilene",
                         resources={"warehouse": WarehouseResource(database=str(warehouse_db))})
    assert res.success
    regions = wh.read_table(warehouse_db, "regions", "abilene")
    servers = wh.read_table(warehouse_db, "servers", "abilene")
    assert regions.height == 12
    assert 0 < servers.height <= 50
    q = wh.query(warehouse_db, "select count(*) as n, min(latency_ms) as lo from latency where scenario = $s",
                 {"s": "abilene"})
    assert q["n"][0] == 144 and q["lo"][0] == 0.0
    hours = wh.query(warehouse_db, "select count(distinct hour_utc) as h from prices")["h"][0]
    assert hours == 8760


def test_workload_demand_and_backtest_check(warehouse_db):
    res = dg.materialize([forecast.demand, forecast.demand_backtest], partition_key="servegen-small-14d",
                         resources={"warehouse": WarehouseResource(database=str(warehouse_db))})
    assert res.success
    demand = wh.read_table(warehouse_db, "demand", "servegen-small-14d")
    assert demand["slot"].max() == 14 * 96 - 1
    assert set(demand["model"].unique()) == {"llama2-7b"}
    (check,) = res.get_asset_check_evaluations()
    assert check.check_name == "selected_beats_seasonal_naive"
    bt = wh.read_table(warehouse_db, "backtests", "servegen-small-14d")
    six = bt.filter(pl.col("horizon") == 24)
    sel = six.filter(pl.col("model") == "selected")["mase"][0]
    snaive = six.filter(pl.col("model") == "SeasonalNaive")["mase"][0]
    assert check.passed == (sel < snaive)
    # one row per model and reporting horizon (1, 3, 6 h), ratios against both baselines
    assert sorted(bt["hours"].unique().to_list()) == [1.0, 3.0, 6.0]
    selected = bt.filter(pl.col("model") == "selected").sort("hours")
    assert selected["ratio_naive"].to_list() == (selected["mase"] / bt.filter(
        pl.col("model") == "Naive").sort("hours")["mase"]).to_list()
    assert ((selected["coverage_80"] > 0) & (selected["coverage_80"] <= selected["coverage_95"])).all()
