"""Dagster definitions (`defs`): `dagster dev -m pipelines.definitions` or `torta ui`."""

import dagster as dg

from pipelines import experiment
from pipelines.assets import fleet, forecast, incoming, ingest, replay, report, training, views
from pipelines.jobs import jobs, schedules, sensors
from pipelines.resources import WarehouseResource

_modules = [ingest, incoming, fleet, forecast, training, replay, views, report, experiment]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(_modules),
    asset_checks=dg.load_asset_checks_from_modules(_modules),
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    resources={"warehouse": WarehouseResource()},
)
