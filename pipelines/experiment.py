"""The paper-reproduction experiment on Dagster (`torta experiment paper`).

Asset `experiment_cell` (group `replay`, beside the replays: same inputs), dynamic partitions `experiment_cells`,
key `scenario|workload|seed|day` (torta.runs.experiment.Cell): every policy of the experiment replays the
cell's requests (identical for all of them) and one `runs` row per policy is written to the
warehouse (partition key `<experiment>|<cell>|<policy>`, columns `experiment`, `cell`, `day`, `role`
added), the slot metrics to `slot_metrics` (one partition per cell). A validation cell (day 11,
config role `validation`) first tunes SkyLB's threshold. Completions are not stored (millions of
rows per cell; the per-run summaries carry the metrics).

`run_paper(exp, ...)` is the flow: plan and estimate, validation cells, strongest baseline and SkyLB
threshold per scenario read back from the warehouse, test cells, views refreshed. Each cell is one run of
job `experiment_paper` for its partition (`_Sweep`): in this process one after another, or on Dagster's
multiprocess executor N at a time, or on a Dask cluster (`--executor dask --scheduler tcp://HOST:PORT`,
pipelines/executors.py). Every run writes its own warehouse partitions, whole or not at all, to the
warehouse's storage (a directory or an `s3://` URL), so concurrent, retried or racing cells never clash
nor duplicate rows; cells already in the warehouse are skipped (a killed sweep resumes). docs/SCALE-OUT.md.
`write_results(...)` renders docs/RESULTS.md and the figures from the warehouse.
"""


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
from pipelines.backfills import sweep_backfill
from pipelines.lineage import REPLAY_INPUTS
from pipelines.resources import WarehouseResource
from torta.config import EVAL_PROTOCOL
from torta.runs.experiment.definition import TRACE_DAY, Cell, Experiment

experiment_partitions = dg.DynamicPartitionsDefinition(name="experiment_cells")


class ExperimentCellConfig(dg.Config):
    policies: list[str]
    experiment: str = "paper"
    batch: str = "paper-adhoc"
    role: str = "test"  # "test" | "validation"
    hours: float = 24.0
    trace_hours: float = 1.0
    warmup_h: float = 0.0  # unscored hours before a multi-day window
    trace_warmup_h: float = 0.0  # an hour trace's unscored first hours (its validation window)
    state_refresh_s: float = 0.0  # control-plane load reports (torta.sim.infomodel); 0 = instant state
    export_dir: str = ""  # also write the cell's runs and per-slot rows here (committed: docs/data/<experiment>)
    skylb_threshold: float = 0.0  # 0: the policy's default (validation cells tune it first)
    skylb_candidates: list[float] = list(EVAL_PROTOCOL.skylb_candidates)
    command: str = ""  # how the batch was started (recorded in the runs rows, stated in RESULTS.md)
    workers: int = 1  # cells run at a time by that command
    # Incremental (a cell that already has rows for some policies): the cell's recorded run_uid, kept by the
    # new rows so the whole cell shares one uid; "" = derived from the config (cell_run_uid).
    run_uid: str = ""


def run_key(experiment: str, cell: Cell, policy: str) -> str:
    return f"{experiment}|{cell.key}|{policy}"


def _die_with_parent() -> None:
    """In a step process the sweep's multiprocess executor spawned (`TORTA_DIE_WITH_PARENT` set by the
    driver): end with the run process that spawned it (pipelines.pool's PR_SET_PDEATHSIG), which ends
    with the driver, so a killed sweep leaves no orphan replaying a cell."""
    import multiprocessing as mp

    parent = mp.parent_process()
    if os.environ.get("TORTA_DIE_WITH_PARENT") and parent is not None:
        from pipelines.pool import _die_with_parent as die

        die(parent.pid, None, ())


# Retries (issue 19): a step that fails or whose process is killed (multiprocess executor) is retried by
# Dagster; on Dask, a task whose worker died is rescheduled by Dask's scheduler. A retried cell rewrites the
# same partition files with the same rows (deterministic replay, a run_uid derived from its inputs), so
# the warehouse holds one set of rows per cell, whoever wrote last.
CELL_RETRY = dg.RetryPolicy(max_retries=2)


@dg.asset(partitions_def=experiment_partitions, group_name="replay", kinds={"parquet"}, deps=REPLAY_INPUTS,
          retry_policy=CELL_RETRY,
          check_specs=[dg.AssetCheckSpec("conservation", asset="experiment_cell", partitions_def=experiment_partitions,
                                         description="completed + dropped = requests for every policy")])
def experiment_cell(context: dg.AssetExecutionContext, config: ExperimentCellConfig,
                    warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Replay every policy of the experiment on one cell's requests; runs and slot metrics to the warehouse."""
    from torta.runs.execute import tune_skylb
    from torta.runs.experiment.runner import cell_input, run_cell

    _die_with_parent()
    t_cell = time.perf_counter()
    db, storage = warehouse.db_path, warehouse.storage_url
    base = Cell.from_key(context.partition_key)
    cell = Cell(base.scenario, base.workload, base.seed, base.day, role=config.role)
    threshold, table = (config.skylb_threshold or None), []
    inp = cell_input(cell, config.hours, config.trace_hours, config.warmup_h, config.trace_warmup_h)
    if config.role == "validation" and "skylb" in config.policies:
        threshold, table = tune_skylb(inp, tuple(config.skylb_candidates), context.log.info,
                                      state_refresh_s=config.state_refresh_s)
    res = run_cell(cell, tuple(config.policies), hours=config.hours, trace_hours=config.trace_hours,
                   skylb_threshold=threshold, log=context.log.info, inp=inp, state_refresh_s=config.state_refresh_s)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    cell_wall_s = time.perf_counter() - t_cell  # the whole cell: input, tuning, every policy
    slot_frames, resp_frames, rows = [], [], []
    run_uid = config.run_uid or cell_run_uid(cell, config)  # views match slot_metrics rows to runs rows by (key, run_uid)
    for row in res.runs:
        key = run_key(config.experiment, cell, row["policy"])
        row.update(key=key, run_uid=run_uid, experiment=config.experiment, batch=config.batch, hours=config.hours,
                   trace_hours=config.trace_hours, warmup_h=config.warmup_h, trace_warmup_h=config.trace_warmup_h,
                   protocol_state_refresh_s=config.state_refresh_s,
                   skylb_threshold=float(threshold or 0.0),
                   skylb_tuning=str(table), dagster_run_id=context.run.run_id, finished_at=now,
                   cell_wall_s=cell_wall_s, run_command=config.command, workers=int(config.workers))
        rows.append(row)
        if res.response_slots.get(row["policy"]) is not None:
            resp_frames.append(res.response_slots[row["policy"]].with_columns(
                key=pl.lit(key), scenario=pl.lit(cell.scenario), workload=pl.lit(cell.workload),
                policy=pl.lit(row["policy"]), seed=pl.lit(cell.seed, dtype=pl.Int64),
                day=pl.lit(cell.day, dtype=pl.Int64), role=pl.lit(cell.role), batch=pl.lit(config.batch)))
        slot_frames.append(res.slots[row["policy"]].with_columns(
            key=pl.lit(key), scenario=pl.lit(cell.scenario), workload=pl.lit(cell.workload),
            policy=pl.lit(row["policy"]), seed=pl.lit(cell.seed, dtype=pl.Int64),
            day=pl.lit(cell.day, dtype=pl.Int64), batch=pl.lit(config.batch), run_uid=pl.lit(run_uid)))
    # Per-cell partitions MERGE with the rows of policies this run does not replay (a cell re-run for the
    # policies it lacks keeps the others' rows whole); written before the per-policy runs rows, so a killed
    # run leaves no runs row without its slot rows (the resumed run replays that policy again).
    ran = {r["policy"] for r in res.runs}
    cell_part = f"{config.experiment}|{cell.key}"
    if slot_frames:
        wh.write_partition(db, "slot_metrics", cell_part,
                           merge_rows(_read_part(db, "slot_metrics", cell_part, storage), slot_frames, ran),
                           storage=storage)
    resp = None
    if resp_frames:
        resp = merge_rows(_read_part(db, "slot_response", cell_part, storage), resp_frames, ran)
        wh.write_partition(db, "slot_response", cell_part, resp, storage=storage)
    if config.export_dir:
        export_cell(Path(config.export_dir), cell, pl.DataFrame(rows), resp, merge=ran)
    for row in rows:
        wh.write_partition(db, "runs", row["key"], pl.DataFrame([row]), storage=storage)
    conserved = all(r["completed"] + r["dropped"] == r["requests"] for r in res.runs)
    return dg.MaterializeResult(
        metadata={"requests": res.requests, "policies": len(res.runs), "skylb_threshold": float(threshold or 0.0),
                  "best_response_mean_s": min((r["response_mean_s"] for r in res.runs), default=0.0)},
        check_results=[dg.AssetCheckResult(check_name="conservation", passed=bool(conserved))])


def cell_run_uid(cell: Cell, config: ExperimentCellConfig) -> str:
    """The cell's run uid, from what decides its rows (cell, role, policies, window, protocol, threshold):
    a retried or raced cell writes the same uid, so its runs and slot rows always match."""
    import hashlib
    import json

    what = config.model_dump(exclude={"batch", "command", "workers", "export_dir", "run_uid"})
    blob = json.dumps({"cell": cell.key, "role": cell.role, **what}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _read_part(db: Path, table: str, key: str, storage: str | None) -> pl.DataFrame | None:
    try:
        old = wh.read_table(db, table, key, storage=storage or None)
    except Exception:  # no such partition (or table) yet
        return None
    return old if old.height else None


def merge_rows(old: pl.DataFrame | None, new: list[pl.DataFrame] | pl.DataFrame, policies: set[str]) -> pl.DataFrame:
    """`new` rows with the rows of `old` whose policy is not among `policies` (the ones just replayed)
    first, in their stored order: a partial re-run of a cell adds to its rows, never drops them."""
    frames = list(new) if isinstance(new, list) else [new]
    if old is not None and old.height and "policy" in old.columns:
        kept = old.filter(~pl.col("policy").is_in(sorted(policies)))
        if kept.height:
            frames = [kept, *frames]
    return pl.concat(frames, how="diagonal_relaxed")


def _file_key(cell: Cell) -> str:
    return f"{cell.scenario}__{cell.workload}__s{cell.seed}__d{cell.day}__{cell.role}"


def _write_export(frame: pl.DataFrame, dest: Path) -> None:
    """An exported file written whole or not at all (a temporary beside it, then renamed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    frame.write_parquet(tmp, compression="zstd", statistics=False)
    os.replace(tmp, dest)


def export_cell(folder: Path, cell: Cell, runs: pl.DataFrame, slot_response: pl.DataFrame | None,
                merge: set[str] | None = None) -> None:
    """The cell's `runs` rows and per-slot response rows as small Parquet files under `folder`
    (`runs/<cell>.parquet`, `slot_response/<cell>.parquet`), each written whole or not at all: what
    a later session imports (`import_exported`) to resume the experiment and regenerate RESULTS.md.
    `merge`: the policies just replayed; the runs file keeps its rows of other policies (`slot_response`
    is passed already merged)."""
    for table, frame in (("runs", runs), ("slot_response", slot_response)):
        if frame is None:
            continue
        dest = folder / table / f"{_file_key(cell)}.parquet"
        if merge is not None and table == "runs" and dest.exists():
            frame = merge_rows(pl.read_parquet(dest), frame, merge)
        _write_export(frame, dest)


def import_exported(db: Path, folder: Path, experiment: str, log: Callable[[str], None]) -> int:
    """Write the exported rows under `folder` into the warehouse where its partitions are missing (a
    new machine resuming from the committed rows); returns the runs rows imported."""
    n = 0
    for table in ("runs", "slot_response"):
        for f in sorted((folder / table).glob("*.parquet")):
            frame = pl.read_parquet(f)
            if frame.height == 0 or "experiment" in frame.columns and frame["experiment"][0] != experiment:
                continue
            if table == "runs":
                for row in frame.iter_rows(named=True):
                    if not wh.partition_files(db, "runs", row["key"]):
                        wh.write_partition(db, "runs", row["key"], pl.DataFrame([row], schema=frame.schema))
                        n += 1
            else:
                k = frame["key"][0].rsplit("|", 1)[0]
                if not wh.partition_files(db, "slot_response", k):
                    wh.write_partition(db, "slot_response", k, frame)
                else:  # the warehouse's rows lack policies the export has: add them (keep the others)
                    old = wh.read_table(db, "slot_response", k)
                    extra = frame.filter(~pl.col("policy").is_in(old["policy"].unique().to_list()))
                    if extra.height:
                        wh.write_partition(db, "slot_response", k, pl.concat([old, extra], how="diagonal_relaxed"))
    if n:
        log(f"  imported {n} runs rows from {folder} (cells finished in an earlier session)")
    return n


def forget_policies(db: Path, folder: Path | None, experiment: str, policies: set[str],
                    log: Callable[[str], None]) -> int:
    """Delete every row of `policies` in experiment `experiment`: their `runs` partitions, their rows in the
    per-cell `slot_metrics` / `slot_response` partitions, and their rows in the exported files under `folder`
    (`export_cell`'s layout), each file rewritten whole or not at all. The cells then lack those policies,
    so the resumed sweep replays only them (`--redo-policies`); the other policies' rows are untouched.
    Returns the runs rows deleted."""
    if not policies:
        return 0
    wanted = sorted(policies)
    n = 0
    try:
        runs = wh.read_table(db, "runs")
    except Exception:  # no runs table yet
        runs = None
    cells: set[str] = set()
    if runs is not None and runs.height:
        gone = runs.filter((pl.col("experiment") == experiment) & pl.col("policy").is_in(wanted))
        for key, cell in zip(gone["key"].to_list(), gone["cell"].to_list()):
            wh.delete_partition(db, "runs", key)
            cells.add(cell)
            n += 1
    for table in ("slot_metrics", "slot_response"):
        for cell in sorted(cells):
            part = _read_part(db, table, f"{experiment}|{cell}", None)
            if part is not None and "policy" in part.columns:
                kept = part.filter(~pl.col("policy").is_in(wanted))
                if kept.height < part.height:
                    wh.write_partition(db, table, f"{experiment}|{cell}", kept)
    files = 0
    for table in ("runs", "slot_response"):
        for f in sorted((folder / table).glob("*.parquet")) if folder is not None else []:
            frame = pl.read_parquet(f)
            if frame.height == 0 or "policy" not in frame.columns or (
                    "experiment" in frame.columns and frame["experiment"][0] != experiment):
                continue
            kept = frame.filter(~pl.col("policy").is_in(wanted))
            if kept.height < frame.height:
                _write_export(kept, f)
                files += 1
    log(f"  forgot {', '.join(wanted)}: {n} runs rows in the warehouse, {files} exported files rewritten "
        "(their cells replay them)")
    return n


def done_cells(db: Path, exp: Experiment, cells: list[Cell], partial: dict | None = None
               ) -> tuple[set[str], str | None]:
    """Cells whose every policy has a runs row of this experiment made on the same protocol (window,
    warm-up, S); and the batch they were made in (resumed batches keep their name). `partial`, when
    given, is filled with the cells ("<key>|<role>") that have rows for only some of the wanted policies:
    {"have": policies with rows, "missing": the wanted ones without, "run_uid", "skylb_threshold"}."""
    try:
        runs = wh.read_table(db, "runs")
    except Exception:  # no runs table yet
        return set(), None
    if runs.height == 0 or "protocol_state_refresh_s" not in runs.columns:
        return set(), None
    runs = runs.filter((pl.col("experiment") == exp.name)
                       & (pl.col("protocol_state_refresh_s") == float(exp.state_refresh_s))
                       & (pl.col("warmup_h") == float(exp.warmup_h)))
    done, batch = set(), None
    for c in cells:
        want = set(exp.policies) | (set(exp.reference_policies()) if c.role == "test" else set())
        if c.role == "validation":
            want = set(exp.baselines)
        hours = exp.tune_hours if c.role == "validation" else exp.hours
        g = runs.filter((pl.col("cell") == c.key) & (pl.col("role") == c.role))
        if c.day != TRACE_DAY:
            g = g.filter(pl.col("hours") == float(hours))
        have = set(g["policy"].to_list())
        if want <= have:
            done.add(c.key + "|" + c.role)
            batch = batch or g["batch"][0]
        elif have and partial is not None:
            batch = batch or g["batch"][0]
            uid = g["run_uid"][0] if "run_uid" in g.columns else ""
            th = float(g["skylb_threshold"][0]) if "skylb_threshold" in g.columns else 0.0
            partial[c.key + "|" + c.role] = {"have": have, "missing": [p for p in (*exp.policies, *exp.reference_policies())
                                                                       if p in want - have],
                                             "run_uid": uid or "", "skylb_threshold": th}
    return done, batch


experiment_job = dg.define_asset_job("experiment_paper", selection=dg.AssetSelection.assets("experiment_cell"))


class _Sweep:
    """Launches the sweep's runs, one run of job `experiment_paper` per cell (the runs a Dagster multi-run
    backfill launches), through the chosen executor: `in_process` (here, one after another, on the given
    instance: tests, and `--workers 1` without `--executor`), `multiprocess` (Dagster's multiprocess
    executor: each run's step in its own spawned process, retried by the asset's retry policy if it dies)
    or `dask` (each run's step a task on the Dask cluster at `scheduler`, rescheduled by Dask if its worker
    dies). Out of process, each run is launched as Dagster's run launcher does, `dagster api execute_run`
    in a child process that dies with this one, `concurrency` runs in flight (the limit a queued run
    coordinator would apply). Runs are tagged with the batch, the command and the sweep id
    (`torta/sweep`): the UI's Runs page filters a sweep by that tag; the asset's Partitions tab shows which
    cells are materialized."""

    def __init__(self, executor: str, concurrency: int, instance, db: str, storage: str = "", scheduler: str = "",
                 sweep_id: str = ""):
        self.executor, self.concurrency, self.instance = executor, max(1, int(concurrency)), instance
        self.db, self.storage, self.scheduler, self.sweep_id = db, storage, scheduler, sweep_id
        self.resources = {"warehouse": WarehouseResource(database=db, storage=storage)}
        self.backfill = None  # pipelines.backfills.SweepBackfill: the sweep's record in the UI's Backfills

    def tags(self, key: str, cfg: dict) -> dict[str, str]:
        return {"batch": cfg["batch"], "command": cfg.get("command") or "torta experiment paper",
                "torta/sweep": self.sweep_id, "torta/executor": self.executor,
                **(self.backfill.run_tags if self.backfill else {})}

    def _finished(self, key: str, ok: bool) -> None:
        if self.backfill is not None:
            self.backfill.finished(key, ok)

    def _launch(self, key: str, run_config: dict):
        """Create the cell's run on the instance and start `dagster api execute_run` for it."""
        import subprocess
        import sys

        from dagster._grpc.types import ExecuteRunArgs
        from dagster_shared.serdes import serialize_value

        from pipelines.instance import job_origin
        from pipelines.pool import request_parent_death_signal

        recon = dg.build_reconstructable_job("pipelines.experiment", "cell_job", reconstructable_kwargs={
            "executor": self.executor, "scheduler": self.scheduler, "database": self.db, "storage": self.storage})
        tags = {**self.tags(key, run_config["ops"]["experiment_cell"]["config"]), "dagster/partition": key}
        run = self.instance.create_run_for_job(job_def=recon.get_definition(), run_config=run_config, tags=tags,
                                               job_code_origin=recon.get_python_origin(),
                                               remote_job_origin=job_origin("experiment_paper"))  # on the Timeline
        args = ExecuteRunArgs(job_origin=recon.get_python_origin(), run_id=run.run_id,
                              instance_ref=self.instance.get_ref(), set_exit_code_on_failure=True)
        proc = subprocess.Popen([sys.executable, "-m", "dagster", "api", "execute_run", serialize_value(args)],
                                stdout=subprocess.DEVNULL, preexec_fn=request_parent_death_signal,
                                # the run's events are in the instance (a failure's message is reported);
                                # TORTA_DAGSTER_LOG=DEBUG shows the run process's own log lines
                                stderr=None if os.environ.get("TORTA_DAGSTER_LOG") else subprocess.DEVNULL)
        return proc, run.run_id

    def _outcome(self, key: str, run_id: str) -> tuple[str | None, list[str]]:
        from dagster import DagsterEventType, DagsterRunStatus

        run = self.instance.get_run_by_id(run_id)
        checks = self.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        warnings = [f"warning: check {ev.dagster_event.event_specific_data.check_name} failed on "
                    f"experiment_cell [{key}]" for ev in checks if not ev.dagster_event.event_specific_data.passed]
        if run is not None and run.status == DagsterRunStatus.SUCCESS:
            return None, warnings
        from pipelines.pool import failure_message

        events = [e.dagster_event for e in self.instance.all_logs(run_id) if e.dagster_event]
        why = failure_message(events) if any(e.is_failure for e in events) else "the run process died"
        return f"experiment_paper [{key}] failed (run {run_id}): {why}", warnings

    def run(self, jobs: list[tuple[str, dict]], log: Callable[[str], None],
            on_done: Callable[[int, str, float], None]) -> None:
        """Run `jobs` (key, run_config), `concurrency` at a time (in_process: one after another). Stops
        launching at the first failure (runs in flight are ended; rows are written whole or not at
        all) and raises it."""
        if self.executor == "in_process":
            from pipelines.pool import run_job

            for i, (key, rc) in enumerate(jobs, 1):
                if self.backfill is not None:
                    self.backfill.check_canceled()  # Cancel on the backfill's page: before the next cell
                t = time.perf_counter()
                err, warnings = run_job("experiment_paper", self.instance, partition_key=key, run_config=rc,
                                        tags=self.tags(key, rc["ops"]["experiment_cell"]["config"]),
                                        resources=self.resources)
                for w in warnings:
                    log(w)
                self._finished(key, err is None)
                if err:
                    raise click.ClickException(err)
                on_done(i, key, time.perf_counter() - t)
            return
        pending, running, i, checked = list(jobs), {}, 0, time.monotonic()
        try:
            while pending or running:
                if self.backfill is not None and time.monotonic() - checked > 2.0:
                    self.backfill.check_canceled()  # Cancel on the backfill's page: ends the runs in flight
                    checked = time.monotonic()
                while pending and len(running) < self.concurrency:
                    key, rc = pending.pop(0)
                    proc, run_id = self._launch(key, rc)
                    running[proc] = (key, run_id, time.perf_counter())
                time.sleep(0.2)
                for proc in [p for p in running if p.poll() is not None]:
                    key, run_id, t = running.pop(proc)
                    err, warnings = self._outcome(key, run_id)
                    for w in warnings:
                        log(w)
                    self._finished(key, err is None)
                    if err:
                        raise click.ClickException(err)
                    i += 1
                    on_done(i, key, time.perf_counter() - t)
        finally:
            for proc in running:
                proc.terminate()
            for proc in running:
                proc.wait()


@contextlib.contextmanager
def _one_thread_children(on: bool):
    """While the sweep runs: children spawned by the multiprocess executor get one compute thread each and
    die with this process (pipelines.pool.WORKER_ENV, `TORTA_DIE_WITH_PARENT`), as the pool's workers do."""
    from pipelines.pool import WORKER_ENV, exported_env

    with exported_env({**WORKER_ENV, "TORTA_DIE_WITH_PARENT": "1"} if on else {}):
        yield


def cell_job(executor: str = "multiprocess", scheduler: str = "", database: str = "", storage: str = ""):
    """Job `experiment_paper` on `executor` with the warehouse bound to `database` / `storage`: what the
    sweep's runs execute (rebuilt by name in each step process and on each Dask worker:
    `dg.build_reconstructable_job("pipelines.experiment", "cell_job", ...)`)."""
    from pipelines.definitions import defs
    from pipelines.executors import executor_def

    job = dg.define_asset_job("experiment_paper", selection=dg.AssetSelection.assets("experiment_cell"),
                              executor_def=executor_def(executor, scheduler))
    d = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job],
                       resources={**(defs.resources or {}),
                                  "warehouse": WarehouseResource(database=database, storage=storage)})
    return d.resolve_job_def("experiment_paper")


def _run_config(cfg: dict) -> dict:
    # Dagster's per-event console lines would drown the progress lines: warnings and errors only.
    return {"ops": {"experiment_cell": {"config": cfg}},
            "loggers": {"console": {"config": {"log_level": os.environ.get("TORTA_DAGSTER_LOG", "WARNING")}}}}


def _available(exp: Experiment) -> set[str]:
    from torta.runs.experiment.runner import available_policies

    return available_policies(exp.scenarios, exp.policies)[0]


def plan_experiment(exp: Experiment, log: Callable[[str], None], workers: int = 1,
                    done: set[str] | None = None, partial: dict | None = None) -> tuple[Experiment, dict]:
    """Resolve the available policies, count the requests of one cell per workload, estimate the run
    time of the cells not yet `done` ("<cell key>|<role>")."""
    from torta.runs.experiment.runner import available_policies, cell_input, estimate_s

    avail, dropped = available_policies(exp.scenarios, exp.policies)
    exp = exp.with_policies(avail)
    if not exp.torta or not (exp.baselines or exp.paired_against):
        raise click.ClickException(f"experiment needs a baseline and a TORTA policy; left out: {dropped}")
    counts = {}
    done = done or set()
    left = {c.workload for c in exp.test_cells() + exp.validation_cells() if f"{c.key}|{c.role}" not in done}
    for c in exp.test_cells():  # a workload whose cells are all done is not built (a finished sweep: seconds)
        if c.workload not in counts and c.workload in left:
            counts[c.workload] = int(cell_input(c, exp.hours, exp.trace_hours, exp.warmup_h,
                                                exp.trace_warmup_h).requests.height)
    keys = {c.key for c in exp.test_cells() + exp.validation_cells()
            if f"{c.key}|{c.role}" in done}
    missing = {k.rsplit("|", 1)[0]: v["missing"] for k, v in (partial or {}).items()}
    est = estimate_s(exp, counts, workers, done=keys, missing=missing)
    cells = exp.test_cells()
    log(f"experiment {exp.name}: {len(exp.scenarios)} scenarios x ({len(exp.workloads)} multi-day workloads x "
        f"{len(exp.test_days)} test days + {len(exp.traces)} hour traces) x {exp.seeds} seeds = {len(cells)} "
        f"cells (+{len(exp.validation_cells())} validation), {len(exp.policies)} policies: "
        f"{', '.join(exp.policies)}" + (f"; reference {', '.join(exp.reference_policies())}"
                                        if exp.reference_policies() else ""))
    for p, why in dropped.items():
        log(f"  left out {p}: {why}")
    log("  requests per cell (warm-up included): " + ", ".join(f"{w} {n:,}" for w, n in counts.items())
        + f"; {exp.hours:g} h of each test day after {exp.warmup_h:g} h of warm-up, hour traces {exp.trace_hours:g} h "
        f"with the first {exp.trace_warmup_h:g} h unscored; load reports every {exp.state_refresh_s:g} s")
    if done:
        log(f"  {len(done)} cells already in the warehouse (skipped)")
    if partial:
        log(f"  {len(partial)} cells with rows for some policies: only the missing ones run ("
            + "; ".join(f"{k.rsplit('|', 1)[0]}: {', '.join(v['missing'])}" for k, v in partial.items()) + ")")
    log(f"  estimated run time {est / 60:.0f} min on this machine"
        + (f" with {workers} workers" if workers > 1 else "") + " for the cells left")
    return exp, {"requests_per_cell": counts, "estimate_s": est, "left_out": dropped}


def run_paper(exp: Experiment, database: str | None = None, batch: str | None = None,
              log: Callable[[str], None] | None = None, instance: dg.DagsterInstance | None = None,
              workers: int = 1, command: str = "", progress: bool = False, export_dir: str | Path | None = None,
              resume: bool = True, executor: str | None = None, scheduler: str = "", storage: str | None = None,
              redo: tuple[str, ...] = ()) -> dict:
    """Run the experiment end to end through Dagster materializations into the warehouse (on
    `instance`, default the local instance under DAGSTER_HOME). `workers` > 1: that many cells at a
    time, in a pool of worker processes on the DAGSTER_HOME instance (`instance` must then be None).
    `command`: how the batch was started, recorded in its runs rows. `export_dir`: each finished cell's
    rows are also written there (and, with `resume`, imported from there first). With `resume`, cells
    whose every policy already has a row of this experiment on the same protocol are skipped and their
    batch name is kept.
    `executor`: `multiprocess` (Dagster's multiprocess executor, `workers` cells at a time) or `dask` (the
    Dask cluster at `scheduler`, as many cells at a time as it has worker threads, or `workers` if > 1);
    default: `multiprocess` with `workers` > 1, else one cell after another in this process. `storage`: a
    directory or `s3://bucket/prefix` URL for the warehouse's partitions (pipelines.warehouse). `redo`:
    policies whose rows of this experiment are deleted first (`forget_policies`), so every cell replays them
    again (a policy whose code changed); an interrupted redo resumes without `redo`."""
    from pipelines.instance import dagster_home

    from pipelines.executors import EXECUTORS, check_scheduler

    log = log or (lambda m: click.echo(m, err=True))
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if (workers > 1 or executor) and instance is not None:
        raise ValueError("workers > 1 run on the Dagster instance under DAGSTER_HOME: pass no instance")
    if executor is not None and executor not in EXECUTORS:
        raise ValueError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if executor != "dask" and scheduler:
        raise ValueError("--scheduler is for --executor dask")
    executor = executor or ("multiprocess" if workers > 1 else "in_process")
    concurrency = workers
    if executor == "dask":
        threads = check_scheduler(scheduler)
        concurrency = workers if workers > 1 else max(1, threads)
    if database:
        os.environ["TORTA_WAREHOUSE"] = database
    db = wh.warehouse_path(database)
    if storage:
        wh.set_storage(db, storage)
    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))
    t0 = time.perf_counter()
    if redo:
        unknown = sorted(set(redo) - set(exp.policies))
        if unknown:
            raise ValueError(f"redo policies {unknown} are not among the experiment's policies {list(exp.policies)}")
    if export_dir and resume:
        import_exported(db, Path(export_dir), exp.name, log)
    if redo:
        forget_policies(db, Path(export_dir) if export_dir else None, exp.name, set(redo), log)
    val_all, test_all = exp.validation_cells(), exp.test_cells()
    avail_exp = exp.with_policies(_available(exp))
    partial: dict = {}
    done, done_batch = (done_cells(db, avail_exp, val_all + test_all, partial) if resume else (set(), None))
    batch = batch or done_batch or f"{exp.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    exp, info = plan_experiment(exp, log, workers, done, partial)
    common = {"experiment": exp.name, "batch": batch,
              "trace_hours": exp.trace_hours, "skylb_candidates": list(exp.skylb_candidates),
              "command": command, "workers": int(concurrency if executor == "dask" else workers), "warmup_h": float(exp.warmup_h),
              "trace_warmup_h": float(exp.trace_warmup_h) if exp.traces else 0.0,
              "state_refresh_s": float(exp.state_refresh_s), "export_dir": str(export_dir or "")}
    val = [c for c in exp.validation_cells() if f"{c.key}|{c.role}" not in done]
    test = [c for c in exp.test_cells() if f"{c.key}|{c.role}" not in done]
    thresholds: dict[tuple[str, str], float] = {}
    for c in exp.validation_cells():  # thresholds of validation cells done earlier
        if f"{c.key}|{c.role}" in partial and "skylb" in partial[f"{c.key}|{c.role}"]["have"]:
            thresholds[(c.scenario, c.workload)] = partial[f"{c.key}|{c.role}"]["skylb_threshold"]
        if f"{c.key}|{c.role}" in done:
            rows = wh.read_table(db, "runs", run_key(exp.name, c, exp.baselines[0]))
            if rows.height:
                thresholds[(c.scenario, c.workload)] = float(rows["skylb_threshold"][0])
    if executor == "multiprocess":
        log(f"  {workers} workers: cells run {workers} at a time (one process each; Dagster's multiprocess executor)")
    elif executor == "dask":
        log(f"  Dask cluster {scheduler}: cells run {concurrency} at a time on its workers")
    sweep_id = uuid.uuid4().hex[:12]
    with (contextlib.nullcontext(instance) if instance is not None else dg.DagsterInstance.get()) as instance, \
            _one_thread_children(executor != "in_process"):
        sweep = _Sweep(executor, concurrency, instance, str(db), wh.storage_url(db) or "", scheduler, sweep_id)
        instance.add_dynamic_partitions("experiment_cells", list(dict.fromkeys(c.key for c in val_all + test_all)))
        # The sweep as a backfill in the UI (Runs -> Backfills): its cells, its runs, its status.
        record = sweep_backfill(
            instance, dg.AssetKey("experiment_cell"), experiment_partitions, [c.key for c in val + test],
            tags={"batch": batch, "command": command or "torta experiment paper", "torta/sweep": sweep_id,
                  "torta/experiment": exp.name, "torta/executor": executor},
            title=f"{exp.name} {batch}"[:100],
            description=f"{command or 'torta experiment paper'}: {len(val)} validation + {len(test)} test cells "
                        f"({len(done)} already in the warehouse), executor {executor}")
        with record as sweep.backfill:
            _sweep_cells(sweep, exp, db, common, val, test, done, thresholds, log, progress, t0, partial)
    wh.refresh_views(db)
    wall = time.perf_counter() - t0
    log(f"experiment {exp.name} done in {wall / 60:.1f} min (estimate was {info['estimate_s'] / 60:.0f} min); "
        f"batch {batch}")
    return {"experiment": exp.name, "batch": batch, "warehouse": str(db), "wall_s": wall, "workers": int(workers),
            "executor": executor, "scheduler": scheduler, "storage": wh.storage_url(db) or "", "sweep": sweep_id,
            "backfill": sweep.backfill.backfill_id if sweep.backfill else None, "command": command,
            "estimate_s": info["estimate_s"], "cells": len(test), "validation_cells": len(val),
            "skipped_cells": len(done), "partial_cells": {k: v["missing"] for k, v in partial.items()},
            "policies": list(exp.policies), "left_out": info["left_out"],
            "requests_per_cell": info["requests_per_cell"]}


def _sweep_cells(sweep: _Sweep, exp: Experiment, db: Path, common: dict, val: list[Cell], test: list[Cell],
                 done: set[str], thresholds: dict[tuple[str, str], float], log: Callable[[str], None], progress: bool,
                 t0: float, partial: dict | None = None) -> None:
    """The validation cells (each tunes its scenario's SkyLB threshold), then the test cells. A cell in
    `partial` (rows for some of its policies already) replays only its missing policies, with its recorded
    run_uid and SkyLB threshold; its other rows stay as they are."""
    partial = partial or {}
    by_key = {c.key: c for c in val}
    val_cfg = {**common, "role": "validation", "hours": exp.tune_hours,
               "policies": [p for p in exp.policies if p in exp.baselines]}

    def only_missing(c: Cell, cfg: dict) -> dict:
        part = partial.get(f"{c.key}|{c.role}")
        if not part:
            return cfg
        out = {**cfg, "policies": [p for p in cfg["policies"] if p in part["missing"]], "run_uid": part["run_uid"]}
        if "skylb" in part["have"]:  # its threshold stays as recorded (tuned once)
            out["skylb_threshold"] = part["skylb_threshold"] or cfg.get("skylb_threshold", 0.0)
        return out

    def val_done(i: int, key: str, cell_s: float) -> None:
        c = by_key[key]
        sky = wh.read_table(db, "runs", run_key(exp.name, c, exp.baselines[0]))
        thresholds[(c.scenario, c.workload)] = float(sky["skylb_threshold"][0])
        log(f"[validation {i}/{len(val)}] {c.key}: skylb threshold {thresholds[(c.scenario, c.workload)]:g} "
            f"({cell_s:.0f} s)")

    sweep.run([(c.key, _run_config(only_missing(c, val_cfg))) for c in val], log, val_done)

    from torta.commands.options import StepBar

    bar = StepBar(len(test), "test cells", progress)

    def test_done(i: int, key: str, cell_s: float) -> None:
        el = time.perf_counter() - t0
        (bar.log if progress else log)(f"[test {i}/{len(test)}] {key} ({cell_s:.0f} s; elapsed {el / 60:.1f} "
                                       f"min, eta {el / i * (len(test) - i) / 60:.1f} min; "
                                       f"cells done {len(done) + len(val) + i}/{len(done) + len(val) + len(test)})")
        bar.step()

    policies = [*exp.policies, *exp.reference_policies()]
    jobs = [(c.key, _run_config(only_missing(c, {**common, "role": "test", "policies": policies,
                                                 "hours": exp.hours if c.day != TRACE_DAY else exp.trace_hours,
                                                 "skylb_threshold": thresholds.get((c.scenario, c.workload), 0.0)})))
            for c in test]
    try:
        sweep.run(jobs, log, test_done)
    finally:
        bar.close()


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
    try:
        slots = wh.read_table(wh.warehouse_path(database), "slot_response")
        slots = slots.filter(pl.col("batch") == batch) if slots.height and "batch" in slots.columns else None
    except Exception:  # no per-slot rows (batches from before they were recorded)
        slots = None
    planned = None
    if experiment in ("paper", "paper-reduced"):  # the definition's test cells, at the batch's seeds
        from torta.runs.experiment.definition import paper_experiment

        seeds = int(runs["seed"].max()) + 1 if runs.height else None
        planned = [c.key for c in paper_experiment(reduced=experiment == "paper-reduced", seeds=seeds).test_cells()]
    text = render_results(runs, batch=batch, figures_dir=Path(figures), md_dir=out.parent, wall_s=wall_s, note=note,
                          slot_response=slots, planned_cells=planned)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return {"results": str(out), "batch": batch, "runs": runs.height}


def write_ablations(database: str | None = None, batch: str | None = None, out: str | Path = "docs/ABLATIONS.md",
                    wall_s: float | None = None, paper_export: str | Path | None = "docs/data/paper",
                    export_dir: str | Path | None = "docs/data/ablation") -> dict:
    """Render docs/ABLATIONS.md from the warehouse's runs of the ablation experiment (batch: the latest),
    with the paper experiment's rows (the PPO on / off pair, the reference's reproduction). The committed
    rows under `export_dir` (the ablation's) and `paper_export` (the paper experiment's) are imported first
    where the warehouse lacks them: a fresh warehouse renders what earlier sessions ran."""
    from torta.runs.experiment.ablation import render_ablations
    from torta.runs.experiment.definition import ablation_experiment

    db = wh.warehouse_path(database)
    imported = 0
    for folder, name in ((export_dir, "ablation"), (paper_export, "paper")):
        if folder and Path(folder).is_dir():
            imported += import_exported(db, Path(folder), name, lambda m: None)
    if imported:
        wh.refresh_views(db)
    runs, batch = load_runs(database, "ablation", batch)
    try:
        paper, _ = load_runs(database, "paper")
    except wh.WarehouseError:  # no paper experiment in this warehouse
        paper = None
    seeds = int(runs["seed"].max()) + 1 if runs.height else None
    planned = [c.key for c in ablation_experiment(seeds=seeds).test_cells()]
    text = render_ablations(runs, batch=batch, paper_runs=paper, planned_cells=planned, wall_s=wall_s)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return {"results": str(out), "batch": batch, "runs": runs.height}
