"""Jobs, schedules and sensors."""

import dagster as dg

from pipelines.assets.incoming import incoming_job, incoming_traces_sensor
from pipelines.experiment import experiment_job
from pipelines.schedules import build_nightly

ingest_job = dg.define_asset_job("ingest_traces", selection=dg.AssetSelection.assets("requests"))
fleet_job = dg.define_asset_job("build_fleet", selection=dg.AssetSelection.groups("fleet"))
forecast_job = dg.define_asset_job("forecast_demand", selection=dg.AssetSelection.groups("workload", "forecast"))
train_job = dg.define_asset_job("train_policies", selection=dg.AssetSelection.groups("planning"))
replay_job = dg.define_asset_job("replay", selection=dg.AssetSelection.groups("replay"))
report_job = dg.define_asset_job("build_report", selection=dg.AssetSelection.groups("warehouse", "report"))

jobs = [ingest_job, fleet_job, forecast_job, train_job, replay_job, report_job, incoming_job, experiment_job]
schedules = [build_nightly(replay_job)]
sensors = [incoming_traces_sensor]
