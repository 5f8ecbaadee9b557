"""The shipped-trace registry: manifest, checksums, row counts, load_trace."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import polars as pl
import pytest

from torta.errors import InputError, UnknownNameError
from torta.traces import all_traces, load_trace, shipped_traces, validate_requests

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_names_and_manifest_fields():
    shipped = shipped_traces()
    assert set(shipped) == {"azure-2023-conv", "azure-2023-code"}
    for info in all_traces().values():
        assert info.url.startswith("https://") and info.license and info.citation and info.format
    for info in shipped.values():
        assert info.license == "CC BY 4.0" and "Splitwise" in info.citation


@pytest.mark.parametrize("name,rows", [("azure-2023-conv", 19366), ("azure-2023-code", 8819)])
def test_shipped_files_match_manifest(name, rows):
    info = shipped_traces()[name]
    data = info.path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == info.sha256
    assert len(data) == info.size_bytes
    assert b"\r\n" in data  # kept byte-for-byte (CRLF)
    assert info.rows == rows


@pytest.mark.parametrize("name,rows", [("azure-2023-conv", 19366), ("azure-2023-code", 8819)])
def test_load_trace_by_name(name, rows):
    f = load_trace(name)
    assert f.height == rows
    assert f["source"].unique().to_list() == [name]
    assert f["request_id"].to_list() == list(range(rows))
    validate_requests(f)


def test_load_trace_parquet_round_trip_and_validation(tmp_path):
    f = load_trace("azure-2023-code")
    p = tmp_path / "c.parquet"
    f.write_parquet(p)
    assert load_trace(p).equals(f)
    f.with_columns(pl.col("arrival_s").reverse()).write_parquet(tmp_path / "unsorted.parquet")
    with pytest.raises(InputError, match="non-decreasing"):
        load_trace(tmp_path / "unsorted.parquet")
    f.drop("prompt_tokens").write_parquet(tmp_path / "missing.parquet")
    with pytest.raises(InputError, match="prompt_tokens"):
        load_trace(tmp_path / "missing.parquet")


def test_load_trace_unknown_name_and_raw_path():
    with pytest.raises(UnknownNameError) as exc:
        load_trace("azure-2099")
    assert "azure-2023-conv" in str(exc.value)
    with pytest.raises(InputError, match="torta ingest"):
        load_trace(ROOT / "traces" / "azure-2023" / "AzureLLMInferenceTrace_code.csv")
    with pytest.raises(InputError, match="no such file"):
        load_trace("nowhere/x.parquet")


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "traces"
    shutil.copytree(ROOT / "traces" / "azure-2023", root / "azure-2023")
    shutil.copy(ROOT / "traces" / "manifest.toml", root / "manifest.toml")
    monkeypatch.setenv("TORTA_TRACES_DIR", str(root))
    assert load_trace("azure-2023-code").height == 8819
    p = root / "azure-2023" / "AzureLLMInferenceTrace_code.csv"
    p.write_bytes(p.read_bytes().replace(b",4808,", b",4809,", 1))
    with pytest.raises(InputError, match="sha256 mismatch"):
        load_trace("azure-2023-code")


def test_fetchable_trace_not_downloaded(tmp_path, monkeypatch):
    root = tmp_path / "traces"
    root.mkdir()
    shutil.copy(ROOT / "traces" / "manifest.toml", root / "manifest.toml")
    monkeypatch.setenv("TORTA_TRACES_DIR", str(root))
    with pytest.raises(InputError, match="torta traces fetch azure-2024-conv"):
        load_trace("azure-2024-conv")


def test_fetched_trace_is_loaded_and_checked_against_its_recorded_sha(tmp_path, monkeypatch):
    root = tmp_path / "traces"
    (root / "downloads").mkdir(parents=True)
    shutil.copy(ROOT / "traces" / "manifest.toml", root / "manifest.toml")
    monkeypatch.setenv("TORTA_TRACES_DIR", str(root))
    f = root / "downloads" / "BurstGPT_1.csv"
    f.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                 "5,ChatGPT,472,18,490,Conversation log\n7,GPT-4,10,0,10,API log\n")
    (root / "downloads" / "BurstGPT_1.csv.sha256").write_text(hashlib.sha256(f.read_bytes()).hexdigest() + "\n")
    frame = load_trace("burstgpt-1")
    assert frame.height == 1 and frame["source"][0] == "burstgpt-1"
    f.write_text(f.read_text().replace("472", "473"))
    with pytest.raises(InputError, match="sha256 mismatch"):
        load_trace("burstgpt-1")
