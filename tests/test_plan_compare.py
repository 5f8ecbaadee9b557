"""`torta compare` and its library: the same requests per seed, t-intervals, the JSON contract."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from torta.plan.compare import METRICS, run_compare, t_interval
from torta.schema import REQUEST_SCHEMA


def test_t_interval_matches_the_formula():
    mean, half = t_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    # t_{0.975, 3} = 3.182446; sd = 1.290994; n = 4
    assert half == pytest.approx(3.182446 * 1.290994 / 2.0, rel=1e-5)
    assert t_interval([5.0]) == (5.0, 0.0)
    assert t_interval([2.0, 2.0, 2.0]) == (2.0, 0.0)


@pytest.fixture
def trace(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    df = pl.DataFrame({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": np.sort(rng.uniform(0, 600, n)),
        "timestamp_utc": [None] * n,
        "prompt_tokens": rng.integers(50, 1200, n).astype(np.int64),
        "output_tokens": rng.integers(5, 200, n).astype(np.int64),
        "model": ["llama2-13b"] * n,
        "origin_region": [None] * n,  # drawn per seed by the replay
        "source": ["test"] * n,
    }, schema=REQUEST_SCHEMA)
    path = tmp_path / "requests.parquet"
    df.write_parquet(path)
    return path


def test_run_compare_rows(trace):
    logs = []
    res = run_compare("abilene", str(trace), ["least-loaded", "myopic-ot"], 2, log=logs.append)
    assert [r["policy"] for r in res.rows] == ["least-loaded", "myopic-ot"]
    assert res.requests_per_seed == [300, 300]
    assert "300 requests" in logs[0] and "estimated run time" in logs[0]
    for row in res.rows:
        for m in METRICS:
            assert isinstance(row[m], float) and math.isfinite(row[m])
            assert row[m + "_ci95"] >= 0.0
    assert res.rows[0]["planner_ms_per_slot"] == 0.0
    assert res.rows[1]["planner_ms_per_slot"] > 0.0
    # the same requests per seed for every policy: request counts and seeds line up
    per = {(r["policy"], r["seed"]): r["requests"] for r in res.runs}
    assert per[("least-loaded", 0)] == per[("myopic-ot", 0)] == 300


def test_cli_json_is_one_document(trace):
    from torta.commands.compare import cli

    r = CliRunner().invoke(cli, ["--scenario", "abilene", "--workload", str(trace), "--policies",
                                 "local-only,skylb", "--seeds", "1", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["policy"] for x in rows] == ["local-only", "skylb"]
    assert set(f"{m}_ci95" for m in METRICS) <= set(rows[0])
    assert rows[1]["params"]["tuned"] is False  # a trace has no training window: default threshold


def test_unknown_policy_is_a_clear_error(trace):
    with pytest.raises(KeyError, match="unknown policy 'nope'"):
        run_compare("abilene", str(trace), ["nope"], 1, log=lambda m: None)


def test_paired_differences(trace):
    res = run_compare("abilene", str(trace), ["local-only", "least-loaded"], 2, baseline="local-only",
                      log=lambda m: None)
    p = res.rows[1]["paired"]
    assert p["baseline"] == "local-only" and p["pairs"] == 2
    by = {(r["policy"], r["seed"]): r["response_mean_s"] for r in res.runs}
    diffs = [by[("least-loaded", s)] - by[("local-only", s)] for s in (0, 1)]
    assert p["response_mean_s_diff"] == pytest.approx(sum(diffs) / 2)
    assert res.rows[0]["paired"]["response_mean_s_diff"] == 0.0
    with pytest.raises(ValueError, match="baseline"):
        run_compare("abilene", str(trace), ["local-only"], 1, baseline="skylb", log=lambda m: None)
