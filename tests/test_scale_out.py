"""Sweeps beyond one machine (issue 19): the experiment's cells as runs on Dagster's multiprocess executor
and on a Dask cluster (a `dask scheduler` and `dask worker` processes on 127.0.0.1, started and stopped
here), the warehouse's partitions on S3-compatible storage (moto's server on 127.0.0.1), bad flags."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from torta.runs.experiment.definition import paper_experiment

BIN = Path(sys.executable).parent
CHILD_ENV = {"POT_BACKEND_DISABLE_PYTORCH": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "OPENBLAS_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1", "RAYON_NUM_THREADS": "1"}
COLS = ["cell", "role", "policy", "requests", "completed", "dropped", "response_mean_s", "cost_usd", "switches",
        "skylb_threshold"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    t = time.monotonic()
    while time.monotonic() - t < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s")


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextmanager
def dask_cluster(workers: int, dagster_home: Path):
    """`dask scheduler` and `workers` x `dask worker` (no nanny, one thread each) on 127.0.0.1."""
    from distributed import Client

    port = _free_port()
    env = {**os.environ, **CHILD_ENV, "DAGSTER_HOME": str(dagster_home)}
    logs = open(dagster_home / "dask.log", "w")
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=logs, stderr=logs)]
    try:
        _wait_port(port, procs[0])
        address = f"tcp://127.0.0.1:{port}"
        for _ in range(workers):
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--host", "127.0.0.1",
                                           "--nworkers", "1", "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                                          env=env, stdout=logs, stderr=logs))
        with Client(address, timeout=30) as c:
            c.wait_for_workers(workers, timeout=120)
        yield address, procs
    finally:
        _stop(procs)
        logs.close()


def _runs(db: Path) -> pl.DataFrame:
    from pipelines import warehouse as wh

    return wh.read_table(db, "runs")


def _one_set_per_cell(db: Path) -> None:
    from pipelines import warehouse as wh

    runs = _runs(db)
    assert runs["key"].n_unique() == runs.height  # one runs row per (cell, policy)
    slots = wh.read_table(db, "slot_metrics")
    # every slot row belongs to a runs row of the same run_uid: one set of rows per cell
    joined = slots.join(runs.select("key", "run_uid"), on=["key", "run_uid"], how="anti")
    assert joined.height == 0
    per = slots.group_by("key").agg(pl.col("run_uid").n_unique())
    assert per["run_uid"].max() == 1


def test_bad_placement_flags_fail_with_one_line(tmp_path):
    """`--executor dask` without `--scheduler`, an unreachable scheduler, a bad storage scheme: exit 2."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dh"), "TORTA_WAREHOUSE": str(tmp_path / "wh.duckdb")}
    cases = [(["--executor", "dask"], "--scheduler"),
             (["--executor", "dask", "--scheduler", f"tcp://127.0.0.1:{_free_port()}"], "no Dask scheduler answered"),
             (["--executor", "dask", "--scheduler", "127.0.0.1:1"], "expected tcp://HOST:PORT"),
             (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler is for --executor dask"),
             (["--storage", "gs://bucket/x"], "--storage 'gs://bucket/x': unsupported scheme"),
             (["--executor", "ray"], "--executor")]
    for args, msg in cases:
        r = subprocess.run([str(BIN / "torta"), "experiment", "paper", "--reduced", "--no-results", *args],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert msg in r.stderr and len(lines) == 1, (args, r.stderr)
    assert not (tmp_path / "wh.duckdb").exists()


def test_a_sweep_on_a_dask_cluster_writes_each_cell_once(tmp_path, monkeypatch):
    """CI's case of the distributed executor: two cells (validation, test) as runs whose steps execute on
    two `dask worker` processes."""
    from pipelines.experiment import run_paper

    home = tmp_path / "dh"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    db = tmp_path / "wh" / "torta.duckdb"
    exp = paper_experiment(reduced=True, hours=0.02, seeds=1, traces=(), policies=("least-loaded", "torta-ot-last"))
    with dask_cluster(2, home) as (address, _):
        out = run_paper(exp, str(db), batch="dask", log=lambda m: None, executor="dask", scheduler=address)
    assert out["executor"] == "dask" and out["cells"] == 1 and out["validation_cells"] == 1
    runs = _runs(db)
    assert runs.height == 1 * 1 + 1 * 3  # validation: 1 baseline; test: 2 policies + the S = 0 reference
    assert ((runs["completed"] + runs["dropped"]) == runs["requests"]).all()
    _one_set_per_cell(db)
    with dg.DagsterInstance.get() as inst:  # one run per cell, tagged with the sweep and the executor
        recs = inst.get_run_records(dg.RunsFilter(tags={"torta/sweep": out["sweep"]}))
        assert len(recs) == 2 and {r.dagster_run.tags["torta/executor"] for r in recs} == {"dask"}
        assert {r.dagster_run.status for r in recs} == {dg.DagsterRunStatus.SUCCESS}
        assert len(inst.get_materialized_partitions(dg.AssetKey("experiment_cell"))) == 2
        # the sweep's backfill record (the UI's Backfills): finished, both cells, both runs under it
        from dagster._core.execution.backfill import BulkActionStatus

        bf = inst.get_backfill(out["backfill"])
        assert bf.status == BulkActionStatus.COMPLETED_SUCCESS and bf.tags["torta/executor"] == "dask"
        assert {r.dagster_run.tags["dagster/backfill"] for r in recs} == {bf.backfill_id}
        assert {r.dagster_run.remote_job_origin.location_name for r in recs} == {"torta"}  # on the Timeline
        cells = bf.asset_backfill_data.materialized_subset.get_partitions_subset(dg.AssetKey("experiment_cell"))
        assert set(cells.get_partition_keys()) == {r.dagster_run.tags["dagster/partition"] for r in recs}


def _kill_a_busy_worker(address: str, stop: threading.Event, killed: list) -> None:
    """SIGKILL the first worker seen running a cell for 3 s (mid-cell)."""
    from distributed import Client

    with Client(address, timeout=30) as c:
        pids = c.run(os.getpid)
        busy_since: dict[str, float] = {}
        while not stop.is_set() and not killed:
            for worker, tasks in c.processing().items():
                if tasks:
                    busy_since.setdefault(worker, time.monotonic())
                    if time.monotonic() - busy_since[worker] > 3.0 and worker in pids:
                        os.kill(pids[worker], signal.SIGKILL)
                        killed.append(worker)
                        break
                else:
                    busy_since.pop(worker, None)
            time.sleep(0.2)


@pytest.mark.slow
def test_reduced_experiment_on_dask_with_a_killed_worker_equals_the_single_process_run(tmp_path, monkeypatch):
    """Acceptance (issue 19): the reduced experiment's 6 cells (2 validation, 4 test) through a Dask
    scheduler and two workers, one worker SIGKILLed mid-cell: the cell is run again elsewhere and the
    warehouse holds the same rows as the single-process run, none duplicated."""
    from pipelines.experiment import run_paper

    home = tmp_path / "dh"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    exp = paper_experiment(reduced=True, hours=0.02, policies=("least-loaded", "skylb", "torta-ot-last"))
    assert len(exp.test_cells()) + len(exp.validation_cells()) >= 6
    db1, db2 = tmp_path / "one" / "torta.duckdb", tmp_path / "dask" / "torta.duckdb"
    with dg.DagsterInstance.ephemeral() as inst:
        run_paper(exp, str(db1), batch="one", log=lambda m: None, instance=inst)
    killed: list = []
    stop = threading.Event()
    with dask_cluster(2, home) as (address, _):
        killer = threading.Thread(target=_kill_a_busy_worker, args=(address, stop, killed), daemon=True)
        killer.start()
        try:
            out = run_paper(exp, str(db2), batch="dask", log=lambda m: None, executor="dask", scheduler=address)
        finally:
            stop.set()
            killer.join(30)
        again = run_paper(exp, str(db2), log=lambda m: None, executor="dask", scheduler=address)
    assert killed, "no worker was killed mid-cell"
    assert out["cells"] == 4 and out["validation_cells"] == 2
    assert again["cells"] == 0 and again["skipped_cells"] == 6 and again["batch"] == "dask"  # resumed: nothing new
    one, two = _runs(db1), _runs(db2)
    assert two.height == one.height == 2 * 2 + 4 * 4
    assert two.select(COLS).sort("cell", "role", "policy").equals(one.select(COLS).sort("cell", "role", "policy"))
    _one_set_per_cell(db2)


@pytest.mark.slow
def test_multiprocess_executor_retries_a_killed_step_and_races_do_not_duplicate(tmp_path, monkeypatch):
    """Dagster's multiprocess executor runs each cell's step in its own process; one killed mid-cell is
    retried by the asset's retry policy. The cell's rows equal those of an in-process run (which is
    also a second sweep racing on the same cell into the same warehouse): one set of rows."""
    from pipelines import experiment as pe

    home = tmp_path / "dh"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    db = tmp_path / "wh" / "torta.duckdb"
    exp = paper_experiment(reduced=True, hours=0.02, seeds=1, traces=(), policies=("least-loaded", "torta-ot-last"))
    killed: list[int] = []
    stop = threading.Event()

    def kill_step_once() -> None:  # the first step process (child of a run process) seen for 3 s
        import psutil

        me, since = psutil.Process(), {}
        while not stop.is_set() and not killed:
            for p in me.children(recursive=True):
                try:
                    if "multiprocessing.spawn" in " ".join(p.cmdline()) and p.parent().pid != me.pid:
                        since.setdefault(p.pid, time.monotonic())
                        if time.monotonic() - since[p.pid] > 3.0:
                            p.kill()
                            killed.append(p.pid)
                            break
                except psutil.Error:
                    pass
            time.sleep(0.2)

    t = threading.Thread(target=kill_step_once, daemon=True)
    t.start()
    try:
        out = pe.run_paper(exp, str(db), batch="mp", log=lambda m: None, executor="multiprocess", workers=1)
    finally:
        stop.set()
        t.join(30)
    assert killed and out["executor"] == "multiprocess" and out["cells"] == 1
    with dg.DagsterInstance.get() as inst:
        recs = inst.get_run_records(dg.RunsFilter(tags={"torta/sweep": out["sweep"]}))
        retried = [e for r in recs for e in inst.all_logs(r.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)]
        assert retried and {r.dagster_run.status for r in recs} == {dg.DagsterRunStatus.SUCCESS}
    first = _runs(db)
    with dg.DagsterInstance.ephemeral() as inst:  # the same cells again, fresh, into the same warehouse
        pe.run_paper(exp, str(db), batch="mp", log=lambda m: None, instance=inst, resume=False)
    again = _runs(db)
    assert again.height == first.height == 1 + 3
    assert again.select(COLS).sort("cell", "role", "policy").equals(first.select(COLS).sort("cell", "role", "policy"))
    _one_set_per_cell(db)


@contextmanager
def moto_s3(tmp_path: Path):
    """moto's S3-compatible server on 127.0.0.1 (its server mode), credentials and endpoint in the env."""
    port = _free_port()
    logs = open(tmp_path / "moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=logs, stderr=logs)
    try:
        _wait_port(port, proc)
        yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    finally:
        _stop([proc])
        logs.close()


def test_warehouse_partitions_on_s3_compatible_storage(tmp_path, monkeypatch):
    """`--storage s3://bucket/prefix`: the cells' partitions are objects on the S3 server (none on local
    disk); the views read them through the registered fsspec filesystem and `torta sql` answers."""
    import json

    from pipelines import warehouse as wh
    from pipelines.experiment import run_paper

    with moto_s3(tmp_path) as s3env:
        for k, v in s3env.items():
            monkeypatch.setenv(k, v)
        fs = wh.object_fs()
        fs.mkdir("torta-results")
        db = tmp_path / "wh" / "torta.duckdb"
        exp = paper_experiment(reduced=True, hours=0.02, seeds=1, traces=(), policies=("least-loaded", "torta-ot-last"))
        with dg.DagsterInstance.ephemeral() as inst:
            out = run_paper(exp, str(db), batch="s3", log=lambda m: None, instance=inst,
                            storage="s3://torta-results/sweep")
        assert out["storage"] == "s3://torta-results/sweep" and out["cells"] == 1
        assert len(fs.glob("s3://torta-results/sweep/runs/*.parquet")) == 4
        assert not (db.parent / "parquet").exists()
        env = {**os.environ, **s3env}
        r = subprocess.run([str(BIN / "torta"), "sql", "select policy, count(*) n from runs group by policy order by 1",
                            "--warehouse", str(db), "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
        assert {x["policy"] for x in rows} == {"least-loaded", "torta-ot-last", "least-loaded@S0"}
        assert sum(x["n"] for x in rows) == 4
        r = subprocess.run([str(BIN / "torta"), "sql", "select * from read_parquet('/etc/passwd')",
                            "--warehouse", str(db)], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2  # still only the warehouse's own files
