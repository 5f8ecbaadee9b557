"""Schedules, sensors and concurrency of the Dagster pipeline, for real: ticks evaluated against an
instance, two replays materializing at once in separate `dagster asset materialize` processes
(multiprocess executor) into one warehouse."""

import os
import shutil
import subprocess
import sys
import datetime as dt

import dagster as dg
import pytest

from pipelines import warehouse as wh
from pipelines.assets import incoming
from pipelines.definitions import defs
from pipelines.resources import WarehouseResource
from pipelines.schedules import nightly_runs
from torta.traces import shipped_traces


def test_nightly_schedule_requests_every_configured_run():
    sched = defs.resolve_schedule_def("nightly_replays")
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def(),
                                        scheduled_execution_time=dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.timezone.utc))
        result = sched.evaluate_tick(ctx)
        assert set(instance.get_dynamic_partitions("replays")) == {k for k, _ in nightly_runs()}
    keys = [r.partition_key for r in result.run_requests]
    assert keys == [k for k, _ in nightly_runs()]
    assert len(set(r.run_key for r in result.run_requests)) == len(keys)
    batch = result.run_requests[0].run_config["ops"]["replay_run"]["config"]["batch"]
    assert batch == "nightly-2026-01-05"


def test_incoming_sensor_ingests_a_dropped_trace(tmp_path, monkeypatch, warehouse_db):
    folder = tmp_path / "incoming"
    folder.mkdir()
    monkeypatch.setenv("TORTA_INCOMING_DIR", str(folder))
    shutil.copy(shipped_traces()["azure-2023-code"].path, folder / "code-hour.csv")
    sensor = defs.resolve_sensor_def("incoming_traces_sensor")
    with dg.instance_for_test() as instance:
        # direct invocation: evaluate_tick would validate the key before the daemon adds the partition
        result = sensor(dg.build_sensor_context(instance=instance))
        assert [r.partition_key for r in result.run_requests] == ["code-hour.csv"]
        (add,) = result.dynamic_partitions_requests
        assert list(add.partition_keys) == ["code-hour.csv"]
        instance.add_dynamic_partitions("incoming_traces", ["code-hour.csv"])
        res = dg.materialize([incoming.incoming_requests], partition_key="code-hour.csv", instance=instance,
                             resources={"warehouse": WarehouseResource(database=str(warehouse_db))})
        assert res.success
        # a second tick sees the file as known: no new partition
        again = sensor(dg.build_sensor_context(instance=instance))
        assert again.dynamic_partitions_requests == [] or not list(again.dynamic_partitions_requests[0].partition_keys)
    n = wh.query(warehouse_db, "select count(*) as n from requests where source = 'incoming/code-hour.csv'")["n"][0]
    assert n == 8819


def test_two_replays_at_once_neither_fail_nor_lose_rows(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    db = tmp_path / "wh" / "torta.duckdb"
    env = dict(os.environ, DAGSTER_HOME=str(home), TORTA_WAREHOUSE=str(db))
    keys = ["single-region|azure-2023-code|least-loaded|0", "single-region|azure-2023-code|round-robin|1"]
    subprocess.run([sys.executable, "-c", "import dagster as dg; i = dg.DagsterInstance.get(); "
                    f"i.add_dynamic_partitions('replays', {keys!r})"], env=env, check=True, timeout=120)
    procs = [subprocess.Popen([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pipelines.definitions",
                               "--select", "replay_run", "--partition", key,
                               "--config-json", '{"ops": {"replay_run": {"config": {"hours": 0.1}}}}'],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for key in keys]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    runs = wh.query(db, "select key, requests from runs order by key")
    assert runs["key"].to_list() == sorted(keys)
    counts = wh.query(db, "select key, count(*) as n, count(distinct request_id) as u from completions "
                          "group by key order by key")
    assert counts["n"].to_list() == runs["requests"].to_list() == counts["u"].to_list()


def test_a_killed_replay_leaves_no_rows(tmp_path):
    """SIGKILL a materialization while its replay runs: the warehouse shows no rows of that run,
    and the earlier run of another key is untouched."""
    import signal
    import time

    db = tmp_path / "wh" / "torta.duckdb"
    env = dict(os.environ, TORTA_WAREHOUSE=str(db))
    script = ("import dagster as dg, sys\n"
              "from pipelines.assets import replay\n"
              "from pipelines.resources import WarehouseResource\n"
              "key = sys.argv[1]; hours = float(sys.argv[2])\n"
              "i = dg.DagsterInstance.ephemeral(); i.add_dynamic_partitions('replays', [key])\n"
              "r = dg.materialize([replay.replay_run], partition_key=key, instance=i,\n"
              "    resources={'warehouse': WarehouseResource()},\n"
              "    run_config={'ops': {'replay_run': {'config': {'hours': hours}}}})\n"
              "sys.exit(0 if r.success else 1)\n")
    done = "single-region|azure-2023-code|least-loaded|0"
    subprocess.run([sys.executable, "-c", script, done, "0.05"], env=env, check=True, timeout=300)
    victim = "abilene|servegen-mix-14d|least-loaded|0"
    proc = subprocess.Popen([sys.executable, "-c", script, victim, "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = db.parent / "parquet" / ".staging"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and not any(staging.glob("**/completions.parquet*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (time.monotonic() - t0) < 120, "the replay never started writing"
    wh.refresh_views(db)
    keys = wh.query(db, "select distinct key from runs")["key"].to_list()
    assert keys == [done]
    assert wh.query(db, "select count(*) as n from completions where key = $k", {"k": victim})["n"][0] == 0
    assert wh.query(db, "select count(distinct key) as n from completions")["n"][0] == 1


@pytest.mark.slow
def test_a_killed_rematerialization_keeps_the_previous_result(tmp_path):
    """SIGKILL a re-materialization of a key while its replay runs: the previous result of that key stays
    visible and whole (runs row, completions), and policy_comparison still shows it."""
    import signal
    import time

    db = tmp_path / "wh" / "torta.duckdb"
    env = dict(os.environ, TORTA_WAREHOUSE=str(db))
    script = ("import dagster as dg, sys\n"
              "from pipelines.assets import replay\n"
              "from pipelines.resources import WarehouseResource\n"
              "key = sys.argv[1]; hours = float(sys.argv[2])\n"
              "i = dg.DagsterInstance.ephemeral(); i.add_dynamic_partitions('replays', [key])\n"
              "r = dg.materialize([replay.replay_run], partition_key=key, instance=i,\n"
              "    resources={'warehouse': WarehouseResource()},\n"
              "    run_config={'ops': {'replay_run': {'config': {'hours': hours}}}})\n"
              "sys.exit(0 if r.success else 1)\n")
    key = "abilene|servegen-mix-14d|least-loaded|0"
    subprocess.run([sys.executable, "-c", script, key, "0.05"], env=env, check=True, timeout=300)
    before = wh.query(db, "select requests from runs where key = $k", {"k": key})["requests"].to_list()
    assert len(before) == 1 and before[0] > 0
    proc = subprocess.Popen([sys.executable, "-c", script, key, "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = db.parent / "parquet" / ".staging"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and not any(staging.glob("**/completions.parquet*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (time.monotonic() - t0) < 120, "the replay never started writing"
    wh.refresh_views(db)
    assert wh.query(db, "select requests from runs where key = $k", {"k": key})["requests"].to_list() == before
    n = wh.query(db, "select count(*) as n from completions where key = $k", {"k": key})["n"][0]
    assert n == before[0]
    assert wh.query(db, "select policy from policy_comparison")["policy"].to_list() == ["least-loaded"]
