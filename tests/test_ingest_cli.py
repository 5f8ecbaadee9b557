"""`torta ingest` and `torta traces list` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from torta.cli import main
from torta.schema import REQUEST_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "ingest"
CONV = ROOT / "traces" / "azure-2023" / "AzureLLMInferenceTrace_conv.csv"
CODE = ROOT / "traces" / "azure-2023" / "AzureLLMInferenceTrace_code.csv"


def _run(args):
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("path,rows", [(CONV, 19366), (CODE, 8819)])
def test_ingest_shipped_azure_json(path, rows, tmp_path):
    out = tmp_path / "o.parquet"
    r = _run(["ingest", "azure-2023", str(path), "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["rows"] == rows and doc["dropped_rows"] == 0
    assert doc["first_arrival"].startswith("2023-11-16T18:1")
    assert doc["last_arrival"].startswith("2023-11-16T19:14")
    assert all(v is not None for v in doc.values())
    frame = pl.read_parquet(out)
    assert frame.height == rows and list(frame.columns)[: len(REQUEST_SCHEMA)] == list(REQUEST_SCHEMA)


def test_ingest_human_output_without_out():
    r = _run(["ingest", "azure-2023", str(DATA / "azure2023_ok.csv")])
    assert r.exit_code == 0, r.output
    assert "5 rows" in r.output and "prompt_tokens" in r.output and "span" in r.output


@pytest.mark.parametrize("fixture,needle", [
    ("azure_nonnumeric.csv", "azure_nonnumeric.csv:3 [ContextTokens]"),
    ("azure_truncated.csv", "azure_truncated.csv:4"),
    ("empty.csv", "empty file"),
    ("azure_misnamed.csv", "missing column"),
    ("does_not_exist.csv", "no such file"),
])
def test_ingest_bad_input_exits_2_and_writes_nothing(fixture, needle, tmp_path):
    out = tmp_path / "o.parquet"
    r = _run(["ingest", "azure-2023", str(DATA / fixture), "--out", str(out)])
    assert r.exit_code == 2
    assert needle in r.output and "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_exits_2_listing_formats():
    r = _run(["ingest", "azure-2030", str(DATA / "azure2023_ok.csv")])
    assert r.exit_code == 2 and "azure-2024" in r.output


def test_quarantine_writes_bad_rows_beside_output(tmp_path):
    out = tmp_path / "o.parquet"
    r = _run(["ingest", "azure-2023", str(DATA / "azure_negative.csv"), "--out", str(out),
              "--on-bad-rows", "quarantine", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["rows"] == 2 and doc["quarantined_rows"] == 1 and doc["dropped_rows"] == 1
    q = pl.read_parquet(tmp_path / "o.quarantine.parquet")
    assert q["line"].to_list() == [4] and q["reason"].to_list() == ["negative_tokens"]
    assert doc["quarantine_path"] == str(tmp_path / "o.quarantine.parquet")


def test_generic_flags_and_mapping_file(tmp_path):
    out = tmp_path / "g.parquet"
    r = _run(["ingest", "generic", str(DATA / "generic_ok.csv"), "--timestamp-col", "when_ms", "--timestamp-unit",
              "ms", "--prompt-col", "in_tok", "--output-col", "out_tok", "--model-col", "model_name", "--json",
              "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["rows"] == 3
    r2 = _run(["ingest", "generic", str(DATA / "generic_ok.csv"), "--mapping", str(DATA / "generic_mapping.toml"),
               "--json"])
    assert r2.exit_code == 0, r2.output
    assert json.loads(r2.stdout)["first_arrival"] == "2024-05-12T00:00:00+00:00"


def test_generic_without_mapping_is_a_clear_error():
    r = _run(["ingest", "generic", str(DATA / "generic_ok.csv")])
    assert r.exit_code == 2 and "column mapping" in r.output


def test_burstgpt_reports_dropped_failures():
    r = _run(["ingest", "burstgpt", str(DATA / "burstgpt_ok.csv"), "--json"])
    doc = json.loads(r.stdout)
    assert doc["rows"] == 4 and doc["dropped_rows"] == 2 and doc["drop_reasons"] == {"zero_tokens_failure": 2}


def test_servegen_cli(tmp_path):
    r = _run(["ingest", "servegen", str(DATA / "servegen"), "--json", "--out", str(tmp_path / "r.parquet")])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["kind"] == "rates" and doc["rows"] == 11 and doc["clients"] == 3


def test_traces_list_json():
    r = _run(["traces", "list", "--json"])
    assert r.exit_code == 0, r.output
    names = {t["name"]: t for t in json.loads(r.stdout)["traces"]}
    assert {"azure-2023-conv", "azure-2023-code", "azure-2024-code", "azure-2024-conv", "burstgpt-1"} <= set(names)
    assert names["azure-2023-conv"]["shipped"] and names["azure-2023-conv"]["present"]
    assert names["azure-2024-code"]["url"].startswith("https://")
    r = _run(["traces", "list"])
    assert r.exit_code == 0 and "azure-2023-code" in r.output


def test_help_on_subcommands():
    for args in (["ingest", "--help"], ["traces", "list", "--help"], ["traces", "fetch", "--help"],
                 ["bench", "ingest", "--help"]):
        r = _run(args)
        assert r.exit_code == 0 and "Usage:" in r.output, args


def test_bench_ingest_smoke(tmp_path):
    """The benchmark command runs end to end on a tiny file (no timing asserted: benchmarks, not tests)."""
    r = _run(["bench", "ingest", "--rows", "2000", "--json", "--dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    case = json.loads(r.stdout)["cases"][0]
    assert case["rows"] == 2000 and case["peak_rss_mib"] > 0 and case["rows_per_s"] > 0
    assert pl.read_parquet(tmp_path / "azure2024_2000.parquet").height == 2000
