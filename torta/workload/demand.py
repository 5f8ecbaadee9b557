"""Regional demand per slot from any canonical request set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl

DEMAND_SCHEMA: dict[str, pl.DataType] = {
    "slot": pl.Int64(),
    "slot_start_s": pl.Float64(),
    "origin_region": pl.String(),
    "model": pl.String(),
    "requests": pl.Int64(),
    "prompt_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "masked": pl.Boolean(),
}


def demand_series(requests: pl.DataFrame | pl.LazyFrame, slot_s: float = 900,
                  masked_intervals: Iterable[Mapping] | None = None) -> pl.DataFrame:
    """Requests, prompt and output tokens per (slot, origin_region, model).

    Slot k covers [k*slot_s, (k+1)*slot_s) of `arrival_s`. Every (origin_region, model) pair seen
    gets a row for every slot from the first to the last slot of the request set (zeros where no
    request arrived), so the result is a regular series. `masked_intervals` (dicts with
    origin_region, model, start_s, end_s: e.g. workload metadata) flags slots that overlap them.
    Null origin_region / model stay null (one group).
    """
    if not slot_s > 0:
        raise ValueError(f"slot_s must be > 0, got {slot_s}")
    lf = requests.lazy() if isinstance(requests, pl.DataFrame) else requests
    cols = lf.collect_schema().names()
    missing = [c for c in ("arrival_s", "prompt_tokens", "output_tokens", "origin_region", "model")
               if c not in cols]
    if missing:
        raise ValueError(f"requests lack columns {missing}")
    agg = (lf.with_columns((pl.col("arrival_s") // slot_s).cast(pl.Int64).alias("slot"))
           .group_by("slot", "origin_region", "model")
           .agg(pl.len().cast(pl.Int64).alias("requests"),
                pl.col("prompt_tokens").sum().cast(pl.Int64),
                pl.col("output_tokens").sum().cast(pl.Int64))
           .collect())
    if agg.is_empty():
        return pl.DataFrame(schema=DEMAND_SCHEMA)
    lo, hi = int(agg["slot"].min()), int(agg["slot"].max())
    keys = agg.select("origin_region", "model").unique()
    grid = keys.join(pl.DataFrame({"slot": pl.int_range(lo, hi + 1, eager=True).cast(pl.Int64)}),
                     how="cross")
    out = (grid.join(agg, on=["slot", "origin_region", "model"], how="left", nulls_equal=True)
           .with_columns(pl.col("requests", "prompt_tokens", "output_tokens").fill_null(0),
                         (pl.col("slot") * slot_s).cast(pl.Float64).alias("slot_start_s"),
                         pl.lit(False).alias("masked")))
    if masked_intervals:
        m = pl.DataFrame([{"origin_region": d["origin_region"], "model": d["model"],
                           "start_s": float(d["start_s"]), "end_s": float(d["end_s"])}
                          for d in masked_intervals])
        hit = (out.select("slot", "slot_start_s", "origin_region", "model")
               .join(m, on=["origin_region", "model"], how="inner")
               .filter((pl.col("start_s") < pl.col("slot_start_s") + slot_s)
                       & (pl.col("end_s") > pl.col("slot_start_s")))
               .select("slot", "origin_region", "model").unique()
               .with_columns(pl.lit(True).alias("_hit")))
        out = (out.join(hit, on=["slot", "origin_region", "model"], how="left")
               .with_columns(pl.col("_hit").fill_null(False).alias("masked")).drop("_hit"))
    return (out.select([pl.col(c).cast(t) for c, t in DEMAND_SCHEMA.items()])
            .sort("origin_region", "model", "slot", nulls_last=True))
