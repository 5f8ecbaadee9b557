"""The replay group: a real replay materialized into a warehouse under tmp_path, its checks, and
the views over it."""

import dagster as dg
import polars as pl

from pipelines import warehouse as wh
from pipelines.assets import replay
from pipelines.resources import WarehouseResource

KEY = "single-region|azure-2023-code|least-loaded|0"


def _materialize(db, key=KEY, hours=0.1, batch="b1"):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("replays", [key])
    return dg.materialize([replay.replay_run], partition_key=key, instance=instance,
                          resources={"warehouse": WarehouseResource(database=str(db))},
                          run_config={"ops": {"replay_run": {"config": {"hours": hours, "batch": batch}}}})


def test_replay_partition_writes_runs_completions_and_slots(warehouse_db):
    res = _materialize(warehouse_db)
    assert res.success
    checks = {c.check_name: c.passed for c in res.get_asset_check_evaluations()}
    assert checks == {"conservation": True, "plan_rows_sum_to_one": True, "headline_not_regressed": True}
    runs = wh.query(warehouse_db, "select * from runs")
    assert runs.height == 1 and runs["key"][0] == KEY
    n = wh.query(warehouse_db, "select count(*) as n from completions where key = $k", {"k": KEY})["n"][0]
    assert n == runs["requests"][0] > 0
    assert runs["completed"][0] + runs["dropped"][0] == n
    pc = wh.query(warehouse_db, "select * from policy_comparison")
    assert pc["policy"].to_list() == ["least-loaded"] and pc["seeds"][0] == 1
    lb = wh.query(warehouse_db, "select * from load_balance_over_time")
    assert lb.height >= 1 and (lb["jain_index"] <= 1.0 + 1e-9).all()
    slo = wh.query(warehouse_db, "select * from slo_attainment")
    assert 0.0 <= slo["slo_attainment"][0] <= 1.0


def test_rematerializing_replaces_rows(warehouse_db):
    _materialize(warehouse_db, batch="b1")
    first = wh.query(warehouse_db, "select count(*) as n from completions")["n"][0]
    res = _materialize(warehouse_db, batch="b2")
    assert res.success
    assert wh.query(warehouse_db, "select count(*) as n from completions")["n"][0] == first
    assert wh.query(warehouse_db, "select count(*) as n from runs")["n"][0] == 1
    assert wh.query(warehouse_db, "select batch from policy_comparison")["batch"][0] == "b2"


def test_orphan_rows_of_a_killed_run_stay_invisible(warehouse_db):
    _materialize(warehouse_db)
    # a replay killed after writing its completions but before its runs row
    orphan = wh.read_table(warehouse_db, "completions", KEY).with_columns(key=pl.lit("x|y|z|9"))
    wh.write_partition(warehouse_db, "completions", "x|y|z|9", orphan)
    wh.refresh_views(warehouse_db)
    keys = wh.query(warehouse_db, "select distinct key from completions")["key"].to_list()
    assert keys == [KEY]


def test_plans_of_a_planning_policy_are_stored_and_rows_sum_to_one(warehouse_db):
    key = "abilene|azure-2023-code|local-only|0"
    res = _materialize(warehouse_db, key=key, hours=0.5)
    assert res.success
    assert all(c.passed for c in res.get_asset_check_evaluations())
    plans = wh.query(warehouse_db, "select slot, model, origin_region, sum(share) as s from plans "
                                   "where key = $k group by all", {"k": key})
    # 12 origins per planned slot (two slots of arrivals, then slots while the queues drain), one plan for all models
    assert plans.height % 12 == 0 and plans.height >= 24
    assert set(plans["model"].to_list()) == {"*"}
    assert ((plans["s"] - 1.0).abs() < 1e-9).all()


def test_unknown_scenario_or_policy_in_a_partition_key_lists_the_valid_names(warehouse_db):
    import pytest

    from torta.errors import UnknownNameError
    from torta.runs.spec import RunSpec, execute

    with pytest.raises(UnknownNameError, match="valid: abilene"):
        execute(RunSpec.from_key("nowhere|azure-2023-code|least-loaded|0"))
    with pytest.raises(UnknownNameError, match="least-loaded"):
        execute(RunSpec.from_key("abilene|azure-2023-code|nobody|0"))
    with pytest.raises(ValueError, match="scenario\\|workload\\|policy\\|seed"):
        RunSpec.from_key("abilene|azure-2023-code")


def test_a_failed_rematerialization_keeps_the_previous_result(warehouse_db):
    """A re-materialization that dies in its replay step (here: a load factor outside the limits) leaves the
    previous runs row and its completions visible: replace, never delete-then-write."""
    other = "single-region|azure-2023-code|round-robin|0"
    assert _materialize(warehouse_db, batch="b1").success
    assert _materialize(warehouse_db, key=other, batch="b1").success
    before = wh.query(warehouse_db, "select key, requests from runs order by key")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("replays", [KEY])
    res = dg.materialize([replay.replay_run], partition_key=KEY, instance=instance, raise_on_error=False,
                         resources={"warehouse": WarehouseResource(database=str(warehouse_db))},
                         run_config={"ops": {"replay_run": {"config": {"hours": 0.1, "load_factor": 1e-300}}}})
    assert not res.success
    wh.refresh_views(warehouse_db)
    assert wh.query(warehouse_db, "select key, requests from runs order by key").equals(before)
    pc = wh.query(warehouse_db, "select policy from policy_comparison order by policy")
    assert pc["policy"].to_list() == ["least-loaded", "round-robin"]
    n = wh.query(warehouse_db, "select count(*) as n from completions where key = $k", {"k": KEY})["n"][0]
    assert n == before.filter(pl.col("key") == KEY)["requests"][0]


def test_rematerializing_leaves_one_version_of_each_partition(warehouse_db):
    _materialize(warehouse_db, batch="b1")
    _materialize(warehouse_db, batch="b2")
    uid = wh.read_table(warehouse_db, "runs", KEY)["run_uid"][0]
    for table in ("completions", "slot_metrics", "plans"):
        files = wh.partition_files(warehouse_db, table, KEY)
        assert [f.name for f in files] == [wh.partition_file(warehouse_db, table, KEY, uid).name]
    assert not list((warehouse_db.parent / "parquet").rglob("*.tmp"))
