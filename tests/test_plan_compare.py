"""`torta compare` and its library: the same requests per seed, t-intervals, the JSON contract."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from torta.runs.compare import METRICS, run_compare, t_interval
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


def test_paired_against_several_baselines(trace):
    res = run_compare("abilene", str(trace), ["local-only", "least-loaded", "round-robin"], 2,
                      baseline="local-only,round-robin", log=lambda m: None)
    by = {(r["policy"], r["seed"]): r for r in res.runs}
    for row in res.rows:
        assert set(row["paired_vs"]) == {"local-only", "round-robin"}
        assert row["paired"] == row["paired_vs"]["local-only"]  # the first baseline stays in `paired`
    ll = res.rows[1]["paired_vs"]["round-robin"]
    diffs = [by[("least-loaded", s)]["cost_usd"] - by[("round-robin", s)]["cost_usd"] for s in (0, 1)]
    assert ll["pairs"] == 2 and ll["cost_usd_diff"] == pytest.approx(sum(diffs) / 2)
    rel = [100 * d / by[("round-robin", s)]["cost_usd"] for s, d in zip((0, 1), diffs)]
    assert ll["cost_usd_diff_pct"] == pytest.approx(sum(rel) / 2)
    with pytest.raises(ValueError, match="baseline 'skylb'"):
        run_compare("abilene", str(trace), ["local-only"], 1, baseline="local-only,skylb", log=lambda m: None)


def test_hours_per_day_replays_each_day_as_a_paired_unit():
    from torta.fleet.scenario import load_scenario
    from torta.runs.compare import multiday_input

    logs = []
    res = run_compare("abilene", "servegen-mix-14d", ["least-loaded", "local-only"], 2, days=2,
                      hours_per_day=0.01, baseline="least-loaded", log=logs.append)
    assert "first 0.01 h of each of days 12-13" in logs[0]
    units = sorted({(r["seed"], r["day"]) for r in res.runs})
    assert units == [(0, 12), (0, 13), (1, 12), (1, 13)]
    # each unit is the first 0.01 h (36 s) of that day: the same requests as the experiment's cell
    world = load_scenario("abilene")
    for (seed, day), n in zip(units, res.requests_per_unit):
        inp = multiday_input("servegen-mix-14d", "abilene", world, seed, 1, 0.01, day)
        assert n == inp.requests.height > 0
        assert float(inp.requests["arrival_s"].max()) < 36.0
    assert res.requests_per_seed == [res.requests_per_unit[0] + res.requests_per_unit[1],
                                     res.requests_per_unit[2] + res.requests_per_unit[3]]
    lo = res.rows[1]
    assert lo["units"] == 4 and lo["days"] == [12, 13] and lo["hours_per_day"] == 0.01
    p = lo["paired_vs"]["least-loaded"]
    assert p["pairs"] == 4  # per (seed, day), not per seed
    by = {(r["policy"], r["seed"], r["day"]): r["response_mean_s"] for r in res.runs}
    diffs = [by[("local-only", s, d)] - by[("least-loaded", s, d)] for s, d in units]
    assert p["response_mean_s_diff"] == pytest.approx(sum(diffs) / 4)
    assert p["response_mean_s_diff_ci95"] == pytest.approx(t_interval(diffs)[1])
    assert lo["response_mean_s"] == pytest.approx(np.mean([by[("local-only", s, d)] for s, d in units]))


def test_hours_per_day_bad_combinations(trace):
    with pytest.raises(ValueError, match="multi-day"):
        run_compare("abilene", str(trace), ["local-only"], 1, hours_per_day=1.0, log=lambda m: None)
    with pytest.raises(ValueError, match="not both"):
        run_compare("abilene", "servegen-mix-14d", ["local-only"], 1, hours=1.0, hours_per_day=1.0,
                    log=lambda m: None)
    with pytest.raises(ValueError, match=r"hours_per_day must be in \(0, 24\]"):
        run_compare("abilene", "servegen-mix-14d", ["local-only"], 1, hours_per_day=0.0, log=lambda m: None)


def test_cli_hours_per_day_json():
    from torta.commands.compare import cli

    r = CliRunner().invoke(cli, ["--scenario", "abilene", "--workload", "servegen-mix-14d", "--policies",
                                 "least-loaded,local-only", "--seeds", "1", "--days", "2", "--hours-per-day",
                                 "0.01", "--baseline", "least-loaded,local-only", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["policy"] for x in rows] == ["least-loaded", "local-only"]
    assert rows[0]["units"] == 2 and set(rows[0]["paired_vs"]) == {"least-loaded", "local-only"}
    assert rows[0]["paired_vs"]["local-only"]["pairs"] == 2


def test_compare_markdown_from_a_saved_result(trace, tmp_path):
    from torta.runs.compare_md import compare_markdown, main

    res = run_compare("abilene", str(trace), ["least-loaded", "local-only", "round-robin"], 2,
                      baseline="local-only,round-robin", log=lambda m: None)
    md = compare_markdown(res.rows, "least-loaded", {"command": "torta compare ...", "wall_s": 90.0})
    p = res.rows[0]["paired_vs"]["round-robin"]
    m, h = p["cost_usd_diff_pct"], p["cost_usd_diff_pct_ci95"]
    assert f"{m:+.1f} % [{m - h:+.1f}, {m + h:+.1f}]" in md  # the numbers of the file, as they are
    assert "| `local-only` | 2 |" in md and "| `round-robin` | 2 |" in md
    assert "Wall time: 1.5 min" in md
    with pytest.raises(ValueError, match="policy 'torta' not in the result"):
        compare_markdown(res.rows, "torta")
    plain = run_compare("abilene", str(trace), ["least-loaded"], 1, log=lambda m: None)
    with pytest.raises(ValueError, match="--baseline"):
        compare_markdown(plain.rows, "least-loaded")
    f = tmp_path / "r.json"
    f.write_text(json.dumps(res.rows))
    main([str(f), "--policy", "least-loaded"])
