"""Group `replay` (beside the replays that load it): TORTA's PPO macro policy trained per scenario and variant (days 2-10 of the
workload train, day 11 selects). The checkpoint is a state dict (`checkpoints/<scenario>-<variant>.pt`,
loaded with `weights_only=True`); the training curves go to the warehouse (`training_curves`) and a
plot beside the report."""

from pathlib import Path

import dagster as dg
import polars as pl

from pipelines.lineage import content_version
from pipelines.partitions import scenario_partitions
from pipelines.report import default_report_dir
from pipelines.resources import WarehouseResource
from torta.report.figures import training_curves as plot_curves
from torta.rl.train import TrainConfig, config_meta, default_checkpoint, save_checkpoint, train

VARIANTS = ("torta", "torta-no-forecast")  # the registered PPO policies trained on the plain surrogate

training_partitions = dg.MultiPartitionsDefinition({
    "scenario": scenario_partitions,
    "variant": dg.StaticPartitionsDefinition(list(VARIANTS)),
})


class TrainingConfig(dg.Config):
    workload: str = "servegen-mix-14d"
    seed: int = 0
    updates: int = 250  # the default abilene training: within ~10 minutes on 2 cores
    n_envs: int = 16
    checkpoint_dir: str = ""  # empty: $TORTA_CHECKPOINTS or the repository's checkpoints/


@dg.asset(partitions_def=training_partitions, group_name="replay", kinds={"pytorch"})
def trained_policy(context: dg.AssetExecutionContext, config: TrainingConfig,
                   warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Train one PPO variant for one scenario; save the checkpoint, store and plot the curves."""
    keys = context.partition_key.keys_by_dimension
    scenario, variant = keys["scenario"], keys["variant"]
    cfg = TrainConfig(variant=variant, updates=config.updates, n_envs=config.n_envs)
    state, curves = train(scenario, config.workload, config.seed, cfg, progress=True, log=context.log.info)
    path = (Path(config.checkpoint_dir) / f"{scenario}-{variant}.pt" if config.checkpoint_dir
            else default_checkpoint(scenario, variant))
    save_checkpoint(state, path, {"scenario": scenario, "workload": config.workload, "seed": config.seed,
                                  "variant": variant, "config": config_meta(cfg),
                                  "command": f"dagster asset trained_policy [{scenario}|{variant}]"})
    key = f"{scenario}|{variant}"
    warehouse.write("training_curves", key, curves.with_columns(
        scenario=pl.lit(scenario), variant=pl.lit(variant), workload=pl.lit(config.workload),
        seed=pl.lit(config.seed)))
    warehouse.refresh_views()
    plot_dir = default_report_dir(warehouse.db_path) / "training"
    plot_dir.mkdir(parents=True, exist_ok=True)
    png = plot_curves(curves, plot_dir / f"{scenario}-{variant}.png", f"PPO training: {scenario}, {variant}")
    last = curves.tail(1).to_dicts()[0] if curves.height else {}
    return dg.MaterializeResult(metadata={
        "checkpoint": dg.MetadataValue.path(str(path)), "plot": dg.MetadataValue.path(str(png)),
        "updates": curves.height, "final_episode_return": float(f"{float(last.get('episode_return') or 0.0):.4g}"),
        "source": "trained"}, data_version=content_version(path))


def record_committed_checkpoints(instance: dg.DagsterInstance, scenario: str) -> list[str]:
    """The checkpoints committed in `checkpoints/` are what the learned policies load: record each
    one of `scenario` as a (runless) materialization of its `trained_policy` partition, with the
    file's content hash as data version, unless that version is already the latest. Returns the
    partition keys recorded. Replays depend on trained_policy, so a changed checkpoint marks them stale."""
    from dagster._core.definitions.data_version import (DATA_VERSION_IS_USER_PROVIDED_TAG, DATA_VERSION_TAG,
                                                        extract_data_version_from_entry)

    recorded = []
    key = dg.AssetKey("trained_policy")
    for variant in VARIANTS:
        path = default_checkpoint(scenario, variant)
        if not path.exists():
            continue
        version = content_version(path).value
        pk = dg.MultiPartitionKey({"scenario": scenario, "variant": variant})
        latest = instance.get_latest_data_version_record(key, partition_key=str(pk))
        old = extract_data_version_from_entry(latest.event_log_entry) if latest is not None else None
        if old is not None and old.value == version:
            continue
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=key, partition=str(pk),
            metadata={"checkpoint": dg.MetadataValue.path(str(path)), "source": "committed checkpoint"},
            tags={DATA_VERSION_TAG: version, DATA_VERSION_IS_USER_PROVIDED_TAG: "true"}))
        recorded.append(str(pk))
    return recorded
