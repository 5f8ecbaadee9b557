"""Group `report`: the HTML report over the latest batch of replays."""

import dagster as dg

from pipelines import warehouse as wh
from pipelines.assets.forecast import demand_forecasts
from pipelines.assets.replay import replay_run
from pipelines.assets.views import warehouse_views
from pipelines.lineage import file_url, table_value
from pipelines.report import build_report
from pipelines.resources import WarehouseResource

COMPARISON_COLUMNS = ("policy", "seeds", "response_mean_s", "response_mean_s_ci95", "response_p95_s", "load_std",
                      "cost_usd", "switches", "batch")


@dg.asset(group_name="report", deps=[replay_run, demand_forecasts, warehouse_views], kinds={"html"})
def report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """HTML report with figures for the latest batch of runs (warehouse/report/index.html); the
    metadata shows its comparison table."""
    index = build_report(warehouse.db_path)
    comparison = wh.query(warehouse.db_path, "select * from policy_comparison")
    cols = [c for c in COMPARISON_COLUMNS if c in comparison.columns]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(index)), "open": file_url(index),
        "policies": comparison.height,
        "comparison": table_value(comparison.select(cols)),
    })
