"""Dagster definitions (`defs`): `dagster dev -m pipelines.definitions` or `torta ui`."""

from __future__ import annotations

import dagster as dg

from pipelines.assets import ingest
from pipelines.jobs import jobs, schedules, sensors
from pipelines.resources import WarehouseResource

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest]),
    asset_checks=dg.load_asset_checks_from_modules([ingest]),
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    resources={"warehouse": WarehouseResource()},
)
