"""Group `ingest`: canonical requests per shipped trace."""


import dagster as dg
import polars as pl

from pipelines.lineage import content_version, file_url, tidy
from pipelines.partitions import trace_partitions
from pipelines.resources import WarehouseResource
from torta.ingest import summarize
from torta.schema import REQUEST_SCHEMA
from torta.traces import load_trace, shipped_traces


def check_requests_frame(frame: pl.DataFrame, expected_rows: int | None) -> tuple[bool, dict]:
    """Schema, row count and arrivals non-decreasing (after the canonical sort)."""
    schema_ok = all(frame.schema.get(c) == t for c, t in REQUEST_SCHEMA.items())
    rows_ok = expected_rows is None or frame.height == expected_rows
    arrivals = frame["arrival_s"]
    sorted_ok = frame.height < 2 or bool((arrivals.diff().drop_nulls() >= 0).all())
    ids_ok = frame["request_id"].to_list() == list(range(frame.height))
    meta = {"schema_ok": schema_ok, "rows": frame.height, "expected_rows": expected_rows or -1,
            "arrivals_sorted": sorted_ok, "dense_ids": ids_ok}
    return schema_ok and rows_ok and sorted_ok and ids_ok, meta


@dg.asset(
    partitions_def=trace_partitions,
    group_name="ingest",
    kinds={"polars", "parquet"},
    check_specs=[dg.AssetCheckSpec("schema_rows_sorted", asset="requests", partitions_def=trace_partitions,
                                   description="REQUEST_SCHEMA, manifest row count, arrivals non-decreasing")],
)
def requests(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Canonical requests (REQUEST_SCHEMA) of one shipped trace, written as Parquet."""
    name = context.partition_key
    info = shipped_traces()[name]
    frame = load_trace(name)
    path = warehouse.write("requests", name, frame)
    summary = summarize(frame)
    warehouse.write("trace_summaries", name, pl.DataFrame([{"trace": name, **_flat(summary)}]))
    warehouse.refresh_views()
    passed, meta = check_requests_frame(pl.read_parquet(path), getattr(info, "rows", None))
    context.log.info(f"{name}: {summary}")
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)), "parquet": file_url(path),
                  **tidy(_flat(summary))},
        data_version=content_version(path),
        check_results=[dg.AssetCheckResult(check_name="schema_rows_sorted", passed=passed, metadata=meta)],
    )


def _flat(summary: dict) -> dict:
    out = {}
    for k, v in summary.items():
        if isinstance(v, dict):
            out.update({f"{k}_{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out
