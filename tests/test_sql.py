"""`torta sql` reads only the warehouse: every refusal goes through the real CLI in a subprocess
(exit 2, one line on stderr, nothing written), output formats, strict JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from pipelines import warehouse as wh
from pipelines.commands.sql import human, to_table

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wh_db(tmp_path_factory) -> Path:
    """A real warehouse: a wide `runs` partition (46 columns, NaN and infinities) and `requests`."""
    db = tmp_path_factory.mktemp("sqlwh") / "wh" / "torta.duckdb"
    wide = {f"metric_{i:02d}_s": [float(i) + 0.123456789, 2.5e5 + i] for i in range(40)}
    runs = pl.DataFrame({"key": ["a|w|p|0", "a|w|p|1"], "policy": ["p", "p"], "batch": ["b1", "b1"],
                         "response_mean_s": [float("nan"), 1.5], "cost_usd": [float("inf"), -float("inf")],
                         "finished_at": [datetime(2026, 1, 1, 12), datetime(2026, 1, 1, 13)], **wide})
    assert runs.width == 46
    wh.write_partition(db, "runs", "a|w|p|0", runs)
    wh.write_partition(db, "requests", "t", pl.DataFrame({"request_id": [0, 1, 2], "prompt_tokens": [5, 50, 500]}))
    status = wh.refresh_views(db)
    assert status["runs"] == "ok" and status["requests"] == "ok"
    return db


def torta_sql(db: Path, *args: str, cwd: Path | None = None, env_db: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TORTA_WAREHOUSE", None)
    argv = [sys.executable, "-m", "torta.cli", "sql", *args]
    if env_db:
        env["TORTA_WAREHOUSE"] = str(db)
    else:
        argv += ["--warehouse", str(db)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd or db.parent, timeout=120)


def _refused(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""
    return lines[0]


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize("sql, reason", [
    ("copy (select 1 as x) to '{out}/leak.csv'", "COPY"),
    ("copy (select * from runs) to '{wh}/parquet/runs/leak.parquet'", "COPY"),  # inside the warehouse too
    ("attach '{out}/other.duckdb' as other", "ATTACH"),
    ("install httpfs", "INSTALL"),
    ("load httpfs", "LOAD"),
    ("set threads = 1", "SET"),
    ("set enable_external_access = true", "SET"),
    ("pragma database_list", "PRAGMA"),
    ("export database '{out}/dump'", "EXPORT DATABASE"),
    ("select 1; copy (select 1) to '{out}/smuggled.csv'", "2 statements"),
    ("select 1; select 2", "2 statements"),
    ("create table t as select 1", "CREATE"),
])
def test_statement_refused(wh_db, tmp_path, sql, reason):
    before = _files_under(wh_db.parent)
    r = torta_sql(wh_db, sql.format(out=tmp_path, wh=wh_db.parent))
    line = _refused(r)
    assert reason in line and "refused" in line, line
    assert list(tmp_path.iterdir()) == []
    assert _files_under(wh_db.parent) == before


@pytest.mark.parametrize("sql", [
    "select * from read_csv('{host}')",
    "select * from read_csv_auto('{host}')",
    "select * from read_text('{host}')",
    "select * from read_blob('{host}')",
    "select * from glob('{host_dir}/*')",
    "select * from sniff_csv('{host}')",
    "select * from read_parquet('{host_dir}/*.parquet')",
])
def test_host_file_access_refused(wh_db, tmp_path, sql):
    host = tmp_path / "secret.csv"
    host.write_text("user,password\nroot,hunter2\n")
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "other.parquet")
    r = torta_sql(wh_db, sql.format(host=host, host_dir=tmp_path), "--json")
    line = _refused(r)
    assert "refused" in line and "hunter2" not in r.stderr, line


def test_reading_the_warehouse_itself_works(wh_db):
    r = torta_sql(wh_db, "select count(*) as n from requests where prompt_tokens > $p", "--param", "p=10",
                  "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"n": 2}]


def _no_constants(name):
    raise ValueError(f"non-JSON constant {name}")


def test_json_is_strict(wh_db):
    r = torta_sql(wh_db, "select key, response_mean_s, cost_usd, finished_at from runs order by key", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout, parse_constant=_no_constants)
    assert rows[0]["response_mean_s"] is None and rows[0]["cost_usd"] is None and rows[1]["cost_usd"] is None
    assert rows[1]["response_mean_s"] == 1.5
    assert rows[0]["finished_at"] == "2026-01-01T12:00:00"
    r2 = torta_sql(wh_db, "select key, response_mean_s, cost_usd, finished_at from runs order by key",
                   "--format", "json")
    assert r2.stdout == r.stdout


def test_csv_format(wh_db):
    r = torta_sql(wh_db, "select key, response_mean_s from runs order by key", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["key,response_mean_s", "a|w|p|0,nan", "a|w|p|1,1.5"]


def test_wide_table_is_readable(wh_db):
    r = torta_sql(wh_db, "select * from runs order by key")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # 46 columns do not fit 120 characters: one block per row, every column name and value in full
    assert "-[ row 1 ]" in out and "-[ row 2 ]" in out
    assert "metric_39_s" in out and "250,039" in out and "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 120


def test_narrow_table_and_human_numbers():
    frame = pl.DataFrame({"policy": ["a", "bb"], "cost_usd": [236912.0, 0.5], "n": [12345, 3]})
    text = to_table(frame, 120)
    lines = text.splitlines()
    assert lines[0].split() == ["policy", "cost_usd", "n"]
    assert "236,912" in text and "e+" not in text and "12,345" in text and lines[-1] == "(2 rows)"
    assert human(0.000123) == "0.0001230" and human(float("nan")) == "nan" and human(2.369e5) == "236,900"


def test_missing_table_is_one_clear_line(wh_db):
    line = _refused(torta_sql(wh_db, "select * from no_such_table"))
    assert "no table or view 'no_such_table'" in line and "runs" in line


def test_warehouse_found_from_any_directory(wh_db, tmp_path):
    r = torta_sql(wh_db, "select count(*) as n from requests", "--json", cwd=tmp_path, env_db=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"n": 3}]


def test_default_warehouse_does_not_depend_on_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("TORTA_WAREHOUSE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert wh.warehouse_path() == REPO / "warehouse" / "torta.duckdb"
    # a root that is not a writable checkout (an installed package): the user data directory
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert wh.default_warehouse(tmp_path / "site-packages") == tmp_path / "data" / "torta" / "torta.duckdb"


def test_tables_with_no_rows_exist_with_their_columns(wh_db):
    for name in ("backtests", "backtest_choices", "training_curves", "quarantine", "forecast_accuracy"):
        r = torta_sql(wh_db, f"select * from {name}", "--format", "csv")
        assert r.returncode == 0, (name, r.stderr)
        header, *rows = r.stdout.splitlines()
        assert rows == [] and len(header.split(",")) >= 5, (name, r.stdout)
