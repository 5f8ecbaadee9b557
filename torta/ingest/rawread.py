"""Careful, line-by-line readers used when the fast polars path fails or finds bad rows.

They yield batches as all-String polars frames with a `_line` column (1-based, header included)
and a `_shape` column (a message when the record itself is malformed), so the same vectorised
checks name the first bad line and field, or set bad rows aside. Python's csv module copes with
anything (ragged rows, stray quotes, bad UTF-8 replaced), which the fast reader rejects wholesale.
"""

from __future__ import annotations

import csv
import difflib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from torta.errors import InputError
from torta.limits import MAX_LINE_BYTES, quote

from .checks import LINE, SHAPE

BATCH_ROWS = 200_000
SCAN_BLOCK_BYTES = 1 << 24
csv.field_size_limit(min(sys.maxsize, MAX_LINE_BYTES))


def check_line_lengths(path: Path, limit: int = MAX_LINE_BYTES, block: int = SCAN_BLOCK_BYTES) -> None:
    """InputError naming the first line longer than `limit` bytes. Streams the file in `block`-byte
    pieces (memory stays at one block), so a giant line never reaches a parser."""
    line, run = 1, 0  # current line number, bytes of it seen so far
    with open(path, "rb") as fh:
        while buf := fh.read(block):
            nl = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
            if len(nl) == 0:
                run += len(buf)
                if run > limit:
                    break
                continue
            if run + int(nl[0]) > limit:
                break
            if len(nl) > 1:
                over = np.flatnonzero(np.diff(nl) - 1 > limit)
                if over.size:
                    line += int(over[0]) + 1
                    break
            line += len(nl)
            run = len(buf) - int(nl[-1]) - 1
            if run > limit:
                break
        else:
            return
    raise InputError(path, f"line is longer than {limit:,} bytes, the limit for one record (torta.limits."
                           "MAX_LINE_BYTES); is this the right file and format?", line=line)


def check_file(path: str | Path) -> Path:
    """The path as a Path; InputError unless it is an existing, non-empty regular file."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file")
    if not p.is_file():
        raise InputError(p, "expected a file, found a directory or special file")
    if p.stat().st_size == 0:
        raise InputError(p, "empty file (0 bytes); expected a header line and data rows")
    return p


def read_header(path: Path, separator: str = ",") -> list[str]:
    """Field names on the first line (CSV quoting honoured, BOM and CR stripped)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    row = next(csv.reader([first.lstrip("\ufeff").rstrip("\r\n")], delimiter=separator), [])
    return [c.strip() for c in row]


def require_columns(path: Path, found: list[str], required: list[str], *, line: int | None = 1) -> None:
    """InputError naming the first missing column, what was found and the closest match."""
    missing = [c for c in required if c not in found]
    if not missing:
        return
    hints = []
    lowered = {f.lower(): f for f in found}
    for m in missing:
        close = difflib.get_close_matches(m.lower(), list(lowered), n=1, cutoff=0.6)
        if close:
            hints.append(f"{lowered[close[0]]!r} -> {m!r}?")
    hint = f"; did you mean {', '.join(hints)}" if hints else ""
    raise InputError(path, f"missing column(s) {missing}; expected columns {required}, found {quote(found)}{hint}",
                     line=line, field=missing[0])


def first_data_value(path: Path, column: str, separator: str = ",") -> str | None:
    """The value of `column` on the first non-blank data line (None if there is none)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=separator)
        try:
            header = [c.lstrip("\ufeff").strip() for c in next(reader)]
            for row in reader:
                if row and any(row):
                    i = header.index(column)
                    return row[i] if i < len(row) else None
        except (csv.Error, StopIteration, ValueError):
            return None
    return None


def _frame(lines: list[int], shapes: list[str | None], cols: dict[str, list]) -> pl.DataFrame:
    data = {LINE: pl.Series(LINE, lines, dtype=pl.Int64), SHAPE: pl.Series(SHAPE, shapes, dtype=pl.String)}
    for name, values in cols.items():
        data[name] = pl.Series(name, values, dtype=pl.String)
    return pl.DataFrame(data)


def _csv_frame(rows: list[list[str]], lines: list[int], columns: list[str], idx: list[int], width: int,
               separator: str) -> pl.DataFrame:
    """Transpose a batch of csv rows (C-level zip) into String columns; "" -> null."""
    shapes: list[str | None] = [None] * len(rows)
    fixed = rows
    if any(len(r) != width for r in rows):
        fixed = []
        for i, r in enumerate(rows):
            n = len(r)
            if n == width:
                fixed.append(r)
                continue
            if n == 0 or (n == 1 and not r[0].strip()):  # blank line
                fixed.append([""] * width)
                continue
            hint = " (truncated line?)" if n < width else ""
            shapes[i] = f"expected {width} {separator!r}-separated fields, found {n}{hint}"
            fixed.append((r + [""] * width)[:width])
    transposed = list(zip(*fixed)) if fixed else [()] * width
    frame = _frame(lines, shapes, {c: list(transposed[i]) for c, i in zip(columns, idx)})
    return frame.with_columns([pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in columns])


def csv_batches(path: Path, columns: list[str], *, header: list[str] | None, separator: str = ",",
                batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """Batches of the named columns as strings. `header=None`: the file has a header line to read;
    otherwise `header` names the fields of a header-less file. Blank lines come as all-null rows."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=separator)
        try:
            if header is None:
                names = [c.lstrip("\ufeff").strip() for c in next(reader)]
            else:
                names = list(header)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(path, f"malformed CSV header: {exc}", line=1) from None
        idx = [names.index(c) for c in columns]
        width = len(names)
        rows: list[list[str]] = []
        lines: list[int] = []
        while True:
            try:
                for row in reader:
                    rows.append(row)
                    lines.append(reader.line_num)
                    if len(rows) >= batch_rows:
                        yield _csv_frame(rows, lines, columns, idx, width, separator)
                        rows, lines = [], []
            except csv.Error as exc:
                raise InputError(path, f"malformed CSV: {exc}", line=reader.line_num + 1) from None
            break
        if rows:
            yield _csv_frame(rows, lines, columns, idx, width, separator)


def _as_text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"  # never a valid number
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)


def jsonl_batches(path: Path, columns: list[str], *, batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """Batches of the named keys as strings (non-strings as JSON text). Blank lines: all-null rows."""
    lines: list[int] = []
    shapes: list[str | None] = []
    cols: dict[str, list] = {c: [] for c in columns}
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for n, raw in enumerate(fh, start=1):
            text = raw.strip()
            lines.append(n)
            obj: object = None
            shape = None
            if text:
                try:
                    obj = json.loads(text)
                except ValueError as exc:
                    end = "" if raw.endswith("\n") else " (truncated last line?)"
                    shape = f"invalid JSON: {exc}{end}"
                else:
                    if not isinstance(obj, dict):
                        shape = f"expected a JSON object, found {type(obj).__name__}"
                        obj = None
            shapes.append(shape)
            for c in columns:
                cols[c].append(_as_text(obj.get(c)) if isinstance(obj, dict) else None)
            if len(lines) >= batch_rows:
                yield _frame(lines, shapes, cols)
                lines, shapes, cols = [], [], {c: [] for c in columns}
    if lines:
        yield _frame(lines, shapes, cols)
