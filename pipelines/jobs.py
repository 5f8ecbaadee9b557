"""Jobs, schedules and sensors."""

from __future__ import annotations

import dagster as dg

ingest_job = dg.define_asset_job("ingest_traces", selection=dg.AssetSelection.groups("ingest"))

jobs = [ingest_job]
schedules: list = []
sensors: list = []
