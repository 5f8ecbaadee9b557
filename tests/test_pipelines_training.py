"""The planning group: a (tiny) PPO training materialized for real: checkpoint as a state dict
loadable with weights_only=True, curves in the warehouse and plotted."""

import dagster as dg
import torch

from pipelines import warehouse as wh
from pipelines.assets import training
from pipelines.resources import WarehouseResource


def test_trained_policy_partition(tmp_path, warehouse_db, monkeypatch):
    monkeypatch.setenv("TORTA_REPORT_DIR", str(tmp_path / "report"))
    key = dg.MultiPartitionKey({"scenario": "abilene", "variant": "torta"})
    res = dg.materialize([training.trained_policy], partition_key=key,
                         resources={"warehouse": WarehouseResource(database=str(warehouse_db))},
                         run_config={"ops": {"trained_policy": {"config": {
                             "updates": 2, "n_envs": 2, "checkpoint_dir": str(tmp_path / "ckpt")}}}})
    assert res.success
    state = torch.load(tmp_path / "ckpt" / "abilene-torta.pt", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    curves = wh.query(warehouse_db, "select * from training_curves where scenario = $s and variant = $v",
                      {"s": "abilene", "v": "torta"})
    assert curves.height == 2 and curves["update"].to_list() == sorted(curves["update"].to_list())
    assert (tmp_path / "report" / "training" / "abilene-torta.png").stat().st_size > 10_000
