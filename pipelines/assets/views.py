"""Group `warehouse`: the DuckDB views over every table's Parquet partitions and the comparison
views (`warehouse/tables/*.sql`, `warehouse/views/*.sql`)."""

import dagster as dg

from pipelines.assets.fleet import fleet, price_curves, topology
from pipelines.assets.forecast import demand, demand_backtest, demand_forecasts
from pipelines.assets.ingest import requests
from pipelines.assets.replay import replay_run
from pipelines.assets.training import trained_policy
from pipelines.resources import WarehouseResource


@dg.asset(group_name="report", kinds={"duckdb"},
          deps=[requests, topology, fleet, price_curves, demand, demand_backtest, demand_forecasts,
                trained_policy, replay_run])
def warehouse_views(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """(Re)create every view in the warehouse file; metadata lists each view's status."""
    status = warehouse.refresh_views()
    return dg.MaterializeResult(metadata={
        "views_ok": sum(v == "ok" for v in status.values()),
        "views_empty_or_skipped": sum(v != "ok" for v in status.values()),
        "status": dg.MetadataValue.json(status)})
