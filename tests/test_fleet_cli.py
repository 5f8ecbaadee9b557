"""`torta fleet show|perf|list` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from torta.cli import main
from torta.fleet.scenario import list_scenarios


def _run(args):
    r = CliRunner().invoke(main, args)
    return r


def _no_nulls(x):
    if isinstance(x, dict):
        return all(_no_nulls(v) for v in x.values())
    if isinstance(x, list):
        return all(_no_nulls(v) for v in x)
    return x is not None


@pytest.mark.parametrize("name", list_scenarios())
def test_fleet_show_every_scenario(name):
    r = _run(["fleet", "show", name, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["scenario"] == name
    assert doc["servers"] > 0 and doc["regions"] >= 1
    assert len(doc["region_table"]) == doc["regions"]
    assert doc["price_usd_per_mwh"]["min"] <= doc["price_usd_per_mwh"]["max"]
    assert doc["latency_ms"]["min"] <= doc["latency_ms"]["max"]
    assert all(c["initial"] <= c["allowed"] + 1e-9 for c in doc["capacity_requests_per_s"].values())
    assert _no_nulls(doc)
    text = _run(["fleet", "show", name])
    assert text.exit_code == 0 and name in text.output


def test_fleet_perf_json():
    r = _run(["fleet", "perf", "--model", "llama2-70b", "--gpu", "H100", "--tp", "8",
              "--prompt-tokens", "1024", "--batch", "8", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {"prefill_ms", "decode_ms_per_iter", "max_batch"} <= set(doc)
    assert doc["prefill_ms"] > doc["decode_ms_per_iter"] > 0
    assert doc["tier"] == "splitwise"


def test_fleet_perf_check_json_contract():
    r = _run(["fleet", "perf", "--check", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    for table in ("splitwise", "vidur"):
        t = doc["tables"][table]
        for phase in ("prefill", "decode"):
            assert set(t[phase]) >= {"median_abs_pct_error", "max_abs_pct_error",
                                     "loo_median_abs_pct_error", "loo_max_abs_pct_error"}
        assert isinstance(t["configs"], int) and isinstance(t["excluded"], list)
    assert _no_nulls(doc)


def test_fleet_perf_errors_exit_2():
    r = _run(["fleet", "perf", "--model", "llama2-70b", "--gpu", "L4", "--tp", "1"])
    assert r.exit_code == 2
    assert "does not fit" in r.output
    r = _run(["fleet", "perf", "--model", "llama2-70b", "--gpu", "TPU", "--tp", "1"])
    assert r.exit_code == 2 and "unknown GPU" in r.output
    r = _run(["fleet", "show", "atlantis"])
    assert r.exit_code == 2 and "abilene" in r.output
