"""Group `fleet`: topology (regions, latency), the fleet's servers and hourly price curves, per
scenario."""

import dagster as dg
import polars as pl

from pipelines.lineage import content_version, file_url, table_value, tidy
from pipelines.partitions import scenario_partitions
from pipelines.resources import WarehouseResource
from torta.fleet.scenario import fleet_tables, load_scenario, topology_links


def _tables(scenario: str) -> dict:
    return fleet_tables(load_scenario(scenario))


@dg.asset(partitions_def=scenario_partitions, group_name="fleet", kinds={"networkx", "parquet"})
def topology(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Regions (topology nodes, coordinates, data-centre flag) and the one-way latency matrix."""
    t = _tables(context.partition_key)
    paths = [warehouse.write("regions", context.partition_key, t["regions"]),
             warehouse.write("latency", context.partition_key, t["latency"]),
             warehouse.write("links", context.partition_key,
                             topology_links(context.partition_key).with_columns(scenario=pl.lit(context.partition_key)))]
    warehouse.refresh_views()
    lat = t["latency"].filter(t["latency"]["src"] != t["latency"]["dst"])["latency_ms"]
    return dg.MaterializeResult(metadata=tidy({
        "regions": t["regions"].height,
        "dc_regions": int(t["regions"]["hosts_datacenter"].sum()),
        "latency_min_ms": float(lat.min()) if lat.len() else 0.0,
        "latency_max_ms": float(lat.max()) if lat.len() else 0.0,
        "regions_table": table_value(t["regions"].select("name", "lat", "lon", "hosts_datacenter")),
        "parquet": file_url(paths[0]),
    }), data_version=content_version(*paths))


@dg.asset(partitions_def=scenario_partitions, group_name="fleet", deps=[topology], kinds={"parquet"})
def fleet(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Servers per region: GPU type, tensor-parallel degree, allowed and initial models."""
    servers = _tables(context.partition_key)["servers"]
    path = warehouse.write("servers", context.partition_key, servers)
    warehouse.refresh_views()
    return dg.MaterializeResult(metadata=tidy({
        "servers": servers.height,
        "gpus": int(servers["tp"].sum()),
        "usd_per_hour": float(servers["usd_per_hour"].sum()),
        "parquet": file_url(path),
    }), data_version=content_version(path))


@dg.asset(partitions_def=scenario_partitions, group_name="fleet", deps=[topology], kinds={"parquet"})
def price_curves(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Hourly 2023 electricity price (USD/MWh) and carbon intensity per region."""
    prices = _tables(context.partition_key)["prices"]
    path = warehouse.write("prices", context.partition_key, prices)
    warehouse.refresh_views()
    return dg.MaterializeResult(metadata=tidy({
        "hours": int(prices["hour_utc"].n_unique()),
        "price_min_usd_per_mwh": float(prices["price_usd_per_mwh"].min()),
        "price_max_usd_per_mwh": float(prices["price_usd_per_mwh"].max()),
        "parquet": file_url(path),
    }), data_version=content_version(path))
