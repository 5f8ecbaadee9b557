"""The main job behind `make run` / `torta run`: the default scenario end to end on the local Dagster
instance and the default warehouse: ingest the shipped traces, build the fleet, forecast the
workload's demand, replay every policy on the same requests and seeds, print the comparison and write
the report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import click

from pipelines import warehouse as wh
from torta.config import EVAL_PROTOCOL
from pipelines.instance import dagster_home
from torta.commands.options import StepBar


@dataclass(frozen=True)
class MainConfig:
    scenario: str = "abilene"
    workload: str = "servegen-mix-14d"  # the evaluation workload (DESIGN.md), first test day
    policies: tuple[str, ...] = ()  # empty: every registered policy
    seeds: int = 2
    hours: float = 1.0  # replayed window of the first test day
    warmup_hours: float = 1.0  # unscored warm-up before the window (multi-day workloads; torta.runs.inputs)
    state_refresh_s: float = EVAL_PROTOCOL.state_refresh_s  # gateways' load reports (torta.sim.infomodel); 0 = oracle
    report: bool = True
    command: str = "torta run"  # tagged on every Dagster run of the batch
    batch: str = field(default_factory=lambda: f"main-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")


def all_policies() -> list[str]:
    """The main job's default set: every registered policy except those registered with
    `default_run=False` (ablation variants, prefix-hash)."""
    import torta.planner.register  # noqa: F401  (registers the planner-layer policies)
    from torta.policy import list_policies

    return [p if isinstance(p, str) else p[0] for p in list_policies(default_run=True)]


def _log(msg: str) -> None:
    click.echo(msg, err=True)


def validate(cfg: MainConfig) -> list[str]:
    """Check every name before any work (cheap checks first, no Dagster import); returns the policies.
    Raises UnknownNameError / ValueError, which the CLI prints as one line and exits 2."""
    from torta.errors import UnknownNameError
    from torta.fleet.scenario import list_scenarios
    from torta.traces import all_traces
    from torta.workload import WORKLOADS

    if cfg.scenario not in list_scenarios():
        raise UnknownNameError("scenario", cfg.scenario, list(list_scenarios()))
    w = cfg.workload
    if w not in WORKLOADS and w not in all_traces() and not (w.endswith(".parquet") and Path(w).is_file()):
        raise UnknownNameError("workload", w, [*WORKLOADS, *all_traces(), "<canonical requests .parquet>"])
    if cfg.seeds < 1:
        raise ValueError(f"--seeds {cfg.seeds}: expected at least 1")
    if not cfg.hours > 0:
        raise ValueError(f"--hours {cfg.hours:g}: expected a positive number of hours")
    from torta.runs.experiment.runner import PPO_POLICIES, available_policies

    from torta.policy import list_policies

    known = [n for n, _ in list_policies()]  # any registered name may be asked for
    policies = list(cfg.policies) or all_policies()
    for p in policies:
        if p not in known:
            raise UnknownNameError("policy", p, known)
    avail, dropped = available_policies((cfg.scenario,), tuple(p for p in policies if p in PPO_POLICIES))
    missing = {p: why for p, why in dropped.items() if p in policies}
    if missing:
        if cfg.policies:  # asked for by name: an error
            p, why = next(iter(missing.items()))
            raise ValueError(f"policy {p!r} cannot run on scenario {cfg.scenario!r}: {why}")
        for p, why in missing.items():  # the default "every policy": leave it out, say so
            _log(f"  left out {p}: {why}")
        policies = [p for p in policies if p not in missing]
    return policies


def run_main(cfg: MainConfig, database: str | None = None, workers: int | None = None,
             policies: list[str] | None = None, progress: bool = False) -> dict:
    """The main job. Set-up stages run as the named jobs `ingest_traces`, `build_fleet`,
    `forecast_demand`, the replays as runs of `main` (one per partition, `workers` at a time, default
    one per core), the report as `build_report`; every run is tagged `batch` and `command`. On failure,
    the replay partitions this call added and that did not materialize are deleted again."""
    import dagster as dg

    from pipelines import pool
    from pipelines.partitions import trace_partitions

    policies = policies if policies is not None else validate(cfg)
    db = wh.warehouse_path(database)
    os.environ["TORTA_WAREHOUSE"] = str(db)  # the jobs' resources and the worker processes resolve it
    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))
    workers = workers or pool.cores()
    tags = {"batch": cfg.batch, "command": cfg.command}
    t0 = time.perf_counter()

    def stage(job: str, key: str | None = None, assets: list[str] | None = None) -> None:
        err, warnings = pool.run_job(job, instance, partition_key=key, tags=tags, asset_selection=assets)
        for w in warnings:
            _log(w)
        if err:
            raise click.ClickException(err)

    with dg.DagsterInstance.get() as instance:
        for key in trace_partitions.get_partition_keys():
            _log(f"[1/5 ingest] {key}")
            stage("ingest_traces", key)
        _log(f"[2/5 fleet] {cfg.scenario}")
        stage("build_fleet", cfg.scenario)
        from torta.workload import WORKLOADS

        if cfg.workload in WORKLOADS:
            _log(f"[3/5 forecast] {cfg.workload}: demand per slot and the day-ahead forecast")
            stage("forecast_demand", cfg.workload, ["demand", "demand_forecasts"])
        from pipelines.assets.training import record_committed_checkpoints

        record_committed_checkpoints(instance, cfg.scenario)  # the learned policies' inputs, in the lineage
        keys = [f"{cfg.scenario}|{cfg.workload}|{p}|{s}" for s in range(cfg.seeds) for p in policies]
        existing = set(instance.get_dynamic_partitions("replays"))
        added = [k for k in keys if k not in existing]
        instance.add_dynamic_partitions("replays", added)
        n_workers = min(workers, len(keys))
        _log(f"[4/5 replay] {len(policies)} policies x {cfg.seeds} seeds, {cfg.hours:g} h of "
             f"{cfg.workload} on {cfg.scenario} (batch {cfg.batch}), {n_workers} at a time")
        from torta.runs.inputs import is_multiday

        warmup_h = cfg.warmup_hours if is_multiday(cfg.workload) else 0.0  # a trace has no hours before it
        if warmup_h != cfg.warmup_hours:
            _log(f"  {cfg.workload} is a trace: no warm-up (it has no hours before its start)")
        run_config = {"ops": {"replay_run": {"config": {"hours": cfg.hours, "batch": cfg.batch,
                                                              "warmup_hours": warmup_h,
                                                              "state_refresh_s": cfg.state_refresh_s}}}}
        t_rep = time.perf_counter()
        bar = StepBar(len(keys), "replays", progress)

        def done(i: int, key: str, secs: float, err: str | None, warnings: list[str]) -> None:
            for w in warnings:
                bar.log(w)
            el = time.perf_counter() - t_rep
            bar.log(f"  {i}/{len(keys)} {key} ({secs:.1f} s{'' if err is None else ', FAILED'}; elapsed {el:.0f} s, "
                    f"eta {el / i * (len(keys) - i):.0f} s)")
            bar.step()

        try:
            failed = pool.run_partitions("main", keys, run_config=run_config, tags=tags, workers=n_workers,
                                         instance=instance, on_done=done)
        except BaseException:
            _drop_unmaterialized(instance, added)
            raise
        finally:
            bar.close()
        if failed:
            _drop_unmaterialized(instance, added)
            raise click.ClickException(f"replay {failed[0]} failed (its Dagster run of job `main` has the "
                                       f"error); the batch's unmaterialized partitions were removed")
        index = None
        if cfg.report:
            _log("[5/5 report]")
            stage("build_report")
            from pipelines.report import default_report_dir

            index = default_report_dir(db) / "index.html"
    comparison = wh.query(db, "select * from policy_comparison where batch = $b", {"b": cfg.batch})
    return {"warehouse": str(db), "wall_s": time.perf_counter() - t0, "comparison": comparison,
            "report": str(index) if index else None, "batch": cfg.batch, "workers": n_workers}


def _drop_unmaterialized(instance, keys: list[str]) -> None:
    """Delete the replay partitions in `keys` that have no materialization (a failed batch leaves none)."""
    import dagster as dg

    done = instance.get_materialized_partitions(dg.AssetKey("replay_run"))
    for k in keys:
        if k not in done:
            instance.delete_dynamic_partition("replays", k)


def print_main(result: dict) -> None:
    import polars as pl

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
