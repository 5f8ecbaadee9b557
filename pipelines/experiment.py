"""The paper-reproduction experiment on Dagster (`torta experiment paper`).

Asset `experiment_cell` (group `replay`, beside the replays: same inputs), dynamic partitions `experiment_cells`,
key `scenario|workload|seed|day` (torta.runs.experiment.Cell): every policy of the experiment replays the
cell's requests (identical for all of them) and one `runs` row per policy is written to the
warehouse (partition key `<experiment>|<cell>|<policy>`, columns `experiment`, `cell`, `day`, `role`
added), the slot metrics to `slot_metrics` (one partition per cell). A validation cell (day 11,
config role `validation`) first tunes SkyLB's threshold. Completions are not stored (millions of
rows per cell; the per-run summaries carry the metrics).

`run_paper(exp, ...)` is the flow: plan and estimate, validation cells, strongest baseline and SkyLB
threshold per scenario read back from the warehouse, test cells, views refreshed. With `workers` N > 1
the cells run N at a time, each a materialization in a pool of N worker processes (spawned; each
materializes on the Dagster instance under DAGSTER_HOME and writes its own warehouse partitions, which
are atomic per file, so concurrent cells never clash).
`write_results(...)` renders docs/RESULTS.md and the figures from the warehouse.
"""


import concurrent.futures as cf
import contextlib
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import click
import dagster as dg
import polars as pl

from pipelines import warehouse as wh
from pipelines.lineage import REPLAY_INPUTS
from pipelines.resources import WarehouseResource
from torta.config import EVAL_PROTOCOL
from torta.runs.experiment.definition import Cell, Experiment

experiment_partitions = dg.DynamicPartitionsDefinition(name="experiment_cells")


class ExperimentCellConfig(dg.Config):
    policies: list[str]
    experiment: str = "paper"
    batch: str = "paper-adhoc"
    role: str = "test"  # "test" | "validation"
    hours: float = 0.25
    trace_hours: float = 1.0
    skylb_threshold: float = 0.0  # 0: the policy's default (validation cells tune it first)
    skylb_candidates: list[float] = list(EVAL_PROTOCOL.skylb_candidates)
    command: str = ""  # how the batch was started (recorded in the runs rows, stated in RESULTS.md)
    workers: int = 1  # cells run at a time by that command


def run_key(experiment: str, cell: Cell, policy: str) -> str:
    return f"{experiment}|{cell.key}|{policy}"


@dg.asset(partitions_def=experiment_partitions, group_name="replay", kinds={"parquet"}, deps=REPLAY_INPUTS,
          check_specs=[dg.AssetCheckSpec("conservation", asset="experiment_cell", partitions_def=experiment_partitions,
                                         description="completed + dropped = requests for every policy")])
def experiment_cell(context: dg.AssetExecutionContext, config: ExperimentCellConfig,
                    warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Replay every policy of the experiment on one cell's requests; runs and slot metrics to the warehouse."""
    from torta.runs.execute import tune_skylb
    from torta.runs.experiment.runner import cell_input, run_cell

    t_cell = time.perf_counter()
    db = warehouse.db_path
    base = Cell.from_key(context.partition_key)
    cell = Cell(base.scenario, base.workload, base.seed, base.day, role=config.role)
    threshold, table = (config.skylb_threshold or None), []
    inp = cell_input(cell, config.hours, config.trace_hours)
    if config.role == "validation" and "skylb" in config.policies:
        threshold, table = tune_skylb(inp, tuple(config.skylb_candidates), context.log.info)
    res = run_cell(cell, tuple(config.policies), hours=config.hours, trace_hours=config.trace_hours,
                   skylb_threshold=threshold, log=context.log.info, inp=inp)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    cell_wall_s = time.perf_counter() - t_cell  # the whole cell: input, tuning, every policy
    slot_frames = []
    run_uid = uuid.uuid4().hex  # views match slot_metrics rows to runs rows by (key, run_uid)
    for row in res.runs:
        key = run_key(config.experiment, cell, row["policy"])
        row.update(key=key, run_uid=run_uid, experiment=config.experiment, batch=config.batch, hours=config.hours,
                   trace_hours=config.trace_hours, skylb_threshold=float(threshold or 0.0),
                   skylb_tuning=str(table), dagster_run_id=context.run.run_id, finished_at=now,
                   cell_wall_s=cell_wall_s, run_command=config.command, workers=int(config.workers))
        wh.write_partition(db, "runs", key, pl.DataFrame([row]))
        slot_frames.append(res.slots[row["policy"]].with_columns(
            key=pl.lit(key), scenario=pl.lit(cell.scenario), workload=pl.lit(cell.workload),
            policy=pl.lit(row["policy"]), seed=pl.lit(cell.seed, dtype=pl.Int64),
            day=pl.lit(cell.day, dtype=pl.Int64), batch=pl.lit(config.batch), run_uid=pl.lit(run_uid)))
    if slot_frames:
        wh.write_partition(db, "slot_metrics", f"{config.experiment}|{cell.key}",
                           pl.concat(slot_frames, how="diagonal_relaxed"))
    conserved = all(r["completed"] + r["dropped"] == r["requests"] for r in res.runs)
    return dg.MaterializeResult(
        metadata={"requests": res.requests, "policies": len(res.runs), "skylb_threshold": float(threshold or 0.0),
                  "best_response_mean_s": min((r["response_mean_s"] for r in res.runs), default=0.0)},
        check_results=[dg.AssetCheckResult(check_name="conservation", passed=bool(conserved))])


experiment_job = dg.define_asset_job("experiment_paper", selection=dg.AssetSelection.assets("experiment_cell"))


def _materialize_cell(instance, resources, key: str, run_config: dict) -> tuple[str | None, list[str]]:
    """One run of job `experiment_paper` for one cell, tagged with its batch and command: (error
    message or None, warnings). `resources` binds the warehouse (the job's own resource otherwise)."""
    from pipelines.pool import run_job

    cfg = run_config["ops"]["experiment_cell"]["config"]
    return run_job("experiment_paper", instance, partition_key=key, run_config=run_config,
                   tags={"batch": cfg["batch"], "command": cfg.get("command") or "torta experiment paper"},
                   resources=resources)


def _materialize(instance, resources, key: str, run_config: dict) -> None:
    err, warnings = _materialize_cell(instance, resources, key, run_config)
    for w in warnings:
        click.echo(w, err=True)
    if err:
        raise click.ClickException(err)


_WORKER: dict = {}  # per worker process: the Dagster instance and resources, made once


def _worker_pool(workers: int, db: str):
    from pipelines.pool import worker_pool  # one compute thread per worker (see pipelines/pool.py)

    return worker_pool(workers, _worker_init, (db,))


def _worker_init(db: str) -> None:
    _WORKER["instance"] = dg.DagsterInstance.get()  # DAGSTER_HOME, inherited from the parent
    _WORKER["resources"] = {"warehouse": WarehouseResource(database=db)}


def _worker_cell(key: str, run_config: dict) -> tuple[str, str | None, list[str], float]:
    import torch

    torch.set_num_threads(1)
    t = time.perf_counter()
    err, warnings = _materialize_cell(_WORKER["instance"], _WORKER["resources"], key, run_config)
    return key, err, warnings, time.perf_counter() - t


def _run_cells(jobs: list[tuple[str, dict]], pool, instance, resources, log: Callable[[str], None],
               on_done: Callable[[int, str, float], None]) -> None:
    """Materialize `jobs` (key, run_config): in this process one after another (pool None) or on the
    pool, in order of submission, as many at a time as it has workers. Stops at the first failure."""
    if pool is None:
        for i, (key, rc) in enumerate(jobs, 1):
            t = time.perf_counter()
            _materialize(instance, resources, key, rc)
            on_done(i, key, time.perf_counter() - t)
        return
    futures = [pool.submit(_worker_cell, key, rc) for key, rc in jobs]
    try:
        for i, fut in enumerate(cf.as_completed(futures), 1):
            key, err, warnings, cell_s = fut.result()
            for w in warnings:
                log(w)
            if err:
                raise click.ClickException(err)
            on_done(i, key, cell_s)
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def _run_config(cfg: dict) -> dict:
    # Dagster's per-event console lines would drown the progress lines: warnings and errors only.
    return {"ops": {"experiment_cell": {"config": cfg}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def plan_experiment(exp: Experiment, log: Callable[[str], None], workers: int = 1) -> tuple[Experiment, dict]:
    """Resolve the available policies, count the requests of one cell per workload, estimate the run time."""
    from torta.runs.experiment.runner import available_policies, cell_input, estimate_s

    avail, dropped = available_policies(exp.scenarios, exp.policies)
    exp = exp.with_policies(avail)
    if not exp.baselines or not exp.torta:
        raise click.ClickException(f"experiment needs a baseline and a TORTA policy; left out: {dropped}")
    counts = {}
    for c in exp.test_cells():
        if c.workload not in counts:
            counts[c.workload] = int(cell_input(c, exp.hours, exp.trace_hours).requests.height)
    est = estimate_s(exp, counts, workers)
    cells = exp.test_cells()
    log(f"experiment {exp.name}: {len(exp.scenarios)} scenarios x ({len(exp.workloads)} multi-day workloads x "
        f"{len(exp.test_days)} test days + {len(exp.traces)} hour traces) x {exp.seeds} seeds = {len(cells)} "
        f"cells (+{len(exp.validation_cells())} validation), {len(exp.policies)} policies: "
        f"{', '.join(exp.policies)}")
    for p, why in dropped.items():
        log(f"  left out {p}: {why}")
    log("  requests per cell: " + ", ".join(f"{w} {n:,}" for w, n in counts.items())
        + f"; {exp.hours:g} h of each test day, {exp.trace_hours:g} h of each trace")
    log(f"  estimated run time {est / 60:.0f} min on this machine"
        + (f" with {workers} workers" if workers > 1 else ""))
    return exp, {"requests_per_cell": counts, "estimate_s": est, "left_out": dropped}


def run_paper(exp: Experiment, database: str | None = None, batch: str | None = None,
              log: Callable[[str], None] | None = None, instance: dg.DagsterInstance | None = None,
              workers: int = 1, command: str = "", progress: bool = False) -> dict:
    """Run the experiment end to end through Dagster materializations into the warehouse (on
    `instance`, default the local instance under DAGSTER_HOME). `workers` > 1: that many cells at a
    time, in a pool of worker processes on the DAGSTER_HOME instance (`instance` must then be None).
    `command`: how the batch was started, recorded in its runs rows."""
    from pipelines.instance import dagster_home

    log = log or (lambda m: click.echo(m, err=True))
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and instance is not None:
        raise ValueError("workers > 1 run on the Dagster instance under DAGSTER_HOME: pass no instance")
    if database:
        os.environ["TORTA_WAREHOUSE"] = database
    db = wh.warehouse_path(database)
    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))
    batch = batch or f"{exp.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    t0 = time.perf_counter()
    exp, info = plan_experiment(exp, log, workers)
    resources = {"warehouse": WarehouseResource(database=str(db))}
    common = {"policies": list(exp.policies), "experiment": exp.name, "batch": batch,
              "trace_hours": exp.trace_hours, "skylb_candidates": list(exp.skylb_candidates),
              "command": command, "workers": int(workers)}
    val, test = exp.validation_cells(), exp.test_cells()
    thresholds: dict[str, float] = {}
    if workers > 1:
        log(f"  {workers} workers: cells run {workers} at a time (one process each)")
    with (contextlib.nullcontext(instance) if instance is not None else dg.DagsterInstance.get()) as instance, \
            (_worker_pool(workers, str(db)) if workers > 1 else contextlib.nullcontext()) as pool:
        instance.add_dynamic_partitions("experiment_cells", [c.key for c in val + test])
        by_key = {c.key: c for c in val + test}
        val_cfg = {**common, "role": "validation", "hours": exp.tune_hours,
                   "policies": [p for p in exp.policies if p in exp.baselines]}

        def val_done(i: int, key: str, cell_s: float) -> None:
            c = by_key[key]
            sky = wh.read_table(db, "runs", run_key(exp.name, c, exp.baselines[0]))
            thresholds[c.scenario] = float(sky["skylb_threshold"][0])
            log(f"[validation {i}/{len(val)}] {c.key}: skylb threshold {thresholds[c.scenario]:g} ({cell_s:.0f} s)")

        _run_cells([(c.key, _run_config(val_cfg)) for c in val], pool, instance, resources, log, val_done)

        from torta.commands.options import StepBar

        bar = StepBar(len(test), "test cells", progress)

        def test_done(i: int, key: str, cell_s: float) -> None:
            el = time.perf_counter() - t0
            (bar.log if progress else log)(f"[test {i}/{len(test)}] {key} ({cell_s:.0f} s; elapsed {el / 60:.1f} "
                                           f"min, eta {el / i * (len(test) - i) / 60:.1f} min)")
            bar.step()

        jobs = [(c.key, _run_config({**common, "role": "test", "hours": exp.hours,
                                     "skylb_threshold": thresholds.get(c.scenario, 0.0)})) for c in test]
        try:
            _run_cells(jobs, pool, instance, resources, log, test_done)
        finally:
            bar.close()
    wh.refresh_views(db)
    wall = time.perf_counter() - t0
    log(f"experiment {exp.name} done in {wall / 60:.1f} min (estimate was {info['estimate_s'] / 60:.0f} min); "
        f"batch {batch}")
    return {"experiment": exp.name, "batch": batch, "warehouse": str(db), "wall_s": wall, "workers": int(workers),
            "command": command,
            "estimate_s": info["estimate_s"], "cells": len(test), "validation_cells": len(val),
            "policies": list(exp.policies), "left_out": info["left_out"],
            "requests_per_cell": info["requests_per_cell"]}


def load_runs(database: str | None, experiment: str = "paper", batch: str | None = None) -> tuple[pl.DataFrame, str]:
    """The experiment's runs of one batch (default: the latest) from the warehouse's `runs` view."""
    db = wh.warehouse_path(database)
    if batch is None:
        latest = wh.query(db, "select batch from runs where experiment = $e order by finished_at desc limit 1",
                          {"e": experiment})
        if latest.height == 0:
            raise wh.WarehouseError(f"no runs of experiment {experiment!r} in {db}; run `torta experiment paper`")
        batch = latest["batch"][0]
    runs = wh.query(db, "select * from runs where experiment = $e and batch = $b", {"e": experiment, "b": batch})
    return runs, batch


def write_results(database: str | None = None, experiment: str = "paper", batch: str | None = None,
                  out: str | Path = "docs/RESULTS.md", figures: str | Path = "docs/figures",
                  wall_s: float | None = None, note: str = "") -> dict:
    from torta.runs.experiment.render import render_results

    runs, batch = load_runs(database, experiment, batch)
    out = Path(out)
    text = render_results(runs, batch=batch, figures_dir=Path(figures), md_dir=out.parent, wall_s=wall_s, note=note)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return {"results": str(out), "batch": batch, "runs": runs.height}
