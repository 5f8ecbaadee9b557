"""Traces dropped into `traces/incoming/`: a sensor adds one dynamic partition per new file and
requests a run that ingests it into the warehouse's `requests` table (partition `incoming/<file>`).
The format comes from a `<format>__` file-name prefix or is guessed from the header."""

import os
from pathlib import Path

import dagster as dg
import polars as pl

from pipelines.resources import WarehouseResource
from torta.ingest import ingest, summarize
from torta.ingest.detect import detect_format
from torta.traces import traces_dir

incoming_partitions = dg.DynamicPartitionsDefinition(name="incoming_traces")
SUFFIXES = {".csv", ".jsonl", ".json", ".parquet"}


def incoming_dir() -> Path:
    return Path(os.environ.get("TORTA_INCOMING_DIR") or traces_dir() / "incoming")


@dg.asset(partitions_def=incoming_partitions, group_name="ingest", kinds={"polars", "parquet"})
def incoming_requests(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Canonical requests of one file dropped into traces/incoming/ (quarantining bad rows)."""
    path = incoming_dir() / context.partition_key
    fmt = detect_format(path)
    result = ingest(fmt, path, on_bad_rows="quarantine", source=f"incoming/{path.name}")
    key = f"incoming/{path.name}"
    warehouse.write("requests", key, result.frame)
    summary = summarize(result.frame)
    warehouse.write("trace_summaries", key, pl.DataFrame([{
        "trace": key, **{k: v for k, v in summary.items() if not isinstance(v, (dict, list))}}]))
    if result.quarantine is not None and result.quarantine.height:
        warehouse.write("quarantine", key, result.quarantine.with_columns(pl.all().cast(pl.String))
                        .with_columns(trace=pl.lit(key)))
    warehouse.refresh_views()
    return dg.MaterializeResult(metadata={"format": fmt, "rows": result.rows, "dropped_rows": result.dropped_rows})


incoming_job = dg.define_asset_job("ingest_incoming", selection=[incoming_requests])


@dg.sensor(job=incoming_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def incoming_traces_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """One run per new (or changed) trace file in traces/incoming/."""
    folder = incoming_dir()
    files = sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                   and not p.name.startswith("."))
    known = set(context.instance.get_dynamic_partitions("incoming_traces"))
    new = [p.name for p in files if p.name not in known]
    runs = [dg.RunRequest(partition_key=p.name, run_key=f"{p.name}:{p.stat().st_mtime_ns}") for p in files]
    return dg.SensorResult(run_requests=runs,
                           dynamic_partitions_requests=[incoming_partitions.build_add_request(new)] if new else [])
