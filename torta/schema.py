"""Polars schemas that are the contracts between layers.

`REQUEST_SCHEMA`: one row per request (canonical Parquet written by `torta ingest`).
`RATES_SCHEMA`: one row per (client, window) for traces that publish arrival rates, not requests
(ServeGen). Add columns freely; never rename these.
"""

from __future__ import annotations

import polars as pl

REQUEST_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.Int64(),
    "arrival_s": pl.Float64(),  # seconds from the trace's first arrival
    "timestamp_utc": pl.Datetime("us", "UTC"),  # absolute time where the trace has one, else null
    "prompt_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "model": pl.String(),  # nullable: traces without a model column leave it to the scenario
    "origin_region": pl.String(),  # nullable until a scenario assigns it
    "source": pl.String(),  # trace name / format the row came from
}

RATES_SCHEMA: dict[str, pl.DataType] = {
    "client_id": pl.String(),
    "window_start_s": pl.Float64(),  # seconds from 00:00 of day 1
    "window_s": pl.Float64(),  # window length (600 s for ServeGen)
    "rate_per_s": pl.Float64(),  # mean arrival rate in the window
    "iat_cv": pl.Float64(),  # coefficient of variation of inter-arrival times (nullable)
    "iat_dist": pl.String(),  # fitted inter-arrival family name where given (nullable)
    "model_class": pl.String(),  # e.g. "m-large", "m-mid", "m-small"
    "source": pl.String(),
}


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select and cast the schema's columns in order; extra columns are kept after them.

    Raises ValueError naming the missing columns.
    """
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise ValueError(f"missing columns {missing}; expected {list(schema)}")
    extra = [c for c in df.columns if c not in schema]
    return df.select([pl.col(c).cast(t) for c, t in schema.items()] + extra)
