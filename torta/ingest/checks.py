"""Row checks as polars expressions, shared by every adapter.

A `Check` is a boolean expression that is true where a row is bad, with the reason code, the raw
field it concerns and what was expected there. The fast path only asks "is any row bad?"; the careful
path (see `rawread`) evaluates the checks per row to name the first bad line and field, or to build
the quarantine frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from torta.errors import InputError
from torta.limits import MAX_TOKENS, quote

LINE = "_line"  # 1-based line number (CSV/JSONL, header included) or row number (Parquet)
SHAPE = "_shape"  # careful path only: a message when the line itself is malformed (field count, JSON)


@dataclass(frozen=True)
class Check:
    reason: str  # short code, e.g. "bad_timestamp", "negative_tokens"
    field: str | None  # raw column name, None for whole-line problems
    bad: pl.Expr  # true where the row fails
    expected: str  # human text: what the field should hold


def int_value(name: str, dtype: pl.DataType) -> pl.Expr:
    """The column as Int64; null where it is not a whole number."""
    col = pl.col(name)
    if dtype.is_integer():
        return col.cast(pl.Int64, strict=False)
    if dtype.is_float():
        return pl.when(col.is_finite() & (col == col.floor())).then(col.cast(pl.Int64, strict=False))
    return col.cast(pl.String).cast(pl.Int64, strict=False)


def float_value(name: str, dtype: pl.DataType) -> pl.Expr:
    """The column as finite Float64; null where it is not a finite number."""
    col = pl.col(name)
    if dtype.is_numeric():
        val = col.cast(pl.Float64)
    else:
        val = col.cast(pl.String).cast(pl.Float64, strict=False)
    return pl.when(val.is_finite()).then(val)


def missing_check(name: str, expected: str) -> Check:
    return Check("missing_value", name, pl.col(name).is_null(),
                 f"{expected} (empty field, or the line has fewer fields than the header)")


def token_checks(name: str, dtype: pl.DataType) -> list[Check]:
    val = int_value(name, dtype)
    exp = f"a non-negative integer token count <= {MAX_TOKENS:,}"
    return [
        missing_check(name, exp),
        Check("not_integer", name, pl.col(name).is_not_null() & val.is_null(), exp),
        Check("negative_tokens", name, val < 0, exp),
        Check("too_many_tokens", name, val > MAX_TOKENS, exp),
    ]


def number_checks(name: str, dtype: pl.DataType, expected: str, *, non_negative: bool = False) -> list[Check]:
    val = float_value(name, dtype)
    out = [missing_check(name, expected),
           Check("not_a_number", name, pl.col(name).is_not_null() & val.is_null(), expected)]
    if non_negative:
        out.append(Check("negative_value", name, val < 0, expected))
    return out


def any_bad(checks: list[Check]) -> pl.Expr:
    if not checks:
        return pl.lit(False)
    return pl.any_horizontal([c.bad.fill_null(False) for c in checks])


def reason_columns(checks: list[Check]) -> list[pl.Expr]:
    """`reason`, `field` and `expected` of the first failing check of each row (null when none)."""
    def first(attr: str) -> pl.Expr:
        expr = pl.lit(None, dtype=pl.String)
        for c in reversed(checks):
            expr = pl.when(c.bad.fill_null(False)).then(pl.lit(getattr(c, attr), dtype=pl.String)).otherwise(expr)
        return expr
    return [first("reason").alias("reason"), first("field").alias("field"), first("expected").alias("expected")]


def shape_check() -> Check:
    return Check("malformed_line", None, pl.col(SHAPE).is_not_null(), "a well-formed record")


def raise_first_bad(path: object, bad_rows: pl.DataFrame, *, unit: str = "line") -> None:
    """Raise InputError for the first row of `bad_rows` (columns: _line, reason, field, expected,
    _shape and the raw fields)."""
    row = bad_rows.row(0, named=True)
    field = row["field"]
    total = bad_rows.height
    more = f" ({total} bad rows in this batch; --on-bad-rows quarantine sets them aside)" if total > 1 else ""
    where = "" if unit == "line" else f"{unit} {row[LINE]}: "
    if row["reason"] == "malformed_line":
        msg = f"{where}{row[SHAPE]}"
    elif row["reason"] == "missing_value":
        msg = f"{where}missing {field}; expected {row['expected']}"
    else:
        msg = f"{where}expected {row['expected']} in {field}, got {quote(row.get(field))} ({row['reason']})"
    raise InputError(path, msg + more, line=int(row[LINE]), field=field)
