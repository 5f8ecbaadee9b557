"""The engine behind every per-request adapter: a `RequestLayout` says which raw fields hold the
timestamp and token counts; `read_requests` turns a file into canonical requests.

Fast path: polars' multi-threaded reader with typed columns, streaming, and one "any bad row?" flag.
Careful path (only when the fast path raises or flags a row): line-by-line reading (`rawread`) and
the same checks per row, to name the first bad line and field, or to quarantine bad rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from torta.errors import InputError
from torta.limits import MAX_TIMESTAMP_S, MAX_TRACE_SPAN_S
from torta.schema import REQUEST_SCHEMA, conform

from . import rawread
from .checks import LINE, SHAPE, Check, any_bad, float_value, int_value, missing_check, raise_first_bad, \
    reason_columns, shape_check, token_checks
from .result import BLANK_LINE, ON_BAD_ROWS, ZERO_TOKENS_FAILURE, IngestResult
from .timeparse import ISO_EXPECTED, ISO_FORMATS, NS_UTC, UNIT_SECONDS, parse_iso, parse_with, primary_iso_format

TS_KINDS = ("iso", "strftime", "s", "ms", "us")
FILE_KINDS = ("csv", "jsonl", "parquet")
EXTRA_KINDS = ("string", "int_list")

_POLARS_ERRORS: tuple[type[BaseException], ...] = (pl.exceptions.PolarsError, OSError, ValueError)
try:  # a Rust panic surfaces as pyo3's PanicException (a BaseException subclass)
    from polars.exceptions import PanicException as _Panic

    _POLARS_ERRORS = _POLARS_ERRORS + (_Panic,)
except ImportError:  # pragma: no cover
    pass


@dataclass(frozen=True)
class RequestLayout:
    """Where a file keeps each canonical field. No I/O."""

    timestamp: str
    timestamp_kind: str  # "iso" (0-9 fractional digits, optional offset), "strftime", or a unit: s, ms, us
    prompt: str
    output: str
    model: str | None = None
    timestamp_format: str | None = None  # strftime format when timestamp_kind == "strftime"
    epoch: bool = False  # numeric timestamps are Unix epoch times: fill timestamp_utc
    extras: tuple[tuple[str, str, str], ...] = ()  # (raw field, output column, "string" | "int_list")
    drop_zero_output: bool = False  # rows with 0 output tokens are logged failures (BurstGPT)
    file_kind: str = "csv"
    separator: str = ","

    def __post_init__(self) -> None:
        if self.timestamp_kind not in TS_KINDS:
            raise ValueError(f"timestamp kind {self.timestamp_kind!r}; expected one of {TS_KINDS}")
        if self.timestamp_kind == "strftime" and not self.timestamp_format:
            raise ValueError("timestamp kind 'strftime' needs a timestamp_format, e.g. '%Y-%m-%d %H:%M:%S'")
        if self.file_kind not in FILE_KINDS:
            raise ValueError(f"file kind {self.file_kind!r}; expected one of {FILE_KINDS}")
        for _, _, kind in self.extras:
            if kind not in EXTRA_KINDS:
                raise ValueError(f"extra column kind {kind!r}; expected one of {EXTRA_KINDS}")
        if len(self.separator) != 1:
            raise ValueError(f"separator must be one character, got {self.separator!r}")

    @property
    def numeric_time(self) -> bool:
        return self.timestamp_kind in UNIT_SECONDS

    @property
    def raw_columns(self) -> list[str]:
        cols = [self.timestamp, self.prompt, self.output]
        if self.model:
            cols.append(self.model)
        cols += [raw for raw, _, _ in self.extras]
        out: list[str] = []
        for c in cols:  # one raw column may feed two roles
            if c not in out:
                out.append(c)
        return out


# ---------------------------------------------------------------- expressions


def _int_list(name: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """(value as List(Int64), bad flag) for a JSON-like list of integers."""
    col = pl.col(name)
    if isinstance(dtype, pl.List):
        val = col.cast(pl.List(pl.Int64), strict=False)
        return val, col.is_not_null() & val.is_null()
    s = col.cast(pl.String).str.strip_chars()
    ok = s.str.contains(r"^\[\s*(-?\d{1,18}\s*(,\s*-?\d{1,18}\s*)*)?\]$")
    inner = s.str.strip_chars("[] \t")
    parsed = (pl.when(inner == "").then(pl.lit([], dtype=pl.List(pl.Int64)))
              .otherwise(inner.str.split(",").list.eval(pl.element().str.strip_chars().cast(pl.Int64, strict=False))))
    return pl.when(ok).then(parsed), col.is_not_null() & ~ok.fill_null(False)


def stage_exprs(layout: RequestLayout, schema: dict[str, pl.DataType],
                formats: tuple[tuple[str, bool], ...] = ISO_FORMATS,
                parsed_column: str | None = None) -> tuple[list[pl.Expr], list[Check]]:
    """Expressions producing `_ts` (Datetime ns UTC) or `_t` (seconds, float), `prompt_tokens`,
    `output_tokens`, `model` and the extras from raw columns of the given dtypes; plus the checks.
    `parsed_column`: a column already holding the parsed ISO timestamps (see `_preparse`)."""
    exprs: list[pl.Expr] = []
    checks: list[Check] = []
    ts = layout.timestamp
    ts_type = schema[ts]
    if layout.numeric_time:
        expected = f"a number (timestamp in {layout.timestamp_kind})"
        val = float_value(ts, ts_type)
        bound = MAX_TIMESTAMP_S / UNIT_SECONDS[layout.timestamp_kind]
        unit = "" if layout.timestamp_kind == "s" else f" (+-{bound:g} {layout.timestamp_kind})"
        in_range = f"a timestamp within +-{MAX_TIMESTAMP_S:g} s{unit}"
        checks += [missing_check(ts, expected),
                   Check("bad_timestamp", ts, pl.col(ts).is_not_null() & val.is_null(), expected),
                   Check("timestamp_out_of_range", ts, val.abs() > bound, in_range)]
        exprs.append(val.alias("_t"))
    else:
        if isinstance(ts_type, pl.Datetime):
            col = pl.col(ts)
            parsed = (col.dt.replace_time_zone("UTC") if ts_type.time_zone is None
                      else col.dt.convert_time_zone("UTC")).cast(NS_UTC)
            expected = "a datetime"
        elif layout.timestamp_kind == "strftime":
            parsed = parse_with(pl.col(ts).cast(pl.String), layout.timestamp_format or "")
            expected = f"a timestamp in the format {layout.timestamp_format!r}"
        else:
            parsed = pl.col(parsed_column) if parsed_column else parse_iso(pl.col(ts).cast(pl.String), formats)
            expected = ISO_EXPECTED
        checks += [missing_check(ts, expected),
                   Check("bad_timestamp", ts, pl.col(ts).is_not_null() & parsed.is_null(), expected)]
        exprs.append(parsed.alias("_ts"))
    for role, name in (("prompt_tokens", layout.prompt), ("output_tokens", layout.output)):
        checks += token_checks(name, schema[name])
        exprs.append(int_value(name, schema[name]).alias(role))
    if layout.model:
        exprs.append(pl.col(layout.model).cast(pl.String).alias("model"))
    for raw, out, kind in layout.extras:
        if kind == "int_list":
            val, bad = _int_list(raw, schema[raw])
            checks += [missing_check(raw, "a list of integers"),
                       Check("bad_list", raw, bad, "a list of integers like [1, 2, 3]")]
            exprs.append(val.alias(out))
        else:
            exprs.append(pl.col(raw).cast(pl.String).alias(out))
    return exprs, checks


def _blank(layout: RequestLayout) -> pl.Expr:
    return pl.all_horizontal([pl.col(c).is_null() for c in layout.raw_columns])


# ---------------------------------------------------------------- fast path


def _typed_scan(path: Path, layout: RequestLayout) -> pl.LazyFrame:
    ts_type = pl.Float64 if layout.numeric_time else pl.String
    types = {layout.timestamp: ts_type, layout.prompt: pl.Int64, layout.output: pl.Int64}
    if layout.model:
        types.setdefault(layout.model, pl.String)
    for raw, _, kind in layout.extras:
        types.setdefault(raw, pl.List(pl.Int64) if kind == "int_list" else pl.String)
    if layout.file_kind == "csv":
        lf = pl.scan_csv(path, separator=layout.separator, infer_schema=False, schema_overrides=types,
                         raise_if_empty=True, truncate_ragged_lines=False)
    elif layout.file_kind == "jsonl":
        lf = pl.scan_ndjson(path, schema=types)
    else:
        lf = pl.scan_parquet(path)
    return lf.select(layout.raw_columns)


TS_RETRY = "timestamps"


def _fast(path: Path, layout: RequestLayout, formats) -> tuple[pl.DataFrame, int] | str | None:
    """(staged good rows, blank count); TS_RETRY when only unparsed timestamps stood in the way
    (another set of formats may do); None when the careful path must run."""
    try:
        lf = _typed_scan(path, layout)
        schema = dict(lf.collect_schema())
        exprs, checks = stage_exprs(layout, schema, formats)
        blank = _blank(layout)
        df = lf.select(*exprs, (any_bad(checks) & ~blank).alias("_bad"), blank.alias("_blank")) \
            .collect(engine="streaming")
    except _POLARS_ERRORS:
        return None
    if df["_bad"].any():
        if "_ts" in df.columns and formats != ISO_FORMATS:
            ts_only = df.filter(pl.col("_bad")).select(pl.col("_ts").is_null().all()).item()
            if ts_only:
                return TS_RETRY
        return None
    n_blank = int(df["_blank"].sum())
    if n_blank:
        df = df.filter(~pl.col("_blank"))
    return df.drop("_bad", "_blank"), n_blank


# ---------------------------------------------------------------- careful path


_PRE = "_ts_pre"


def _preparse(batch: pl.DataFrame, column: str, primary: tuple[tuple[str, bool], ...]) -> pl.DataFrame:
    """Add `_ts_pre`: ISO timestamps parsed with the file's primary format, and with every format only
    on the rows that one fails on (parsing with all four everywhere costs 4x)."""
    raw = pl.col(column).cast(pl.String)
    parsed = batch.select(parse_iso(raw, primary).alias(_PRE))[_PRE]
    retry = (parsed.is_null() & batch[column].is_not_null()).arg_true()
    if retry.len() and primary != ISO_FORMATS:
        again = batch[retry].select(parse_iso(raw, ISO_FORMATS).alias(_PRE))[_PRE]
        parsed = parsed.scatter(retry, again)
    return batch.with_columns(parsed)


def _careful(path: Path, layout: RequestLayout, on_bad_rows: str,
             formats: tuple[tuple[str, bool], ...] = ISO_FORMATS) -> tuple[pl.DataFrame, int, pl.DataFrame | None]:
    cols = layout.raw_columns
    unit = "line"
    if layout.file_kind == "csv":
        batches = rawread.csv_batches(path, cols, header=None, separator=layout.separator)
    elif layout.file_kind == "jsonl":
        batches = rawread.jsonl_batches(path, cols)
    else:
        unit = "row"
        try:
            df = pl.read_parquet(path, columns=cols)
        except _POLARS_ERRORS as exc:
            raise InputError(path, f"unreadable Parquet: {exc}") from None
        batches = iter([df.with_row_index(LINE, offset=1).with_columns(
            pl.col(LINE).cast(pl.Int64), pl.lit(None, dtype=pl.String).alias(SHAPE))])
    good_parts: list[pl.DataFrame] = []
    bad_parts: list[pl.DataFrame] = []
    n_blank = 0
    for batch in batches:
        schema = dict(batch.schema)
        pre = None
        if layout.timestamp_kind == "iso" and schema[layout.timestamp] == pl.String:
            batch, pre = _preparse(batch, layout.timestamp, formats), _PRE
        exprs, checks = stage_exprs(layout, schema, ISO_FORMATS, parsed_column=pre)
        checks = [shape_check()] + checks
        blank = _blank(layout) & pl.col(SHAPE).is_null()
        b = batch.with_columns(blank.alias("_blank"), (any_bad(checks) & ~blank).alias("_bad"))
        n_blank += int(b["_blank"].sum())
        bad = b.filter(pl.col("_bad"))
        if bad.height:
            bad = bad.with_columns(reason_columns(checks))
            if on_bad_rows == "error":
                raise_first_bad(path, bad, unit=unit)
            bad_parts.append(bad.select(
                pl.col(LINE).alias("line"), "reason", "field", "expected", pl.col(SHAPE).alias("detail"),
                *[pl.col(c).cast(pl.String) for c in cols]))
        good_parts.append(b.filter(~pl.col("_bad") & ~pl.col("_blank")).select(exprs))
    good = pl.concat(good_parts, how="vertical") if good_parts else pl.DataFrame()
    quarantine = pl.concat(bad_parts, how="vertical") if bad_parts else None
    return good, n_blank, quarantine


# ---------------------------------------------------------------- canonical frame


def finalize(staged: pl.DataFrame, layout: RequestLayout, source: str) -> pl.DataFrame:
    """Stable sort by arrival, dense request ids, arrival_s from the first arrival, REQUEST_SCHEMA order."""
    key = "_t" if "_t" in staged.columns else "_ts"
    if not staged[key].is_sorted():
        staged = staged.sort(key, maintain_order=True)
    if key == "_ts":
        arrival = (pl.col("_ts") - pl.col("_ts").first()).dt.total_nanoseconds() / 1e9
        ts_utc = pl.col("_ts").dt.cast_time_unit("us")
    else:
        factor = UNIT_SECONDS[layout.timestamp_kind]
        arrival = (pl.col("_t") - pl.col("_t").first()) * factor
        if layout.epoch:
            ts_utc = pl.from_epoch((pl.col("_t") * (factor * 1e6)).round().cast(pl.Int64), time_unit="us") \
                .dt.replace_time_zone("UTC")
        else:
            ts_utc = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    model = pl.col("model") if "model" in staged.columns else pl.lit(None, dtype=pl.String)
    extras = [out for _, out, _ in layout.extras]
    out = staged.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("request_id"),
        arrival.cast(pl.Float64).alias("arrival_s"),
        ts_utc.alias("timestamp_utc"),
        pl.col("prompt_tokens"),
        pl.col("output_tokens"),
        model.alias("model"),
        pl.lit(None, dtype=pl.String).alias("origin_region"),
        pl.lit(source, dtype=pl.String).alias("source"),
        *extras,
    )
    return conform(out, REQUEST_SCHEMA)


def raise_no_valid_rows(path: Path, quarantine: pl.DataFrame) -> None:
    """All data rows were bad (quarantine mode): an error, not an empty trace."""
    first = quarantine.row(0, named=True)
    raise InputError(path, f"no valid rows: all {quarantine.height:,} data rows are bad (first: {first['reason']}"
                           f", expected {first['expected']})", line=int(first["line"]), field=first["field"])


def read_requests(path: str | Path, layout: RequestLayout, *, fmt: str, source: str | None = None,
                  on_bad_rows: str = "error") -> IngestResult:
    """Read one file with `layout` into canonical requests (see module doc)."""
    if on_bad_rows not in ON_BAD_ROWS:
        raise ValueError(f"on_bad_rows {on_bad_rows!r}; expected one of {ON_BAD_ROWS}")
    p = rawread.check_file(path)
    if layout.file_kind in ("csv", "jsonl"):
        rawread.check_line_lengths(p)
    formats = ISO_FORMATS
    if layout.file_kind == "csv":
        header = rawread.read_header(p, layout.separator)
        rawread.require_columns(p, header, layout.raw_columns)
        if layout.timestamp_kind == "iso":
            formats = primary_iso_format(rawread.first_data_value(p, layout.timestamp, layout.separator))
    elif layout.file_kind == "parquet":
        try:
            names = list(pl.read_parquet_schema(p))
        except _POLARS_ERRORS as exc:
            raise InputError(p, f"not a readable Parquet file ({exc.__class__.__name__}: {exc})") from None
        rawread.require_columns(p, names, layout.raw_columns, line=None)
    fast = _fast(p, layout, formats)
    if fast == TS_RETRY:
        fast = _fast(p, layout, ISO_FORMATS)  # a file mixing timestamp styles: still the fast path
    quarantine = None
    if isinstance(fast, tuple):
        staged, n_blank = fast
    else:
        staged, n_blank, quarantine = _careful(p, layout, on_bad_rows, formats)
    n_bad = 0 if quarantine is None else quarantine.height
    if staged.height == 0 and n_bad == 0:
        raise InputError(p, "no data rows; expected at least one request after the header")
    if staged.height == 0:
        raise_no_valid_rows(p, quarantine)
    reasons: dict[str, int] = {}
    if n_blank:
        reasons[BLANK_LINE] = n_blank
    if quarantine is not None:
        for reason, count in quarantine.group_by("reason").len().sort("reason").iter_rows():
            reasons[reason] = int(count)
    if layout.drop_zero_output and staged.height:
        zero = int((staged["output_tokens"] == 0).sum())
        if zero:
            reasons[ZERO_TOKENS_FAILURE] = zero
            staged = staged.filter(pl.col("output_tokens") != 0)
    frame = finalize(staged, layout, source or fmt)
    span = frame["arrival_s"].max() if frame.height else 0.0
    if span is not None and span > MAX_TRACE_SPAN_S:
        raise InputError(p, f"the trace spans {span:,.0f} s from its first to its last request, more than the "
                            f"limit of {MAX_TRACE_SPAN_S:,.0f} s (10 years); check the timestamp unit",
                         field=layout.timestamp)
    return IngestResult(frame=frame, dropped_rows=sum(reasons.values()), drop_reasons=reasons,
                        quarantine=quarantine, path=p, fmt=fmt)
