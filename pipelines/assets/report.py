"""Group `report`: the HTML report over the latest batch of replays."""

import dagster as dg

from pipelines.assets.forecast import demand_forecasts
from pipelines.assets.replay import replay_run
from pipelines.assets.views import warehouse_views
from pipelines.report import build_report
from pipelines.resources import WarehouseResource


@dg.asset(group_name="report", deps=[replay_run, demand_forecasts, warehouse_views], kinds={"html"})
def report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """HTML report with figures for the latest batch of runs (warehouse/report/index.html)."""
    index = build_report(warehouse.db_path)
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(index))})
