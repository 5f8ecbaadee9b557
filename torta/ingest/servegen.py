"""ServeGen per-client rate traces -> RATES_SCHEMA.

Each `chunk-<i>-trace.csv` (no header) is one client of one model: one row per window with
`timestamp` (window start, s from 00:00 of day 1), `rate` (req/s), `cv` (inter-arrival CV),
`pat_name` (Gamma / Weibull / empty), `pat_arg1` (shape), `pat_arg2` (scale, s) -- column meaning
from ServeGen's loader and README (alibaba/ServeGen, Apache-2.0). A directory is searched
recursively; the parent directory name is the model class (m-large, deepseek-r1, ...).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from torta.errors import InputError
from torta.schema import RATES_SCHEMA, conform

from . import rawread
from .checks import LINE, SHAPE, Check, any_bad, float_value, number_checks, raise_first_bad, reason_columns, \
    shape_check
from .requests import _POLARS_ERRORS
from .result import BLANK_LINE, ON_BAD_ROWS, IngestResult

COLUMNS = ["timestamp", "rate", "cv", "pat_name", "pat_arg1", "pat_arg2"]
FAMILIES = ("Gamma", "Weibull")
DEFAULT_WINDOW_S = 600.0  # ServeGen README: 10-minute windows
_CHUNK = re.compile(r"^chunk-(\d+)-trace\.csv$")


def trace_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = [p for p in path.rglob("*.csv") if _CHUNK.match(p.name)]
        if not files:
            raise InputError(path, "no chunk-<i>-trace.csv files in this directory (ServeGen per-client traces)")
    else:
        files = [rawread.check_file(path)]

    def key(p: Path) -> tuple:
        m = _CHUNK.match(p.name)
        return (str(p.parent), int(m.group(1)) if m else -1, p.name)
    return sorted(files, key=key)


def client_id(path: Path) -> str:
    m = _CHUNK.match(path.name)
    return f"{path.parent.name}/chunk-{m.group(1)}" if m else f"{path.parent.name}/{path.stem}"


def _checks(schema: dict[str, pl.DataType]) -> tuple[list[pl.Expr], list[Check]]:
    ts = float_value("timestamp", schema["timestamp"])
    rate = float_value("rate", schema["rate"])
    cv = float_value("cv", schema["cv"])
    checks = number_checks("timestamp", schema["timestamp"], "a window start in seconds (>= 0)", non_negative=True)
    checks += number_checks("rate", schema["rate"], "a rate in requests/s (>= 0)", non_negative=True)
    checks += [Check("not_a_number", "cv", pl.col("cv").is_not_null() & cv.is_null(), "a coefficient of variation"),
               Check("negative_value", "cv", cv < 0, "a coefficient of variation (>= 0)"),
               Check("unknown_distribution", "pat_name",
                     pl.col("pat_name").is_not_null() & ~pl.col("pat_name").cast(pl.String).is_in(FAMILIES),
                     f"one of {', '.join(FAMILIES)} or empty")]
    args = []
    for name in ("pat_arg1", "pat_arg2"):
        v = float_value(name, schema[name])
        checks.append(Check("not_a_number", name, pl.col(name).is_not_null() & v.is_null(), "a number"))
        args.append(v)
    active = rate > 0
    exprs = [ts.alias("window_start_s"), rate.alias("rate_per_s"),
             pl.when(active).then(cv).alias("iat_cv"),
             pl.when(active).then(pl.col("pat_name").cast(pl.String)).alias("iat_dist"),
             pl.when(active & pl.col("pat_name").is_not_null()).then(args[0]).alias("iat_shape"),
             pl.when(active & pl.col("pat_name").is_not_null()).then(args[1]).alias("iat_scale_s")]
    return exprs, checks


def _blank() -> pl.Expr:
    return pl.all_horizontal([pl.col(c).is_null() for c in COLUMNS])


def _fast(path: Path) -> tuple[pl.DataFrame, int] | None:
    types = {"timestamp": pl.Float64, "rate": pl.Float64, "cv": pl.Float64, "pat_name": pl.String,
             "pat_arg1": pl.Float64, "pat_arg2": pl.Float64}
    try:
        df = pl.read_csv(path, has_header=False, schema=types, truncate_ragged_lines=False, raise_if_empty=True)
        exprs, checks = _checks(dict(df.schema))
        df = df.select(*exprs, (any_bad(checks) & ~_blank()).alias("_bad"), _blank().alias("_blank"))
    except _POLARS_ERRORS:
        return None
    if df["_bad"].any():
        return None
    n_blank = int(df["_blank"].sum())
    return df.filter(~pl.col("_blank")).drop("_bad", "_blank"), n_blank


def _careful(path: Path, on_bad_rows: str) -> tuple[pl.DataFrame, int, pl.DataFrame | None]:
    good, bad_parts, n_blank = [], [], 0
    for batch in rawread.csv_batches(path, COLUMNS, header=COLUMNS):
        exprs, checks = _checks(dict(batch.schema))
        checks = [shape_check()] + checks
        blank = _blank() & pl.col(SHAPE).is_null()
        b = batch.with_columns(blank.alias("_blank"), (any_bad(checks) & ~blank).alias("_bad"))
        n_blank += int(b["_blank"].sum())
        bad = b.filter(pl.col("_bad"))
        if bad.height:
            bad = bad.with_columns(reason_columns(checks))
            if on_bad_rows == "error":
                raise_first_bad(path, bad)
            bad_parts.append(bad.select(pl.lit(str(path)).alias("file"), pl.col(LINE).alias("line"), "reason",
                                        "field", "expected", pl.col(SHAPE).alias("detail"), *COLUMNS))
        good.append(b.filter(~pl.col("_bad") & ~pl.col("_blank")).select(exprs))
    frame = pl.concat(good) if good else None
    return frame, n_blank, (pl.concat(bad_parts) if bad_parts else None)


def _window_s(starts: pl.Series) -> float:
    diffs = starts.unique().sort().diff().drop_nulls()
    diffs = diffs.filter(diffs > 0)
    return float(diffs.min()) if diffs.len() else DEFAULT_WINDOW_S


def read_servegen(path: str | Path, *, fmt: str = "servegen", source: str | None = None,
                  on_bad_rows: str = "error") -> IngestResult:
    if on_bad_rows not in ON_BAD_ROWS:
        raise ValueError(f"on_bad_rows {on_bad_rows!r}; expected one of {ON_BAD_ROWS}")
    root = Path(path)
    if not root.exists():
        raise InputError(root, "no such file or directory")
    parts, bad_parts, n_blank = [], [], 0
    for f in trace_files(root):
        rawread.check_file(f)
        rawread.check_line_lengths(f)
        fast = _fast(f)
        quarantine = None
        if fast is not None:
            staged, blanks = fast
        else:
            staged, blanks, quarantine = _careful(f, on_bad_rows)
        n_blank += blanks
        if quarantine is not None:
            bad_parts.append(quarantine)
        if staged is None or (staged.height == 0 and quarantine is None):
            raise InputError(f, "no data rows; expected one row per 10-minute window")
        staged = staged.sort("window_start_s", maintain_order=True)
        parts.append(staged.with_columns(
            pl.lit(client_id(f)).alias("client_id"),
            pl.lit(_window_s(staged["window_start_s"]) if staged.height else DEFAULT_WINDOW_S).alias("window_s"),
            pl.lit(f.parent.name).alias("model_class"),
            pl.lit(source or fmt).alias("source")))
    frame = conform(pl.concat(parts, how="vertical"), RATES_SCHEMA)
    quarantine = pl.concat(bad_parts) if bad_parts else None
    if frame.height == 0 and quarantine is not None and quarantine.height:
        from .requests import raise_no_valid_rows

        raise_no_valid_rows(root, quarantine)
    reasons: dict[str, int] = {}
    if n_blank:
        reasons[BLANK_LINE] = n_blank
    if quarantine is not None:
        for reason, count in quarantine.group_by("reason").len().sort("reason").iter_rows():
            reasons[reason] = int(count)
    return IngestResult(frame=frame, dropped_rows=sum(reasons.values()), drop_reasons=reasons,
                        quarantine=quarantine, path=root, fmt=fmt, kind="rates")
