"""A Dagster backfill record for a sweep the command line runs (`torta experiment paper`), so that the
UI lists it under Runs -> Backfills (Overview -> Backfills), with its partitions, status and runs.

Dagster's backfills are normally executed by the daemon, which launches one run per requested
partition with the backfill's run config. A sweep cannot be run that way: every cell needs its own
config (the SkyLB threshold its validation cell tuned), its runs go through the chosen executor
(in this process, Dagster's multiprocess executor, or a Dask cluster), and the driver skips finished
cells. So the driver launches the runs itself and keeps an *asset backfill* record up to date
(`SweepBackfill`), as the daemon would:

- created REQUESTED (the UI: "In progress") with every partition of the sweep already in
  `requested_subset` and `requested_runs_for_target_roots` set. A daemon that ticks while the sweep
  runs (`torta ui` serves the same instance) therefore requests nothing: its iteration only scans the
  materializations of runs tagged with the backfill (the same ones the driver records) and launches no
  run (tests/test_backfills.py runs a real daemon iteration on such a record);
- each run of the sweep carries `dagster/backfill=<id>` (Dagster's BACKFILL_ID_TAG), so the backfill
  page lists its runs and the Runs page groups them under it; as a partition's runs finish it joins the
  materialized (or failed) subset;
- the driver ends it: COMPLETED_SUCCESS (every cell materialized), FAILED (a cell failed and the sweep
  stopped; the error is shown on the backfill page), CANCELED (Ctrl-C / SIGTERM). All three are
  terminal: the daemon's backfill loop only picks up REQUESTED, CANCELING and FAILING records.
- Cancel on the backfill's page (the UI sets it CANCELING) stops the sweep: the driver checks the
  record between runs (every few seconds while runs are in flight), ends its runs in flight, marks them
  and the record CANCELED and exits with one line (`SweepCanceled`). A cell running in the driver's
  own process (no `--workers`/`--executor`) finishes first;
- a driver killed outright (SIGKILL, a lost node) leaves its record REQUESTED; the next sweep on the
  same host finds the driver's pid gone (tag `torta/driver`) and marks that record FAILED
  (`close_orphans`).

If a daemon's tick falls in the instant between two of the sweep's runs (no run in flight), it may
judge the record stalled and mark it COMPLETED_FAILED; the driver's next update sets it back to
REQUESTED with the true subsets, and its final status is the driver's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

import click
import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.execution.asset_backfill import AssetBackfillData
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus, PartitionBackfill
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.utils import make_new_backfill_id
from dagster._utils.error import SerializableErrorInfo

DRIVER_TAG = "torta/driver"  # host:pid of the process that runs the sweep


def _driver() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SweepCanceled(click.ClickException):
    """The sweep's backfill was canceled from the UI."""


class SweepBackfill:
    """The backfill record of one sweep over partitions of one asset. `open(...)` creates it; `run_tags`
    go on every run of the sweep; `finished(key, ok)` as each run ends; `close(status, error)` at the end.
    A partition that runs more than once in the sweep (a validation and a test cell share the key of an
    hour trace) counts as materialized once all its runs succeeded."""

    def __init__(self, instance: dg.DagsterInstance, backfill_id: str, asset: dg.AssetKey,
                 partitions_def: dg.PartitionsDefinition, runs_per_key: Mapping[str, int]):
        self.instance, self.backfill_id, self.asset = instance, backfill_id, asset
        self.partitions_def = partitions_def
        self.left = Counter(runs_per_key)
        self.materialized: set[str] = set()
        self.failed: set[str] = set()

    @classmethod
    def open(cls, instance: dg.DagsterInstance, asset: dg.AssetKey, partitions_def: dg.PartitionsDefinition,
             keys: Iterable[str], tags: Mapping[str, str], title: str | None = None,
             description: str | None = None) -> SweepBackfill:
        """Create the REQUESTED record for `keys` (in run order; repeats allowed) of `asset`."""
        runs_per_key = Counter(keys)
        self = cls(instance, make_new_backfill_id(), asset, partitions_def, runs_per_key)
        now = time.time()
        target = self._subset(runs_per_key)
        data = AssetBackfillData.empty(target, now, instance)._replace(
            requested_subset=target, requested_runs_for_target_roots=True)
        instance.add_backfill(PartitionBackfill(
            backfill_id=self.backfill_id, status=BulkActionStatus.REQUESTED, from_failure=False,
            tags={**tags, DRIVER_TAG: _driver()}, backfill_timestamp=now, asset_selection=[asset],
            title=title, description=description, asset_backfill_data=data))
        return self

    @property
    def run_tags(self) -> dict[str, str]:
        return {BACKFILL_ID_TAG: self.backfill_id}

    def _subset(self, keys: Iterable[str]) -> AssetGraphSubset:
        with partition_loading_context(dynamic_partitions_store=self.instance):
            subset = self.partitions_def.subset_with_partition_keys(list(dict.fromkeys(keys)))
        return AssetGraphSubset(partitions_subsets_by_asset_key={self.asset: subset})

    def record(self) -> PartitionBackfill:
        return self.instance.get_backfill(self.backfill_id)

    def check_canceled(self) -> None:
        """Raise SweepCanceled if Cancel was pressed on the backfill's page (status CANCELING)."""
        if self.record().status in (BulkActionStatus.CANCELING, BulkActionStatus.CANCELED):
            raise SweepCanceled(f"the sweep was canceled from the Dagster UI (backfill {self.backfill_id}); "
                                "finished cells are kept, the same command resumes")

    def _write(self, status: BulkActionStatus, error: SerializableErrorInfo | None = None) -> None:
        current = self.record()
        if status == BulkActionStatus.REQUESTED and current.status in (BulkActionStatus.CANCELING,
                                                                       BulkActionStatus.CANCELED):
            status = current.status  # a cancel from the UI stands (check_canceled acts on it)
        data = current.asset_backfill_data
        data = data._replace(materialized_subset=data.materialized_subset | self._subset(self.materialized),
                             failed_and_downstream_subset=self._subset(self.failed))
        bf = current._replace(asset_backfill_data=data, serialized_asset_backfill_data=None, status=status,
                              error=error)
        bf = bf._replace(backfill_end_timestamp=None) if status in (BulkActionStatus.REQUESTED,
                                                                    BulkActionStatus.CANCELING) \
            else bf.with_end_timestamp(time.time())
        self.instance.update_backfill(bf)

    def finished(self, key: str, ok: bool) -> None:
        """One run of partition `key` ended (`ok`: it succeeded)."""
        if not ok:
            self.failed.add(key)
        self.left[key] -= 1
        if self.left[key] <= 0 and key not in self.failed:
            self.materialized.add(key)
        self._write(BulkActionStatus.REQUESTED)

    def close(self, status: BulkActionStatus, error: BaseException | str | None = None) -> None:
        """End the record with `status` (COMPLETED_SUCCESS, FAILED or CANCELED); `error` is shown in
        the UI."""
        info = None
        if error is not None:
            msg = error if isinstance(error, str) else (getattr(error, "message", None) or str(error)
                                                        or type(error).__name__)
            info = SerializableErrorInfo(message=msg, stack=[], cls_name=None if isinstance(error, str)
                                         else type(error).__name__)
        self._write(status, info)
        if status != BulkActionStatus.COMPLETED_SUCCESS:
            self._cancel_unfinished_runs()

    def _cancel_unfinished_runs(self) -> None:
        """The record's runs that did not reach a final status (in flight when the sweep stopped and
        ended by the driver, or marked CANCELING by the daemon's cancel, which cannot reach runs it did
        not launch): CANCELED."""
        from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

        for run in self.instance.get_runs(filters=dg.RunsFilter(tags=self.run_tags,
                                                                statuses=list(NOT_FINISHED_STATUSES))):
            self.instance.report_run_canceled(run, message="the sweep's backfill was canceled")


def close_orphans(instance: dg.DagsterInstance) -> list[str]:
    """Mark FAILED the REQUESTED backfills of sweeps (tag `torta/driver`) whose driver ran on this host
    and is gone (a sweep killed outright); returns their ids."""
    host = socket.gethostname()
    closed = []
    for bf in instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])):
        h, _, pid = (bf.tags or {}).get(DRIVER_TAG, "").rpartition(":")
        if h != host or not pid.isdigit() or _alive(int(pid)):
            continue
        info = SerializableErrorInfo(message=f"the sweep's driver (pid {pid}) ended before the sweep finished; "
                                             "a later sweep resumes from the finished cells", stack=[],
                                     cls_name=None)
        instance.update_backfill(bf.with_status(BulkActionStatus.FAILED).with_error(info)
                                 .with_end_timestamp(time.time()))
        closed.append(bf.backfill_id)
    return closed


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the block runs (main thread only), so that a terminated
    sweep ends its runs and its record (CANCELED) as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sweep_backfill(instance: dg.DagsterInstance, asset: dg.AssetKey, partitions_def: dg.PartitionsDefinition,
                   keys: list[str], tags: Mapping[str, str], title: str | None = None,
                   description: str | None = None) -> Iterator[SweepBackfill | None]:
    """The sweep's backfill record while the block runs (None when `keys` is empty: nothing to run,
    no record): COMPLETED_SUCCESS when the block ends, FAILED with the error when it raises,
    CANCELED on Ctrl-C or SIGTERM. Orphaned records of killed sweeps are closed first."""
    close_orphans(instance)
    if not keys:
        yield None
        return
    bf = SweepBackfill.open(instance, asset, partitions_def, keys, tags, title, description)
    try:
        with _sigterm_as_interrupt():
            yield bf
    except KeyboardInterrupt:
        bf.close(BulkActionStatus.CANCELED, "the sweep was interrupted (Ctrl-C or SIGTERM)")
        raise
    except SweepCanceled:
        bf.close(BulkActionStatus.CANCELED, "the sweep was canceled from the Dagster UI")
        raise
    except BaseException as exc:
        bf.close(BulkActionStatus.FAILED, exc)
        raise
    bf.close(BulkActionStatus.COMPLETED_SUCCESS)
