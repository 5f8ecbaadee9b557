"""Adapters, bad input (each case names file, line, field), quarantine, atomic write, summary."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from torta.errors import InputError, UnknownNameError
from torta.ingest import FORMATS, ColumnMapping, ingest, quarantine_path, summarize, write_parquet_atomic
from torta.schema import RATES_SCHEMA, REQUEST_SCHEMA

DATA = Path(__file__).parent / "data" / "ingest"


def _canonical(frame: pl.DataFrame) -> None:
    assert list(frame.columns)[: len(REQUEST_SCHEMA)] == list(REQUEST_SCHEMA)
    for c, t in REQUEST_SCHEMA.items():
        assert frame.schema[c] == t, c
    assert frame["request_id"].to_list() == list(range(frame.height))
    assert frame["arrival_s"][0] == 0.0
    assert (frame["arrival_s"].diff().drop_nulls() >= 0).all()
    assert frame["origin_region"].null_count() == frame.height


def test_registry_lists_every_format():
    assert set(FORMATS) == {"azure-2023", "azure-2024", "burstgpt", "mooncake", "servegen", "generic"}


def test_unknown_format_lists_valid_ones():
    with pytest.raises(UnknownNameError) as exc:
        ingest("azure-2025", DATA / "azure2023_ok.csv")
    assert "azure-2023" in str(exc.value) and "generic" in str(exc.value)


def test_azure_2023_small_file():
    res = ingest("azure-2023", DATA / "azure2023_ok.csv")
    f = res.frame
    _canonical(f)
    assert f.height == 5 and res.dropped_rows == 0 and res.quarantine is None
    assert f["prompt_tokens"].to_list() == [4808, 3180, 110, 7433, 34]
    assert f["output_tokens"].to_list() == [10, 8, 27, 14, 12]
    assert f["timestamp_utc"][0] == datetime(2023, 11, 16, 18, 17, 3, 979960, tzinfo=timezone.utc)
    # 7 fractional digits keep their 100 ns precision in arrival_s
    assert f["arrival_s"][4] == pytest.approx(0.444994, abs=1e-9)
    assert f["source"].unique().to_list() == ["azure-2023"]
    assert f["model"].null_count() == 5


def test_azure_2024_fraction_digits_and_offsets():
    res = ingest("azure-2024", DATA / "azure2024_ok.csv", source="azure-2024-sample")
    f = res.frame
    _canonical(f)
    # 0, 1, 6 and 7 fractional digits; +00:00, +02:00 and no zone (= UTC)
    assert f["arrival_s"].to_list() == pytest.approx([0.0, 0.5, 1.123456, 2.1234567, 3.0])
    assert f["source"][0] == "azure-2024-sample"
    assert f["timestamp_utc"][3] == datetime(2024, 5, 12, 0, 0, 2, 123456, tzinfo=timezone.utc)


def test_unsorted_input_is_stably_sorted(tmp_path):
    p = tmp_path / "unsorted.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-12 00:00:02,1,1\n2024-05-12 00:00:01,2,2\n"
                 "2024-05-12 00:00:02,3,3\n2024-05-12 00:00:00,4,4\n")
    f = ingest("azure-2024", p).frame
    _canonical(f)
    assert f["prompt_tokens"].to_list() == [4, 2, 1, 3]  # ties keep file order
    assert f["arrival_s"].to_list() == [0.0, 1.0, 2.0, 2.0]


def test_burstgpt_zero_token_failures_are_counted_not_silent():
    res = ingest("burstgpt", DATA / "burstgpt_ok.csv")
    f = res.frame
    _canonical(f)
    assert f.height == 4
    assert res.dropped_rows == 2 and res.drop_reasons == {"zero_tokens_failure": 2}
    assert f["model"].to_list() == ["ChatGPT", "ChatGPT", "GPT-4", "ChatGPT"]
    assert f["arrival_s"].to_list() == [0.0, 40.0, 113.0, 195.0]
    assert f["log_type"].to_list()[-1] == "API log"
    assert f["timestamp_utc"].null_count() == 4  # BurstGPT times are relative


def test_mooncake_jsonl():
    res = ingest("mooncake", DATA / "mooncake_ok.jsonl")
    f = res.frame
    _canonical(f)
    assert f["arrival_s"].to_list() == [0.0, 0.0, 27.482, 30.535]
    assert f["prompt_tokens"].to_list() == [6955, 6472, 6955, 6472]
    assert f["hash_ids"].to_list()[3] == [] and f["hash_ids"].to_list()[1][-1] == 62


def test_mooncake_truncated_last_line_named():
    with pytest.raises(InputError) as exc:
        ingest("mooncake", DATA / "mooncake_truncated.jsonl")
    assert exc.value.line == 3
    assert "mooncake_truncated.jsonl:3" in str(exc.value) and "invalid JSON" in str(exc.value)


def test_servegen_directory_to_rates():
    res = ingest("servegen", DATA / "servegen")
    f = res.frame
    assert res.kind == "rates"
    assert list(f.columns)[: len(RATES_SCHEMA)] == list(RATES_SCHEMA)
    assert f.height == 4 + 3 + 4
    assert sorted(f["client_id"].unique().to_list()) == ["m-large/chunk-7", "m-small/chunk-0", "m-small/chunk-1"]
    assert f["window_s"].unique().to_list() == [600.0]
    first = f.filter(pl.col("client_id") == "m-small/chunk-0").row(0, named=True)
    assert first["window_start_s"] == 143400.0 and first["rate_per_s"] == pytest.approx(0.0766666666)
    assert first["iat_dist"] == "Gamma" and first["iat_shape"] == pytest.approx(0.74802116038809)
    idle = f.filter(pl.col("rate_per_s") == 0)
    assert idle["iat_cv"].null_count() == idle.height and idle["iat_dist"].null_count() == idle.height
    s = summarize(f)
    assert s["kind"] == "rates" and s["clients"] == 3


def test_servegen_single_file_and_bad_row(tmp_path):
    d = tmp_path / "m-mid"
    d.mkdir()
    good = d / "chunk-3-trace.csv"
    good.write_text("0,1.5,1.1,Gamma,0.8,0.5\n600,0,0,,0,0\n")
    f = ingest("servegen", good).frame
    assert f["client_id"].unique().to_list() == ["m-mid/chunk-3"] and f["model_class"][0] == "m-mid"
    bad = d / "chunk-4-trace.csv"
    bad.write_text("0,1.5,1.1,Gamma,0.8,0.5\n600,-2,0,,0,0\n")
    with pytest.raises(InputError) as exc:
        ingest("servegen", d)
    assert exc.value.line == 2 and exc.value.field == "rate" and "chunk-4-trace.csv" in str(exc.value)
    res = ingest("servegen", d, on_bad_rows="quarantine")
    assert res.frame.height == 3 and res.quarantined_rows == 1
    assert res.quarantine["file"][0].endswith("chunk-4-trace.csv")


def test_servegen_empty_directory(tmp_path):
    with pytest.raises(InputError, match="no chunk-<i>-trace.csv"):
        ingest("servegen", tmp_path)


def test_generic_csv_with_toml_mapping():
    mapping = ColumnMapping.from_toml(DATA / "generic_mapping.toml")
    res = ingest("generic", DATA / "generic_ok.csv", mapping=mapping, source="mine")
    f = res.frame
    _canonical(f)
    assert f["prompt_tokens"].to_list() == [20, 10, 30]
    assert f["arrival_s"].to_list() == [0.0, 0.5, 1.25]
    assert f["model"].to_list() == ["llama-7b", "llama-70b", "llama-7b"]
    assert f["timestamp_utc"][0] == datetime(2024, 5, 12, tzinfo=timezone.utc)


def test_generic_jsonl_and_parquet_and_strftime(tmp_path):
    rows = {"t": ["12/05/2024 10:00:01", "12/05/2024 10:00:00"], "p": [5, 6], "o": [7, 8]}
    pl.DataFrame(rows).write_ndjson(tmp_path / "x.jsonl")
    pl.DataFrame(rows).write_parquet(tmp_path / "x.parquet")
    m = ColumnMapping(timestamp="t", timestamp_format="%d/%m/%Y %H:%M:%S", prompt_tokens="p", output_tokens="o")
    for name in ("x.jsonl", "x.parquet"):
        f = ingest("generic", tmp_path / name, mapping=m).frame
        _canonical(f)
        assert f["prompt_tokens"].to_list() == [6, 5]
        assert f["timestamp_utc"][0] == datetime(2024, 5, 12, 10, tzinfo=timezone.utc)
    # relative numeric seconds: no absolute timestamp
    pl.DataFrame({"t": [3.5, 1.0], "p": [1, 2], "o": [3, 4]}).write_parquet(tmp_path / "y.parquet")
    f = ingest("generic", tmp_path / "y.parquet",
               mapping=ColumnMapping(timestamp="t", timestamp_unit="s", prompt_tokens="p", output_tokens="o")).frame
    assert f["arrival_s"].to_list() == [0.0, 2.5] and f["timestamp_utc"].null_count() == 2


def test_generic_needs_mapping_and_fixed_formats_refuse_one():
    with pytest.raises(ValueError, match="needs a column mapping"):
        ingest("generic", DATA / "generic_ok.csv")
    m = ColumnMapping(timestamp="a", prompt_tokens="b", output_tokens="c")
    with pytest.raises(ValueError, match="only for the 'generic' format"):
        ingest("azure-2023", DATA / "azure2023_ok.csv", mapping=m)


def test_mapping_validation(tmp_path):
    with pytest.raises(ValueError, match="timestamp unit"):
        ColumnMapping(timestamp="a", prompt_tokens="b", output_tokens="c", timestamp_unit="min")
    bad = tmp_path / "m.toml"
    bad.write_text('timestamp = "a"\nprompt = "b"\n')
    with pytest.raises(InputError, match="unknown key"):
        ColumnMapping.from_toml(bad)
    bad.write_text("timestamp = \n")
    with pytest.raises(InputError, match="not valid TOML"):
        ColumnMapping.from_toml(bad)


def test_generic_parquet_missing_column_and_bad_row(tmp_path):
    p = tmp_path / "z.parquet"
    pl.DataFrame({"t": [1.0, 2.0], "p": [1, -1], "o": [1, 1]}).write_parquet(p)
    with pytest.raises(InputError) as exc:
        ingest("generic", p, mapping=ColumnMapping(timestamp="t", timestamp_unit="s", prompt_tokens="q",
                                                   output_tokens="o"))
    assert exc.value.field == "q" and "found ['t', 'p', 'o']" in str(exc.value)
    with pytest.raises(InputError) as exc:
        ingest("generic", p, mapping=ColumnMapping(timestamp="t", timestamp_unit="s", prompt_tokens="p",
                                                   output_tokens="o"))
    assert exc.value.line == 2 and exc.value.field == "p" and "row 2" in str(exc.value)


# ------------------------------------------------------------------ bad input: one test per case


def test_missing_file():
    with pytest.raises(InputError, match="no such file") as exc:
        ingest("azure-2023", DATA / "does_not_exist.csv")
    assert "does_not_exist.csv" in str(exc.value)


def test_empty_file():
    with pytest.raises(InputError, match="empty file") as exc:
        ingest("azure-2023", DATA / "empty.csv")
    assert "empty.csv" in str(exc.value)


def test_header_only_file():
    with pytest.raises(InputError, match="no data rows"):
        ingest("azure-2023", DATA / "azure_header_only.csv")


def test_misnamed_column_suggests_the_right_name():
    with pytest.raises(InputError) as exc:
        ingest("azure-2023", DATA / "azure_misnamed.csv")
    e = exc.value
    assert e.line == 1 and e.field == "TIMESTAMP"
    assert "'Timestamp' -> 'TIMESTAMP'" in str(e)


def test_missing_column():
    with pytest.raises(InputError) as exc:
        ingest("azure-2023", DATA / "azure_missing_column.csv")
    assert exc.value.field == "GeneratedTokens" and "expected columns" in str(exc.value)


def test_non_numeric_tokens():
    with pytest.raises(InputError) as exc:
        ingest("azure-2023", DATA / "azure_nonnumeric.csv")
    e = exc.value
    assert (e.line, e.field) == (3, "ContextTokens")
    assert "'31x80'" in str(e) and "non-negative integer" in str(e) and "azure_nonnumeric.csv:3" in str(e)


def test_negative_tokens():
    with pytest.raises(InputError) as exc:
        ingest("azure-2023", DATA / "azure_negative.csv")
    assert (exc.value.line, exc.value.field) == (4, "GeneratedTokens") and "'-27'" in str(exc.value)


def test_unparseable_timestamp():
    with pytest.raises(InputError) as exc:
        ingest("azure-2023", DATA / "azure_bad_timestamp.csv")
    e = exc.value
    assert (e.line, e.field) == (3, "TIMESTAMP") and "16/11/2023 18:17" in str(e) and "bad_timestamp" in str(e)


def test_truncated_last_line():
    with pytest.raises(InputError) as exc:
        ingest("azure-2023", DATA / "azure_truncated.csv")
    assert exc.value.line == 4 and "truncated line" in str(exc.value)


def test_too_many_fields(tmp_path):
    p = tmp_path / "wide.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-12 00:00:00,1,2\n2024-05-12 00:00:01,1,2,3\n")
    with pytest.raises(InputError) as exc:
        ingest("azure-2024", p)
    assert exc.value.line == 3 and "found 4" in str(exc.value)


def test_fractional_tokens_rejected(tmp_path):
    p = tmp_path / "frac.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-12 00:00:00,1.5,2\n")
    with pytest.raises(InputError) as exc:
        ingest("azure-2024", p)
    assert exc.value.line == 2 and exc.value.field == "ContextTokens"


def test_blank_lines_are_counted(tmp_path):
    p = tmp_path / "blank.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-12 00:00:00,1,2\n\n2024-05-12 00:00:01,1,2\n\n")
    res = ingest("azure-2024", p)
    assert res.frame.height == 2 and res.drop_reasons == {"blank_line": 2} and res.dropped_rows == 2


def test_bad_line_number_after_a_blank_line(tmp_path):
    p = tmp_path / "blank_bad.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-12 00:00:00,1,2\n\n2024-05-12 00:00:01,x,2\n")
    with pytest.raises(InputError) as exc:
        ingest("azure-2024", p)
    assert exc.value.line == 4


def test_bad_on_bad_rows_value():
    with pytest.raises(ValueError, match="on_bad_rows"):
        ingest("azure-2023", DATA / "azure2023_ok.csv", on_bad_rows="ignore")


# ------------------------------------------------------------------ quarantine


def test_quarantine_sets_bad_rows_aside_with_reasons(tmp_path):
    p = tmp_path / "mixed.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
                 "2024-05-12 00:00:00,1,2\r\n"
                 "not a time,1,2\r\n"
                 "2024-05-12 00:00:02,-1,2\r\n"
                 "2024-05-12 00:00:03,1,x\r\n"
                 "2024-05-12 00:00:04,4,5\r\n"
                 "2024-05-12 00:00:05,1\r\n")
    res = ingest("azure-2024", p, on_bad_rows="quarantine")
    assert res.frame.height == 2 and res.frame["prompt_tokens"].to_list() == [1, 4]
    q = res.quarantine
    assert q["line"].to_list() == [3, 4, 5, 7]
    assert q["reason"].to_list() == ["bad_timestamp", "negative_tokens", "not_integer", "malformed_line"]
    assert q["field"].to_list()[:3] == ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    assert q["TIMESTAMP"][0] == "not a time"
    assert res.dropped_rows == 4 and res.quarantined_rows == 4
    assert res.drop_reasons == {"bad_timestamp": 1, "malformed_line": 1, "negative_tokens": 1, "not_integer": 1}


def test_quarantine_path_beside_output():
    assert quarantine_path("out/x.parquet") == Path("out/x.quarantine.parquet")
    assert quarantine_path("out/x") == Path("out/x.quarantine.parquet")


# ------------------------------------------------------------------ output


def test_write_parquet_atomic_round_trip(tmp_path):
    f = ingest("azure-2023", DATA / "azure2023_ok.csv").frame
    out = write_parquet_atomic(f, tmp_path / "sub" / "x.parquet")
    assert pl.read_parquet(out).equals(f)
    assert [p.name for p in out.parent.iterdir()] == ["x.parquet"]


def test_write_parquet_atomic_failure_leaves_nothing(tmp_path, monkeypatch):
    f = ingest("azure-2023", DATA / "azure2023_ok.csv").frame

    def boom(self, path, **kw):
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        write_parquet_atomic(f, tmp_path / "x.parquet")
    assert list(tmp_path.iterdir()) == []


def test_summarize_requests():
    f = ingest("azure-2023", DATA / "azure2023_ok.csv").frame
    s = summarize(f)
    assert s["rows"] == 5
    assert s["first_arrival"].startswith("2023-11-16T18:17:03.979960")
    assert s["span_s"] == pytest.approx(0.444994)
    assert s["prompt_tokens"]["max"] == 7433.0 and s["output_tokens"]["min"] == 8.0
    empty = summarize(f.clear())
    assert empty["rows"] == 0 and empty["span_s"] == 0.0 and empty["prompt_tokens"]["mean"] == 0.0


def test_summarize_relative_times():
    s = summarize(ingest("burstgpt", DATA / "burstgpt_ok.csv").frame)
    assert s["first_arrival"] == 0.0 and s["last_arrival"] == 195.0 and s["models"] == {"ChatGPT": 3, "GPT-4": 1}


def test_servegen_adapter_reads_the_shipped_raw_sample():
    raw = Path(__file__).resolve().parents[1] / "traces" / "servegen" / "raw-sample"
    if not raw.exists():
        pytest.skip("traces/servegen/raw-sample not in this checkout")
    res = ingest("servegen", raw)
    f = res.frame
    assert f.height == 2016 * len(list(raw.rglob("chunk-*-trace.csv")))
    assert f["window_s"].unique().to_list() == [600.0] and res.dropped_rows == 0
    assert f["window_start_s"].max() == 1_209_000.0


def test_mixed_timestamp_styles_stay_on_the_fast_path(tmp_path, monkeypatch):
    from torta.ingest import requests as engine

    def no_careful(*args, **kwargs):
        raise AssertionError("the line-by-line path should not be needed")

    monkeypatch.setattr(engine, "_careful", no_careful)
    p = tmp_path / "mix.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-12 00:00:00+00:00,1,1\n2024-05-12T00:00:01,2,2\n"
                 "2024-05-12 02:00:02.5+02:00,3,3\n")
    assert ingest("azure-2024", p).frame["arrival_s"].to_list() == [0.0, 1.0, 2.5]
