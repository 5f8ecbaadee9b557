"""Timestamp parsing as polars expressions (vectorised; no per-row Python).

ISO-like timestamps: ``YYYY-MM-DD[ T]HH:MM:SS`` with 0-9 fractional digits and an optional UTC offset
(``Z``, ``+HH``, ``+HHMM``, ``+HH:MM``). A timestamp without an offset is taken as UTC. Results are
``Datetime("ns", "UTC")`` so that 7-digit (100 ns) Azure timestamps keep their precision.
"""

from __future__ import annotations

import polars as pl

UTC = "UTC"
NS_UTC = pl.Datetime("ns", UTC)

# (format, has_offset). chrono's `%.f` is optional (0-9 digits); `%#z` accepts Z, +HH, +HHMM, +HH:MM.
ISO_FORMATS: tuple[tuple[str, bool], ...] = (
    ("%Y-%m-%d %H:%M:%S%.f", False),
    ("%Y-%m-%d %H:%M:%S%.f%#z", True),
    ("%Y-%m-%dT%H:%M:%S%.f", False),
    ("%Y-%m-%dT%H:%M:%S%.f%#z", True),
)

ISO_EXPECTED = "a timestamp like 2023-11-16 18:17:03.9799600 (0-9 fractional digits, optional UTC offset)"

UNIT_SECONDS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def has_offset_directive(fmt: str) -> bool:
    return "%z" in fmt or "%:z" in fmt or "%#z" in fmt or "%::z" in fmt


def parse_with(expr: pl.Expr, fmt: str, has_offset: bool | None = None) -> pl.Expr:
    """Parse a string expression with one strftime format into Datetime(ns, UTC); failures -> null."""
    if has_offset is None:
        has_offset = has_offset_directive(fmt)
    out = expr.str.to_datetime(fmt, strict=False, time_unit="ns")
    if has_offset:
        return out.dt.convert_time_zone(UTC)
    return out.dt.replace_time_zone(UTC)


def parse_iso(expr: pl.Expr, formats: tuple[tuple[str, bool], ...] = ISO_FORMATS) -> pl.Expr:
    """Parse with the first format of `formats` that succeeds row by row (coalesce)."""
    parts = [parse_with(expr, f, off) for f, off in formats]
    return parts[0] if len(parts) == 1 else pl.coalesce(parts)


def primary_iso_format(sample: str | None) -> tuple[tuple[str, bool], ...]:
    """The ISO format that parses `sample` (first data row), first in line; all formats otherwise.

    The fast path parses a whole file with this one format; rows it fails on send the reader to the
    careful path, which tries every format.
    """
    if sample is not None:
        s = pl.Series([sample.strip()])
        for fmt, off in ISO_FORMATS:
            if s.to_frame("t").select(parse_with(pl.col("t"), fmt, off)).item() is not None:
                return ((fmt, off),)
    return ISO_FORMATS
