"""The Dagster asset graph tells the truth: replays downstream of the trace, fleet, forecast and
checkpoint assets; a changed trace marks dependent replays stale (an unchanged re-run does not);
checks are per partition; groups, named jobs and metadata mean something."""

from __future__ import annotations

from collections import Counter

import dagster as dg
import polars as pl
import pytest

from pipelines.definitions import defs
from pipelines.resources import WarehouseResource

INPUTS = {"requests", "demand", "demand_forecasts", "topology", "fleet", "price_curves", "trained_policy"}
KEY = "abilene|azure-2023-code|least-loaded|0"


def _parents(graph, name: str) -> set[str]:
    return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}


def test_replays_are_downstream_of_their_inputs():
    graph = defs.resolve_asset_graph()
    assert INPUTS <= _parents(graph, "replay_run")
    assert INPUTS <= _parents(graph, "experiment_cell")
    assert {"replay_run", "demand_forecasts", "warehouse_views"} <= _parents(graph, "report")
    # every group holds more than one asset
    groups = Counter(graph.get(k).group_name for k in graph.get_all_asset_keys())
    assert min(groups.values()) >= 2, groups


def test_named_jobs_and_nightly_schedule():
    for name in ("main", "nightly", "experiment_paper", "ingest_traces", "build_fleet", "forecast_demand",
                 "build_report"):
        assert defs.resolve_job_def(name) is not None
    assert defs.resolve_schedule_def("nightly_replays").job_name == "nightly"


def _stale_resolver(instance):
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._time import get_current_datetime

    graph = defs.resolve_asset_graph()
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=graph)
    return CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)


def _materialize_requests(instance, resources, frame=None, monkeypatch=None):
    from pipelines.assets import ingest

    if frame is not None:
        monkeypatch.setattr(ingest, "load_trace", lambda name: frame)
    res = dg.materialize([ingest.requests], partition_key="azure-2023-code", instance=instance, resources=resources)
    assert res.success


def test_changed_trace_marks_dependent_replays_stale(warehouse_db, monkeypatch):
    from dagster._core.definitions.data_version import StaleStatus

    from pipelines.assets import replay
    from torta.traces import load_trace

    resources = {"warehouse": WarehouseResource(database=str(warehouse_db))}
    with dg.instance_for_test() as instance:
        _materialize_requests(instance, resources)
        instance.add_dynamic_partitions("replays", [KEY])
        res = dg.materialize([replay.replay_run], partition_key=KEY, instance=instance, resources=resources,
                             run_config={"ops": {"replay_run": {"config": {"hours": 0.05, "batch": "lin"}}}})
        assert res.success
        # the checks are per partition
        evals = res.get_asset_check_evaluations()
        assert {e.check_name for e in evals} == {"conservation", "plan_rows_sum_to_one", "headline_not_regressed"}
        assert {e.partition for e in evals} == {KEY}
        meta = res.get_asset_materialization_events()[0].materialization.metadata
        assert {"slo_attainment", "goodput_per_s", "ttft_mean_s", "runs_parquet"} <= set(meta)
        assert meta["runs_parquet"].value.startswith("file://")

        key = dg.AssetKey("replay_run")
        assert _stale_resolver(instance).get_status(key, KEY) == StaleStatus.FRESH
        _materialize_requests(instance, resources)  # same trace again: same content version, still fresh
        assert _stale_resolver(instance).get_status(key, KEY) == StaleStatus.FRESH
        changed = load_trace("azure-2023-code").head(500)
        _materialize_requests(instance, resources, changed, monkeypatch)  # the trace changed
        resolver = _stale_resolver(instance)
        assert resolver.get_status(key, KEY) == StaleStatus.STALE
        causes = resolver.get_stale_causes(key, KEY)
        assert any(c.dependency and c.dependency.asset_key == dg.AssetKey("requests") for c in causes), causes


def test_committed_checkpoints_are_recorded_once(tmp_path):
    from pipelines.assets.training import VARIANTS, record_committed_checkpoints
    from torta.rl.train import default_checkpoint

    present = [v for v in VARIANTS if default_checkpoint("abilene", v).exists()]
    if not present:
        pytest.skip("no committed abilene checkpoints")
    with dg.instance_for_test() as instance:
        first = record_committed_checkpoints(instance, "abilene")
        assert sorted(first) == sorted(f"abilene|{v}" for v in present)
        assert record_committed_checkpoints(instance, "abilene") == []  # unchanged: nothing new
        mats = instance.get_materialized_partitions(dg.AssetKey("trained_policy"))
        assert set(first) <= set(mats)


def test_fleet_metadata_has_units_table_and_link(warehouse_db):
    from pipelines.assets import fleet

    resources = {"warehouse": WarehouseResource(database=str(warehouse_db))}
    res = dg.materialize([fleet.topology], partition_key="abilene", resources=resources)
    meta = res.get_asset_materialization_events()[0].materialization.metadata
    assert isinstance(meta["regions_table"], dg.TableMetadataValue) and meta["regions_table"].records
    assert meta["parquet"].value.startswith("file://") and "latency_max_ms" in meta
    assert pl.read_parquet(meta["parquet"].value.removeprefix("file://")).height == meta["regions"].value
