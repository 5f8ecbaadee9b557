"""The main job behind `make run` / `torta run`: the default scenario end to end on the local Dagster
instance and the default warehouse: ingest the shipped traces, build the fleet, forecast the
workload's demand, replay every policy on the same requests and seeds, print the comparison and write
the report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import click
import dagster as dg
import polars as pl

from pipelines import warehouse as wh
from pipelines.instance import dagster_home


@dataclass(frozen=True)
class MainConfig:
    scenario: str = "abilene"
    workload: str = "servegen-mix-14d"  # the evaluation workload (DESIGN.md), first test day
    policies: tuple[str, ...] = ()  # empty: every registered policy
    seeds: int = 2
    hours: float = 1.0  # replayed window of the first test day
    warmup_hours: float = 0.0  # unscored warm-up before the window (multi-day workloads; torta.runs.inputs)
    state_refresh_s: float = 0.0  # the control-plane information model (torta.sim.infomodel); 0 = oracle
    report: bool = True
    batch: str = field(default_factory=lambda: f"main-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")


def all_policies() -> list[str]:
    import torta.planner.register  # noqa: F401  (registers the planner-layer policies)
    from torta.policy import list_policies

    return [p if isinstance(p, str) else p[0] for p in list_policies()]


def _log(msg: str) -> None:
    click.echo(msg, err=True)


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # progress lines are ours


def _materialize(assets, instance, resources, *, selection=None, partition_key=None, run_config=None) -> None:
    run_config = {**QUIET, **(run_config or {})}
    result = dg.materialize(assets, selection=selection, instance=instance, resources=resources,
                            partition_key=partition_key, run_config=run_config, raise_on_error=False)
    if not result.success:
        failed = [e.message for e in result.all_events if e.is_failure]
        raise click.ClickException(f"materialization [{partition_key}] failed: {failed[-1] if failed else '?'}")
    for ev in result.get_asset_check_evaluations():
        if not ev.passed:
            _log(f"warning: check {ev.check_name} failed on {ev.asset_key.to_user_string()} [{partition_key}]")


def run_main(cfg: MainConfig, database: str | None = None) -> dict:
    from pipelines.assets import fleet, forecast, ingest, replay, report, views
    from pipelines.partitions import trace_partitions
    from pipelines.resources import WarehouseResource

    if database:
        os.environ["TORTA_WAREHOUSE"] = database
    db = wh.warehouse_path(database)
    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))
    resources = {"warehouse": WarehouseResource(database=str(db))}
    policies = list(cfg.policies) or all_policies()
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        for key in trace_partitions.get_partition_keys():
            _log(f"[1/5 ingest] {key}")
            _materialize([ingest.requests], instance, resources, partition_key=key)
        _log(f"[2/5 fleet] {cfg.scenario}")
        _materialize([fleet.topology, fleet.fleet, fleet.price_curves], instance, resources,
                     partition_key=cfg.scenario)
        from torta.workload import WORKLOADS

        if cfg.workload in WORKLOADS:
            _log(f"[3/5 forecast] {cfg.workload}: demand per slot and the day-ahead forecast")
            _materialize([forecast.demand, forecast.demand_forecasts], instance, resources,
                         partition_key=cfg.workload)
        keys = [f"{cfg.scenario}|{cfg.workload}|{p}|{s}" for s in range(cfg.seeds) for p in policies]
        instance.add_dynamic_partitions("replays", keys)
        _log(f"[4/5 replay] {len(policies)} policies x {cfg.seeds} seeds, {cfg.hours:g} h of "
             f"{cfg.workload} on {cfg.scenario} (batch {cfg.batch})")
        run_config = {"ops": {"replay_run": {"config": {"hours": cfg.hours, "batch": cfg.batch,
                                                              "warmup_hours": cfg.warmup_hours,
                                                              "state_refresh_s": cfg.state_refresh_s}}}}
        for i, key in enumerate(keys, 1):
            t = time.perf_counter()
            _materialize([replay.replay_run], instance, resources, partition_key=key, run_config=run_config)
            _log(f"  {i}/{len(keys)} {key} ({time.perf_counter() - t:.1f} s)")
        index = None
        if cfg.report:
            _log("[5/5 report]")
            _materialize([views.warehouse_views, report.report], instance, resources)
            from pipelines.report import default_report_dir

            index = default_report_dir(db) / "index.html"
    comparison = wh.query(db, "select * from policy_comparison where batch = $b", {"b": cfg.batch})
    return {"warehouse": str(db), "wall_s": time.perf_counter() - t0, "comparison": comparison,
            "report": str(index) if index else None, "batch": cfg.batch}


def print_main(result: dict) -> None:
    cols = ["policy", "seeds", "requests", "response_mean_s", "response_mean_s_ci95", "response_p95_s",
            "load_std", "cost_usd", "energy_usd", "transfer_usd", "switching_usd", "switches", "planner_ms_per_slot"]
    df = result["comparison"]
    df = df.select([c for c in cols if c in df.columns]).with_columns(pl.col(pl.Float64).round(3))
    with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        click.echo(df)
    click.echo(f"warehouse: {result['warehouse']}  (torta sql \"select * from policy_comparison\")")
    if result["report"]:
        click.echo(f"report:    {result['report']}")
    click.echo(f"done in {result['wall_s']:.0f} s")
