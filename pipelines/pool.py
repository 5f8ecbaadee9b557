"""Runs of named Dagster jobs, one partition each, on the local instance: here, or N at a time in a
pool of spawned worker processes (`torta run` replays, `torta experiment paper --workers N`).

Each run is a real run of a job from `pipelines.definitions` (name, tags and partition show in the UI
and its Timeline); each writes its own warehouse partitions, which are atomic per file, so concurrent
runs never clash. Workers get one compute thread each (N workers on N cores must not oversubscribe
them: torch, BLAS and polars default to one thread per core).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterator

import dagster as dg

# Exported while the pool lives, so spawned workers see them before importing those libraries.
WORKER_ENV = {v: "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                               "POLARS_MAX_THREADS", "RAYON_NUM_THREADS")}

PR_SET_PDEATHSIG = 1  # linux/prctl.h

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # progress lines are ours


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def request_parent_death_signal() -> None:
    """On Linux, ask the kernel to SIGTERM this process when the process that started it dies
    (PR_SET_PDEATHSIG); elsewhere nothing (the process then ends when its current work does). SIGTERM's
    default action is restored first: an ignored or blocked SIGTERM is inherited through fork and exec
    (from a test runner or a shell that set it so), and would swallow the parent-death signal."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def exported_env(env: dict[str, str]) -> Iterator[None]:
    """`env` in os.environ while the block runs (children spawned in it inherit it), restored after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _die_with_parent(parent_pid: int, initializer: Callable | None, initargs: tuple) -> None:
    """Worker start-up: SIGTERM when the process that started it dies (`request_parent_death_signal`), so
    that a killed `torta experiment paper` or `torta run` leaves no orphan still replaying a cell (a
    cell's rows are written only when it finishes: nothing half-written remains). Then the pool's own
    initializer."""
    request_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def worker_pool(workers: int, initializer: Callable | None = None, initargs: tuple = ()) -> Iterator[cf.Executor]:
    """A pool of `workers` spawned processes with one compute thread each (`WORKER_ENV`) that die with
    this process (`_die_with_parent`)."""
    with exported_env(WORKER_ENV), \
            cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                   initializer=_die_with_parent,
                                   initargs=(os.getpid(), initializer, initargs)) as pool:
        yield pool


def run_job(job_name: str, instance: dg.DagsterInstance, *, partition_key: str | None = None,
            run_config: dict | None = None, tags: dict[str, str] | None = None,
            asset_selection: list[str] | None = None, resources: dict | None = None) -> tuple[str | None, list[str]]:
    """One run of the named job of `pipelines.definitions`, here (in-process executor), placed under code
    location `torta` so the UI's Timeline shows it (pipelines.instance.execute_here): (error message or
    None, check warnings). `resources` replaces the definitions' resources (the warehouse) for this run."""
    from pipelines.definitions import defs
    from pipelines.instance import execute_here

    if resources:  # Definitions.merge refuses a second value for a key: rebuild with the override
        defs = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                              schedules=defs.schedules, sensors=defs.sensors,
                              resources={**(defs.resources or {}), **resources})
    job = defs.resolve_job_def(job_name)
    result = execute_here(
        job, instance, run_config={**QUIET, **(run_config or {})}, partition_key=partition_key, tags=tags,
        asset_selection=[dg.AssetKey(a) for a in asset_selection] if asset_selection else None)
    where = f" [{partition_key}]" if partition_key else ""
    warnings = [f"warning: check {ev.check_name} failed on {ev.asset_key.to_user_string()}{where}"
                for ev in result.get_asset_check_evaluations() if not ev.passed]
    if not result.success:
        return f"{job_name}{where} failed: {failure_message(result.all_events)}", warnings
    return None, warnings


def failure_message(events) -> str:
    """The first failure's error (a step's exception, first line; through a retry policy's wrapper to the
    exception that caused it), else the run's failure message."""
    failed = [e for e in events if e.is_failure]
    for e in failed:
        error = getattr(e.event_specific_data, "error", None)
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None and error.message.strip():
            return f"{error.cls_name + ': ' if error.cls_name else ''}{error.message.strip().splitlines()[0]}"
    return failed[-1].message if failed else "?"


_WORKER: dict = {}


def _init_worker() -> None:
    _WORKER["instance"] = dg.DagsterInstance.get()  # DAGSTER_HOME, inherited from the parent


def _worker_run(job_name: str, partition_key: str, run_config: dict, tags: dict) -> tuple[str, str | None, list[str], float]:
    import torch

    torch.set_num_threads(1)
    t = time.perf_counter()
    err, warnings = run_job(job_name, _WORKER["instance"], partition_key=partition_key, run_config=run_config,
                            tags=tags)
    return partition_key, err, warnings, time.perf_counter() - t


def run_partitions(job_name: str, keys: list[str], *, run_config: dict, tags: dict[str, str], workers: int,
                   instance: dg.DagsterInstance, on_done: Callable[[int, str, float, str | None, list[str]], None]
                   ) -> list[str]:
    """Run `job_name` once per partition key, `workers` at a time (1: here, one after another).
    Calls `on_done(i, key, seconds, error, warnings)` as each finishes; returns the keys that failed."""
    failed: list[str] = []
    if workers <= 1:
        for i, key in enumerate(keys, 1):
            t = time.perf_counter()
            err, warnings = run_job(job_name, instance, partition_key=key, run_config=run_config, tags=tags)
            on_done(i, key, time.perf_counter() - t, err, warnings)
            if err:
                failed.append(key)
                break
        return failed
    with worker_pool(min(workers, len(keys)), _init_worker) as pool:
        futures = [pool.submit(_worker_run, job_name, key, run_config, tags) for key in keys]
        try:
            for i, fut in enumerate(cf.as_completed(futures), 1):
                key, err, warnings, secs = fut.result()
                on_done(i, key, secs, err, warnings)
                if err:
                    failed.append(key)
                    break
        finally:
            for f in futures:
                f.cancel()
    return failed
