"""The sweep's Dagster backfill record (pipelines/backfills.py): what the UI's Backfills page lists, on a
real instance under tmp_path. A real backfill-daemon iteration (Dagster's own `execute_backfill_iteration`
over the project's code location, loaded in-process) leaves a running sweep's record alone: it launches
no run. The end-to-end record of a real sweep is checked in tests/test_experiment.py."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG

from pipelines.backfills import DRIVER_TAG, SweepBackfill, SweepCanceled, close_orphans, sweep_backfill
from pipelines.experiment import experiment_partitions
from pipelines.instance import CODE_LOCATION, execute_here, job_origin

ASSET = dg.AssetKey("experiment_cell")
KEYS = ["abilene|servegen-mix-14d|0|11", "abilene|servegen-mix-14d|0|12", "abilene|servegen-mix-14d|1|12"]


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as inst:
        inst.add_dynamic_partitions("experiment_cells", KEYS)
        yield inst


def _parts(subset) -> set[str]:
    return set(subset.get_partitions_subset(ASSET).get_partition_keys()) if ASSET in subset.asset_keys else set()


def _in_flight_run(instance, bf: SweepBackfill, key: str):
    """A run of the sweep's job for `key`, STARTED (what the driver has in flight), tagged with the backfill."""
    from pipelines.definitions import defs

    job = defs.resolve_job_def("experiment_paper")
    return instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED,
                                       run_config={"ops": {"experiment_cell": {"config": {"policies": ["skylb"]}}}},
                                       tags={**bf.run_tags, "dagster/partition": key},
                                       remote_job_origin=job_origin("experiment_paper"))


def _daemon_tick(instance) -> list:
    """One iteration of Dagster's backfill daemon over the project's definitions (code location `torta`)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    from pipelines.warehouse import REPO_ROOT

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name="pipelines.definitions",
                             working_directory=str(REPO_ROOT)), location_name=CODE_LOCATION)
    with create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as ctx:
        return list(execute_backfill_iteration(ctx, logging.getLogger("test-backfill-daemon")))


def test_a_sweep_record_is_requested_with_every_cell_and_a_daemon_tick_launches_nothing(instance):
    bf = SweepBackfill.open(instance, ASSET, experiment_partitions, [KEYS[0], KEYS[1], KEYS[2], KEYS[0]],
                            tags={"batch": "b1", "torta/sweep": "s1"}, title="paper-reduced b1")
    rec = instance.get_backfill(bf.backfill_id)
    assert rec.status == BulkActionStatus.REQUESTED and rec.is_asset_backfill and rec.title == "paper-reduced b1"
    assert rec.tags["batch"] == "b1" and rec.tags[DRIVER_TAG].endswith(f":{os.getpid()}")
    data = rec.asset_backfill_data
    assert _parts(data.target_subset) == _parts(data.requested_subset) == set(KEYS)
    assert data.requested_runs_for_target_roots and _parts(data.materialized_subset) == set()
    assert [b.backfill_id for b in instance.get_backfills(filters=BulkActionsFilter(tags={"torta/sweep": "s1"}))] \
        == [bf.backfill_id]

    # the first cell is in flight; a daemon ticking now (torta ui on the same instance) requests nothing
    run = _in_flight_run(instance, bf, KEYS[0])
    errors = _daemon_tick(instance)
    assert [e for e in errors if e is not None] == []
    assert instance.get_runs_count() == 1
    rec = instance.get_backfill(bf.backfill_id)
    assert rec.status == BulkActionStatus.REQUESTED and not rec.submitting_run_requests
    assert _parts(rec.asset_backfill_data.requested_subset) == set(KEYS)

    # KEYS[0] runs twice in this sweep (validation and test role): materialized after its second run
    bf.finished(KEYS[0], True)
    assert _parts(instance.get_backfill(bf.backfill_id).asset_backfill_data.materialized_subset) == set()
    bf.finished(KEYS[1], True)
    bf.finished(KEYS[0], True)
    rec = instance.get_backfill(bf.backfill_id)
    assert rec.status == BulkActionStatus.REQUESTED
    assert _parts(rec.asset_backfill_data.materialized_subset) == {KEYS[0], KEYS[1]}

    # a tick in the gap between two runs (none in flight) may judge it stalled; the next update restores it
    instance.delete_run(run.run_id)
    _daemon_tick(instance)
    print("after a tick with no run in flight:", instance.get_backfill(bf.backfill_id).status)
    assert instance.get_runs_count() == 0
    bf.finished(KEYS[2], True)
    bf.close(BulkActionStatus.COMPLETED_SUCCESS)
    rec = instance.get_backfill(bf.backfill_id)
    assert rec.status == BulkActionStatus.COMPLETED_SUCCESS and rec.backfill_end_timestamp is not None
    assert _parts(rec.asset_backfill_data.materialized_subset) == set(KEYS)
    assert _parts(rec.asset_backfill_data.failed_and_downstream_subset) == set()

    # a finished record is not the daemon's: another tick leaves it as it is
    _daemon_tick(instance)
    assert instance.get_backfill(bf.backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    assert instance.get_runs_count() == 0


def test_the_block_ends_the_record_failed_canceled_or_completed_and_honours_a_ui_cancel(instance):
    with sweep_backfill(instance, ASSET, experiment_partitions, KEYS[:2], {"batch": "ok"}) as ok:
        for k in KEYS[:2]:
            ok.finished(k, True)
    assert ok.record().status == BulkActionStatus.COMPLETED_SUCCESS

    with pytest.raises(RuntimeError, match="cell broke"):
        with sweep_backfill(instance, ASSET, experiment_partitions, KEYS, {"batch": "bad"}) as bad:
            bad.finished(KEYS[0], True)
            bad.finished(KEYS[1], False)
            raise RuntimeError("cell broke")
    rec = bad.record()
    assert rec.status == BulkActionStatus.FAILED and "cell broke" in rec.error.message
    assert _parts(rec.asset_backfill_data.materialized_subset) == {KEYS[0]}
    assert _parts(rec.asset_backfill_data.failed_and_downstream_subset) == {KEYS[1]}

    with pytest.raises(KeyboardInterrupt):
        with sweep_backfill(instance, ASSET, experiment_partitions, KEYS, {"batch": "term"}) as term:
            os.kill(os.getpid(), signal.SIGTERM)  # raised as KeyboardInterrupt inside the block
    assert term.record().status == BulkActionStatus.CANCELED
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back

    with sweep_backfill(instance, ASSET, experiment_partitions, [], {"batch": "none"}) as nothing:
        assert nothing is None  # nothing to run: no record
    assert len(instance.get_backfills()) == 3

    # Cancel in the UI (CANCELING) stands against the driver's updates; the runs left are canceled
    with pytest.raises(SweepCanceled):
        with sweep_backfill(instance, ASSET, experiment_partitions, KEYS, {"batch": "ui"}) as ui:
            run = _in_flight_run(instance, ui, KEYS[1])
            ui.finished(KEYS[0], True)
            instance.update_backfill(ui.record().with_status(BulkActionStatus.CANCELING))
            ui.finished(KEYS[2], True)
            assert ui.record().status == BulkActionStatus.CANCELING
            ui.check_canceled()
    assert ui.record().status == BulkActionStatus.CANCELED
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED


def test_a_killed_drivers_record_is_closed_by_the_next_sweep(instance):
    bf = SweepBackfill.open(instance, ASSET, experiment_partitions, KEYS, {"batch": "killed"})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    rec = bf.record()
    host = rec.tags[DRIVER_TAG].rpartition(":")[0]
    instance.update_backfill(rec._replace(tags={**rec.tags, DRIVER_TAG: f"{host}:{gone.pid}"}))
    alive = SweepBackfill.open(instance, ASSET, experiment_partitions, KEYS, {"batch": "alive"})  # this process
    assert close_orphans(instance) == [bf.backfill_id]
    assert bf.record().status == BulkActionStatus.FAILED and "ended before" in bf.record().error.message
    assert alive.record().status == BulkActionStatus.REQUESTED


def test_runs_executed_here_carry_the_code_location_the_timeline_needs(instance):
    """The UI's Timeline drops runs without a remote origin (execute_in_process leaves it empty)."""
    @dg.asset
    def tiny() -> int:
        return 1

    job = dg.Definitions(assets=[tiny], jobs=[dg.define_asset_job("tiny_job", "tiny")]).resolve_job_def("tiny_job")
    result = execute_here(job, instance, tags={"batch": "t"})
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    assert run.job_name == "tiny_job" and run.tags["batch"] == "t" and run.tags["dagster/code_location"] == "torta"
    origin = run.remote_job_origin
    assert (origin.location_name, origin.repository_origin.repository_name, origin.job_name) == \
        ("torta", "__repository__", "tiny_job")
    assert BACKFILL_ID_TAG not in run.tags
