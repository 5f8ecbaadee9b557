"""`torta sql "QUERY" [--format table|csv|json] [--json] [--param name=value ...]`: read-only SQL
on the warehouse (what is refused and why: `pipelines/sqlguard.py`)."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import click
import polars as pl

from pipelines import warehouse as wh


def _parse_param(raw: str) -> tuple[str, object]:
    if "=" not in raw:
        raise click.BadParameter(f"{raw!r}: expected name=value")
    name, value = raw.split("=", 1)
    for cast in (int, float):
        try:
            return name, cast(value)
        except ValueError:
            pass
    return name, value


def strict_json_value(v):
    """A value JSON can carry exactly: NaN and +-Infinity become null, times ISO 8601 strings."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Decimal):
        return strict_json_value(float(v))
    if isinstance(v, (datetime, date, time)):
        return v.isoformat()
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, dict):
        return {str(k): strict_json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [strict_json_value(x) for x in v]
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)


def to_json(frame: pl.DataFrame) -> str:
    rows = [{k: strict_json_value(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
    return json.dumps(rows, allow_nan=False)


def human(v) -> str:
    """A cell for reading: floats to 4 significant digits with thousands separators, no exponent
    between 1e-4 and 1e15."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        if abs(v) >= 1e15 or abs(v) < 1e-4:
            return f"{v:.4g}"
        digits = max(0, 3 - math.floor(math.log10(abs(v))))
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="seconds")
    return str(v)


def to_table(frame: pl.DataFrame, width: int, max_cell: int = 40) -> str:
    """An aligned table; when it would be wider than `width`, one block per row (column: value)."""
    cols = frame.columns
    if not cols:
        return "(no columns)"
    cells = [[_clip(human(v), max_cell) for v in row] for row in frame.iter_rows()]
    numeric = [dt.is_numeric() for dt in frame.dtypes]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    footer = f"({frame.height} row{'s' if frame.height != 1 else ''})"
    if sum(widths) + 2 * (len(cols) - 1) <= width:
        def line(values):
            return "  ".join(v.rjust(w) if num else v.ljust(w)
                             for v, w, num in zip(values, widths, numeric)).rstrip()
        out = [line(cols), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
        return "\n".join(out + [footer])
    name_w = max(len(c) for c in cols)
    out = []
    for n, row in enumerate(cells, 1):
        out.append(f"-[ row {n} ]" + "-" * max(0, min(width, 60) - 12 - len(str(n))))
        out += [f"{c.ljust(name_w)} | {v}" for c, v in zip(cols, row)]
    return "\n".join(out + [footer])


def _clip(s: str, n: int) -> str:
    s = s.replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def write_csv(frame: pl.DataFrame, stream) -> None:
    w = csv.writer(stream, lineterminator="\n")
    w.writerow(frame.columns)
    for row in frame.iter_rows():
        w.writerow(["" if v is None else json.dumps(strict_json_value(v)) if isinstance(v, (dict, list))
                    else v for v in row])


@click.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="table: aligned, human numbers (one block per row when too wide for the terminal); "
                   "csv: RFC 4180 with a header; json: an array of row objects, strict JSON.")
@click.option("--json", "as_json", is_flag=True,
              help="Same as --format json. Strict JSON: NaN and +-Infinity are printed as null, "
                   "timestamps as ISO 8601 strings.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Bind $NAME in the query to VALUE (repeatable); never pasted into the SQL.")
@click.option("--warehouse", "database", default=None, help=f"Warehouse file. {wh.WAREHOUSE_HELP}")
def cli(query: str, fmt: str, as_json: bool, params: tuple[str, ...], database: str | None) -> None:
    """Run one read-only QUERY on the warehouse (tables and views: see warehouse/README.md).

    Only a single SELECT (WITH, FROM, DESCRIBE, SHOW, SUMMARIZE) or EXPLAIN runs, and it reads only the
    warehouse's own files: COPY, ATTACH, INSTALL, LOAD, SET, PRAGMA, EXPORT, a second statement after
    ';', and read_csv / read_text / glob of any other path are refused (exit 2, one line).
    """
    bound = dict(_parse_param(p) for p in params) or None
    frame = wh.query(wh.warehouse_path(database), query, bound)
    if as_json or fmt == "json":
        sys.stdout.write(to_json(frame) + "\n")
    elif fmt == "csv":
        write_csv(frame, sys.stdout)
    else:
        width = shutil.get_terminal_size((120, 24)).columns
        click.echo(to_table(frame, width))
