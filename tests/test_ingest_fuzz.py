"""Hypothesis fuzz of every adapter: any bytes or rows give a valid frame or an InputError, never
another exception."""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torta.errors import InputError
from torta.ingest import ColumnMapping, ingest
from torta.schema import RATES_SCHEMA, REQUEST_SCHEMA

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TMP = Path(tempfile.mkdtemp(prefix="torta-fuzz-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
_counter = itertools.count()

HEADERS = {
    "azure-2024": "TIMESTAMP,ContextTokens,GeneratedTokens",
    "burstgpt": "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type",
}
MAPPING = ColumnMapping(timestamp="t", timestamp_unit="ms", prompt_tokens="p", output_tokens="o", model="m")


def _write(data: bytes, suffix: str) -> Path:
    p = _TMP / f"f{next(_counter)}{suffix}"
    p.write_bytes(data)
    return p


def _check(fmt: str, path: Path, **kw) -> None:
    for mode in ("error", "quarantine"):
        try:
            res = ingest(fmt, path, on_bad_rows=mode, **kw)
        except InputError as exc:
            assert str(path.name) in str(exc) or str(path.parent.name) in str(exc)
            continue
        schema = RATES_SCHEMA if res.kind == "rates" else REQUEST_SCHEMA
        for c, t in schema.items():
            assert res.frame.schema[c] == t
        if res.kind == "requests" and res.frame.height:
            assert res.frame["request_id"].to_list() == list(range(res.frame.height))
            assert (res.frame["arrival_s"].diff().drop_nulls() >= 0).all()
            assert (res.frame["prompt_tokens"] >= 0).all() and (res.frame["output_tokens"] >= 0).all()
        assert res.dropped_rows == sum(res.drop_reasons.values())
        if mode == "error":
            assert res.quarantine is None


field = st.one_of(
    st.sampled_from(["", "0", "7", "-3", "12.5", "1e3", "x", " 5", "nan", "inf", "2024-05-12 00:00:00",
                     "2023-11-16 18:17:03.9799600", "2024-05-12T00:00:00Z", "2024-05-12 00:00:00.123+02:00",
                     "99999999999999999999", '"q"', "ChatGPT", "Gamma", "Weibull", "[1,2]"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
)
row = st.lists(field, min_size=0, max_size=7)
eol = st.sampled_from(["\n", "\r\n"])


def _csv_text(header: str | None, rows: list[list[str]], end: str, trailing: bool) -> bytes:
    lines = ([header] if header is not None else []) + [",".join(r) for r in rows]
    return (end.join(lines) + (end if trailing else "")).encode("utf-8", "surrogatepass")


@SETTINGS
@given(st.sampled_from(sorted(HEADERS)), st.lists(row, max_size=6), eol, st.booleans())
def test_fuzz_csv_rows(fmt, rows, end, trailing):
    _check(fmt, _write(_csv_text(HEADERS[fmt], rows, end, trailing), ".csv"))


@SETTINGS
@given(st.sampled_from(["azure-2023", "burstgpt", "mooncake", "servegen"]), st.binary(max_size=300))
def test_fuzz_random_bytes(fmt, data):
    _check(fmt, _write(data, ".jsonl" if fmt == "mooncake" else ".csv"))


@SETTINGS
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_after_valid_header(data):
    _check("azure-2024", _write(HEADERS["azure-2024"].encode() + b"\r\n" + data, ".csv"))


json_value = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**20), st.floats(allow_nan=True),
                       st.text(max_size=5), st.lists(st.integers(-5, 10**19), max_size=3),
                       st.lists(st.text(max_size=2), max_size=2))


@SETTINGS
@given(st.lists(st.one_of(
    st.fixed_dictionaries({"timestamp": json_value, "input_length": json_value, "output_length": json_value,
                           "hash_ids": json_value}),
    st.dictionaries(st.sampled_from(["timestamp", "input_length", "output_length", "hash_ids", "x"]), json_value),
    st.text(max_size=20)), max_size=6), st.booleans())
def test_fuzz_mooncake_jsonl(records, trailing):
    import json

    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    data = "\n".join(lines) + ("\n" if trailing else "")
    _check("mooncake", _write(data.encode("utf-8", "surrogatepass"), ".jsonl"))


@SETTINGS
@given(st.lists(st.lists(field, min_size=0, max_size=7), max_size=6), eol)
def test_fuzz_servegen(rows, end):
    d = _TMP / f"sg{next(_counter)}" / "m-x"
    d.mkdir(parents=True)
    (d / "chunk-0-trace.csv").write_bytes(_csv_text(None, rows, end, True))
    _check("servegen", d.parent)


@SETTINGS
@given(st.lists(row, max_size=6), eol, st.sampled_from(["csv", "jsonl", "parquet"]))
def test_fuzz_generic(rows, end, kind):
    if kind == "csv":
        path = _write(_csv_text("t,p,o,m", rows, end, True), ".csv")
    else:
        cols = {c: [(r[i] if i < len(r) else None) for r in rows] for i, c in enumerate("tpom")}
        frame = pl.DataFrame(cols, schema={c: pl.String for c in "tpom"})
        path = _TMP / f"g{next(_counter)}.{kind}"
        if kind == "jsonl":
            frame.write_ndjson(path)
        else:
            frame.write_parquet(path)
    _check("generic", path, mapping=MAPPING)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7), st.booleans(), st.integers(0, 10**6),
                          st.integers(0, 10**6)), min_size=1, max_size=30), eol)
def test_valid_azure_rows_round_trip(rows, end):
    """Well-formed rows with 0-7 fractional digits, with or without +00:00, all survive intact."""
    from datetime import datetime, timedelta, timezone

    base = datetime(2024, 5, 12, tzinfo=timezone.utc)
    lines, expected = [], []
    for micros, digits, offset, p, o in rows:
        t = base + timedelta(microseconds=micros)
        frac = f"{t.microsecond:06d}0"[:digits]
        text = t.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if digits else "") + ("+00:00" if offset else "")
        lines.append(f"{text},{p},{o}")
        exact = t.replace(microsecond=int((frac or "0").ljust(6, "0")[:6]))
        expected.append((exact, p, o))
    path = _write(_csv_text(HEADERS["azure-2024"], [[ln] for ln in lines], end, False), ".csv")
    f = ingest("azure-2024", path).frame
    expected.sort(key=lambda r: r[0])
    assert f.height == len(rows)
    assert f["timestamp_utc"].to_list() == [e[0] for e in expected]
    assert sorted(zip(f["prompt_tokens"], f["output_tokens"])) == sorted((e[1], e[2]) for e in expected)
