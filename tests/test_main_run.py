"""`torta run`: names checked before any work (exit 2, one line, fast, nothing left behind); the main
job end to end with parallel replays, named and tagged runs, and every table the README lists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from pipelines import warehouse as wh

REPO = Path(__file__).resolve().parents[1]


def _torta(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "TORTA_WAREHOUSE": str(tmp_path / "wh" / "torta.duckdb")}
    return subprocess.run([sys.executable, "-m", "torta.cli", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("args, needle", [
    (["--policies", "foo"], "unknown policy 'foo'"),
    (["--policies", "least-loaded,foo"], "unknown policy 'foo'"),
    (["--scenario", "atlantis"], "unknown scenario 'atlantis'"),
    (["--workload", "no-such-workload"], "unknown workload 'no-such-workload'"),
    (["--hours", "0"], "--hours 0"),
])
def test_run_rejects_bad_names_before_any_work(tmp_path, args, needle):
    t = time.perf_counter()
    r = _torta(tmp_path, "run", *args)
    wall = time.perf_counter() - t
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert wall < 10, f"took {wall:.1f} s"
    # no work done: no warehouse, no Dagster instance, so no dynamic partition
    assert not (tmp_path / "wh").exists()
    assert not (tmp_path / "dagster_home").exists()


def _readme_names() -> tuple[list[str], list[str]]:
    text = (REPO / "README.md").read_text()
    tables = re.search(r"Tables: (.*?)\. Views:", text, re.S).group(1)
    views = re.search(r"Views:\s*(.*?)\. DDL", text, re.S).group(1)
    return re.findall(r"`(\w+)`", tables), re.findall(r"`(\w+)`", views)


def test_readme_lists_exactly_the_ddl_files():
    tables, views = _readme_names()
    assert sorted(tables) == sorted(p.stem for p in (REPO / "warehouse" / "tables").glob("*.sql"))
    assert sorted(views) == sorted(p.stem for p in (REPO / "warehouse" / "views").glob("*.sql"))


@pytest.mark.slow
def test_main_job_parallel_named_tagged_and_complete(tmp_path, monkeypatch):
    """Two replays at a time in worker processes; runs are of job `main` with the batch's tags; every
    table and view the README lists exists afterwards (some empty)."""
    from pipelines.main import MainConfig, run_main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    db = tmp_path / "wh" / "torta.duckdb"
    cfg = MainConfig(policies=("least-loaded", "local-only"), seeds=1, hours=0.02, report=False, batch="b-test")
    out = run_main(cfg, str(db), workers=2)
    assert out["workers"] == 2 and out["comparison"].height == 2
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"batch": "b-test"}))
        jobs = sorted(r.job_name for r in runs)
        assert jobs.count("main") == 2 and "build_fleet" in jobs and "ingest_traces" in jobs
        assert all(r.tags.get("command") == "torta run" for r in runs)
    present = set(wh.query(db, "select table_name from information_schema.tables")["table_name"].to_list())
    tables, views = _readme_names()
    assert set(tables) | set(views) <= present, set(tables) | set(views) - present
    for empty in ("backtests", "backtest_choices", "training_curves", "quarantine", "forecast_accuracy"):
        assert wh.query(db, f"select count(*) as n from {empty}")["n"][0] == 0


@pytest.mark.slow
def test_failed_batch_leaves_no_partition(tmp_path, monkeypatch):
    """A replay that fails after the set-up stages: its dynamic partition is removed again."""
    import click

    from pipelines.main import MainConfig, run_main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    cfg = MainConfig(seeds=1, hours=0.02, report=False, batch="b-fail")
    with pytest.raises(click.ClickException, match="failed"):
        run_main(cfg, str(tmp_path / "wh" / "torta.duckdb"), workers=1, policies=["no-such-policy"])
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions("replays") == []
