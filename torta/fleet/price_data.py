"""Derive the shipped hourly price/carbon tables from ../shared/prices (run once, offline).

Sources (HewlettPackard/green-dcc @ 3f6ea95c, MIT; figures from market operators and Electricity
Maps, see torta/data/prices/README.md):
- `electricity_prices_hourly_2023/<M>_electricity_prices_2023.csv` -> column `<M>` of
  `prices_2023_hourly.parquet` (USD/MWh rounded to 0.01, raw: negatives and spikes kept; clipping is done at load)
- `carbon_intensity_hourly_2023/<Z>_2023_hourly.csv`, direct gCO2eq/kWh -> `carbon_2023_hourly.parquet`
Both tables: `hour_utc` 0..8759 (hour of 2023, UTC) + one Float64 column per market/zone.

Run: `python -m torta.fleet.price_data ../shared/prices/green-dcc torta/data/prices`
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

HOURS = 8760


def _hourly(path: Path, time_col: str, value_col: str, name: str) -> pl.DataFrame:
    d = pl.read_csv(path, encoding="utf8", infer_schema_length=0)
    ts = d[time_col].str.slice(0, 19).str.to_datetime("%Y-%m-%d %H:%M:%S")
    out = pl.DataFrame({"ts": ts, name: d[value_col].cast(pl.Float64)})
    start = pl.datetime(2023, 1, 1)
    out = (out.with_columns(((pl.col("ts") - start).dt.total_hours()).alias("hour_utc"))
           .filter((pl.col("hour_utc") >= 0) & (pl.col("hour_utc") < HOURS))
           .group_by("hour_utc").agg(pl.col(name).mean()).sort("hour_utc"))
    if out.height != HOURS or out[name].null_count():
        raise ValueError(f"{path}: expected {HOURS} hourly values, got {out.height}")
    return out.with_columns(pl.col("hour_utc").cast(pl.Int32), pl.col(name).round(2))


def derive(green_dcc: Path, dst: Path) -> None:
    prices = None
    for p in sorted((green_dcc / "electricity_prices_hourly_2023").glob("*.csv")):
        m = p.name.replace("_electricity_prices_2023.csv", "")
        col = _hourly(p, "Datetime (UTC)", "Price (USD/MWh)", m)
        prices = col if prices is None else prices.join(col, on="hour_utc")
    carbon = None
    for p in sorted((green_dcc / "carbon_intensity_hourly_2023").glob("*.csv")):
        z = p.name.replace("_2023_hourly.csv", "")
        col = _hourly(p, "Datetime (UTC)", "Carbon Intensity gCO₂eq/kWh (direct)", z)
        carbon = col if carbon is None else carbon.join(col, on="hour_utc")
    for frame, name in ((prices, "prices_2023_hourly.parquet"), (carbon, "carbon_2023_hourly.parquet")):
        tmp = dst / (name + ".tmp")
        frame.write_parquet(tmp, compression="zstd", compression_level=19)
        tmp.replace(dst / name)
        print(f"wrote {dst / name}: {frame.shape}", file=sys.stderr)


if __name__ == "__main__":
    derive(Path(sys.argv[1]), Path(sys.argv[2]))
