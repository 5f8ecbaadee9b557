"""The main job behind `make run` / `torta run`: materialize the default pipeline on the local
Dagster instance and the default warehouse, then print the results."""

from __future__ import annotations

import os
import time

import click
import dagster as dg
import polars as pl

from pipelines import warehouse as wh
from pipelines.instance import dagster_home


def _execute(defs: dg.Definitions, job_name: str, instance: dg.DagsterInstance,
             partition_key: str | None = None) -> None:
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(instance=instance, partition_key=partition_key,
                                    raise_on_error=False)
    if not result.success:
        failed = [e.message for e in result.all_events if e.is_failure]
        raise click.ClickException(f"job {job_name} [{partition_key}] failed: {failed[-1] if failed else '?'}")
    for ev in result.get_asset_check_evaluations():
        if not ev.passed:
            click.echo(f"warning: check {ev.check_name} failed on {ev.asset_key.to_user_string()} "
                       f"[{partition_key}]", err=True)


def run_main(database: str | None = None) -> dict:
    from pipelines.definitions import defs
    from pipelines.partitions import trace_partitions

    if database:
        os.environ["TORTA_WAREHOUSE"] = database
    db = wh.warehouse_path(database)
    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        for key in trace_partitions.get_partition_keys():
            click.echo(f"[ingest] {key}", err=True)
            _execute(defs, "ingest_traces", instance, key)
    wh.refresh_views(db)
    summaries = wh.query(db, "select trace, rows, round(span_s / 60, 1) as span_min, "
                         "round(mean_rate_per_s, 2) as req_per_s, round(prompt_tokens_mean) as prompt_mean, "
                         "prompt_tokens_p50 as prompt_p50, round(output_tokens_mean) as output_mean, "
                         "output_tokens_p50 as output_p50 from trace_summaries order by trace")
    return {"warehouse": str(db), "wall_s": time.perf_counter() - t0, "trace_summaries": summaries}


def print_main(result: dict) -> None:
    with pl.Config(tbl_rows=50, tbl_cols=20, fmt_str_lengths=40, tbl_width_chars=160):
        click.echo("Shipped traces (canonical requests in the warehouse):")
        click.echo(result["trace_summaries"])
    click.echo(f"warehouse: {result['warehouse']}  (query with: torta sql \"select * from trace_summaries\")")
    click.echo(f"done in {result['wall_s']:.1f} s")
