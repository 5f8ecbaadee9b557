"""History frames <-> dense arrays, and imputation of masked slots."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

SERIES_SEP = "|"


def to_history(df: pl.DataFrame, value: str = "requests") -> pl.DataFrame:
    """A demand/rates frame (slot, origin_region, model, <value>[, masked]) -> history frame
    (series, slot, y, masked) with series = "<origin_region>|<model>"."""
    for c in ("slot", "origin_region", "model", value):
        if c not in df.columns:
            raise ValueError(f"frame lacks column {c!r} (has {df.columns})")
    masked = pl.col("masked") if "masked" in df.columns else pl.lit(False)
    return df.select(
        pl.concat_str([pl.col("origin_region").fill_null("?"), pl.col("model").fill_null("?")],
                      separator=SERIES_SEP).alias("series"),
        pl.col("slot").cast(pl.Int64),
        pl.col(value).cast(pl.Float64).alias("y"),
        masked.cast(pl.Boolean).alias("masked"),
    )


@dataclass(frozen=True)
class Panel:
    """Series on a common regular slot grid. `y` has masked/missing slots imputed; `masked` marks
    them (never scored, never used as calibration errors)."""

    series: tuple[str, ...]
    first_slot: int
    y: np.ndarray  # (S, T) float64
    masked: np.ndarray  # (S, T) bool

    @property
    def n_slots(self) -> int:
        return self.y.shape[1]


def impute(y: np.ndarray, masked: np.ndarray, season: int) -> np.ndarray:
    """Fill masked entries from one season earlier (already filled), else the last clean value,
    else the first clean value; a series with no clean value becomes zeros."""
    y = y.astype(float).copy()
    for s in range(y.shape[0]):
        m = masked[s]
        if not m.any():
            continue
        clean = np.flatnonzero(~m)
        if clean.size == 0:
            y[s] = 0.0
            continue
        for t in np.flatnonzero(m):
            if t >= season:
                y[s, t] = y[s, t - season]  # already filled if it was masked
            else:
                prev = clean[clean < t]
                y[s, t] = y[s, prev[-1]] if prev.size else y[s, clean[0]]
    return y


def to_panel(history: pl.DataFrame, season: int) -> Panel:
    """Pivot a history frame (series, slot, y[, masked]) to a Panel. Slots missing for a series
    count as masked. Raises ValueError on duplicates, nulls or non-finite values."""
    for c in ("series", "slot", "y"):
        if c not in history.columns:
            raise ValueError(f"history lacks column {c!r}; expected series, slot, y[, masked]")
    if history.is_empty():
        raise ValueError("history is empty")
    h = history.select("series", pl.col("slot").cast(pl.Int64), pl.col("y").cast(pl.Float64),
                       (pl.col("masked") if "masked" in history.columns else pl.lit(False))
                       .cast(pl.Boolean).fill_null(False).alias("masked"))
    if h["series"].null_count() or h["slot"].null_count():
        raise ValueError("history has null series or slot values")
    bad = h.filter(~pl.col("masked") & (pl.col("y").is_null() | ~pl.col("y").is_finite()))
    if bad.height:
        r = bad.row(0, named=True)
        raise ValueError(f"history: non-finite y {r['y']} at series {r['series']!r} slot {r['slot']}")
    dup = h.group_by("series", "slot").len().filter(pl.col("len") > 1)
    if dup.height:
        r = dup.row(0, named=True)
        raise ValueError(f"history: duplicate slot {r['slot']} in series {r['series']!r}")
    series = tuple(sorted(h["series"].unique().to_list()))
    lo, hi = int(h["slot"].min()), int(h["slot"].max())
    T = hi - lo + 1
    idx = {s: i for i, s in enumerate(series)}
    si = np.array([idx[s] for s in h["series"].to_list()])
    ti = h["slot"].to_numpy() - lo
    y = np.zeros((len(series), T))
    masked = np.ones((len(series), T), bool)
    y[si, ti] = np.nan_to_num(h["y"].to_numpy(), nan=0.0)
    masked[si, ti] = h["masked"].to_numpy()
    return Panel(series, lo, impute(y, masked, season), masked)


def freq_string(slot_s: float) -> str:
    """statsforecast's polars frequency string for a slot length ("15m" for 900 s). Pandas input
    needs "15min" instead; never share the two (../shared/notes/stack.md, pitfall 4)."""
    s = int(round(slot_s))
    if s <= 0 or abs(s - slot_s) > 1e-9:
        raise ValueError(f"slot_s must be a positive whole number of seconds, got {slot_s}")
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"


def to_statsforecast(history: pl.DataFrame, slot_s: float = 900.0,
                     epoch: str = "2023-07-10T00:00:00") -> pl.DataFrame:
    """History (series, slot, y[, masked]) -> statsforecast's long polars frame (unique_id, ds, y),
    masked slots imputed, ds = epoch + slot x slot_s (UTC). Use with
    `StatsForecast(models, freq=freq_string(slot_s))`."""
    season = int(round(86400 / slot_s))
    p = to_panel(history, season)
    T = p.n_slots
    start = pl.Series([epoch]).str.to_datetime(time_unit="us", time_zone="UTC")
    offs = pl.Series(((p.first_slot + np.arange(T)) * slot_s * 1e6).astype(np.int64)) \
        .cast(pl.Duration("us"))
    ds = pl.select(start.first() + offs).to_series()
    return pl.DataFrame({
        "unique_id": [s for s in p.series for _ in range(T)],
        "ds": pl.concat([ds] * len(p.series)),
        "y": p.y.ravel(),
    })
