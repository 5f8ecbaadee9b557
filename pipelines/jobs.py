"""Jobs, schedules and sensors."""

import dagster as dg

from pipelines.assets.incoming import incoming_job, incoming_traces_sensor
from pipelines.experiment import experiment_job
from pipelines.schedules import build_nightly

ingest_job = dg.define_asset_job("ingest_traces", selection=dg.AssetSelection.assets("requests"))
fleet_job = dg.define_asset_job("build_fleet", selection=dg.AssetSelection.groups("fleet"))
forecast_job = dg.define_asset_job("forecast_demand", selection=dg.AssetSelection.groups("demand"))
train_job = dg.define_asset_job("train_policies", selection=dg.AssetSelection.assets("trained_policy"))
replay_job = dg.define_asset_job("replay", selection=dg.AssetSelection.assets("replay_run"))
main_job = dg.define_asset_job(
    "main", selection=dg.AssetSelection.assets("replay_run"),
    description="`torta run` / `make run`: one run per replay partition of a batch (tags `batch`, `command`); "
                "its set-up stages run as ingest_traces, build_fleet and forecast_demand, its report as "
                "build_report, with the same tags.")
nightly_job = dg.define_asset_job(
    "nightly", selection=dg.AssetSelection.assets("replay_run"),
    description="The nightly replays of pipelines/nightly.toml (schedule nightly_replays), tagged batch nightly-<day>.")
report_job = dg.define_asset_job("build_report", selection=dg.AssetSelection.groups("report"))

jobs = [ingest_job, fleet_job, forecast_job, train_job, replay_job, main_job, nightly_job, report_job, incoming_job,
        experiment_job]
schedules = [build_nightly(nightly_job)]
sensors = [incoming_traces_sensor]
