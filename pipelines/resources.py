"""Dagster resources: the warehouse location, resolved at run time."""


from pathlib import Path

import dagster as dg
import polars as pl

from pipelines import warehouse as wh


class WarehouseResource(dg.ConfigurableResource):
    """Where results go. `database` empty -> `warehouse_path()` ($TORTA_WAREHOUSE, else the checkout's warehouse/torta.duckdb)."""

    database: str = ""
    storage: str = ""  # where partitions go (a directory or s3://bucket/prefix); "" = as recorded for the warehouse

    @property
    def db_path(self) -> Path:
        return wh.warehouse_path(self.database or None)

    @property
    def storage_url(self) -> str | None:
        return self.storage or None

    def write(self, table: str, key: str, frame: pl.DataFrame) -> Path:
        return wh.write_partition(self.db_path, table, key, frame)

    def read(self, table: str, key: str | None = None) -> pl.DataFrame:
        return wh.read_table(self.db_path, table, key)

    def refresh_views(self) -> dict[str, str]:
        return wh.refresh_views(self.db_path)
