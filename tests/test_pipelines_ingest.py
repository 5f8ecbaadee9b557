"""Dagster definitions and the ingest group, materialized for real into a DuckDB file under tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from pipelines import warehouse as wh
from pipelines.assets import ingest
from pipelines.resources import WarehouseResource
from torta.cli import main
from torta.schema import REQUEST_SCHEMA


def test_definitions_validate():
    from pipelines.definitions import defs

    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("ingest_traces")


def test_dagster_cli_validates_definitions():
    out = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "pipelines.definitions"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr


def test_requests_partition_materializes_with_passing_check(warehouse_db):
    res = dg.materialize([ingest.requests], partition_key="azure-2023-code",
                         resources={"warehouse": WarehouseResource(database=str(warehouse_db))})
    assert res.success
    checks = res.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]
    frame = wh.read_table(warehouse_db, "requests", "azure-2023-code")
    assert frame.height == 8819
    assert list(frame.schema)[: len(REQUEST_SCHEMA)] == list(REQUEST_SCHEMA)
    # re-materializing replaces the partition's rows instead of duplicating them
    dg.materialize([ingest.requests], partition_key="azure-2023-code",
                   resources={"warehouse": WarehouseResource(database=str(warehouse_db))})
    rows = wh.query(warehouse_db, "select count(*) as n from requests where source is not null")
    assert rows["n"][0] == 8819


def test_check_detects_unsorted_arrivals():
    frame = pl.DataFrame({c: [] for c in REQUEST_SCHEMA}, schema=REQUEST_SCHEMA)
    frame = pl.concat([frame, pl.DataFrame({"request_id": [0, 1], "arrival_s": [2.0, 1.0], "prompt_tokens": [1, 1],
                                            "output_tokens": [1, 1], "source": ["x", "x"]},
                                           schema_overrides={"arrival_s": pl.Float64})], how="diagonal_relaxed")
    frame = frame.select([pl.col(c).cast(t) for c, t in REQUEST_SCHEMA.items()])
    passed, meta = ingest.check_requests_frame(frame, 2)
    assert not passed and meta["arrivals_sorted"] is False


def test_sql_cli_binds_parameters_and_is_read_only(warehouse_db):
    dg.materialize([ingest.requests], partition_key="azure-2023-code",
                   resources={"warehouse": WarehouseResource(database=str(warehouse_db))})
    r = CliRunner().invoke(main, ["sql", "select count(*) as n from requests where prompt_tokens > $p",
                                  "--param", "p=5000", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert isinstance(rows, list) and rows[0]["n"] > 0
    r = CliRunner().invoke(main, ["sql", "create table t as select 1"])
    assert r.exit_code == 2 and "read-only" in r.output.lower()


def test_corrupt_warehouse_gives_clear_error(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"this is not a duckdb file" * 100)
    r = CliRunner().invoke(main, ["sql", "select 1", "--warehouse", str(bad)])
    assert r.exit_code == 2
    assert "cannot open warehouse" in r.output
    assert "Traceback" not in r.output


def test_locked_warehouse_gives_clear_error(tmp_path):
    db = tmp_path / "locked.duckdb"
    duckdb.connect(str(db)).close()
    holder = subprocess.Popen([sys.executable, "-c",
                               f"import duckdb,time; c=duckdb.connect({str(db)!r}); print('ready', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(wh.WarehouseError, match="locked"):
            with wh.connect(db, read_only=True, retries=3):
                pass
    finally:
        holder.kill()
        holder.wait()
