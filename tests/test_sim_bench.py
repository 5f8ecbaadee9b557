"""`torta bench replay` output contract (tiny sizes; speed itself is never asserted in tests)."""

from __future__ import annotations

import json

from click.testing import CliRunner


def test_bench_replay_json_contract():
    from torta.commands.bench import bench_replay

    r = CliRunner().invoke(bench_replay, ["--requests", "3000", "--repeats", "1", "--case", "normal",
                                          "--case", "large-fleet", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [c["case"] for c in doc["cases"]] == ["normal", "large-fleet"]
    for c in doc["cases"]:
        assert c["requests"] > 2500 and c["requests_per_s"] > 0 and c["peak_rss_mib"] > 0
        assert c["completed"] + c["dropped"] == c["requests"]
        assert 0 < c["mean_utilisation"] <= c["mean_utilisation_capable"]
    assert doc["cases"][1]["servers"] == 5000
    normal, large = doc["cases"]
    assert normal["mean_utilisation"] < normal["mean_utilisation_capable"]  # abilene: 37 of 45 cannot serve it
    assert large["mean_utilisation"] == large["mean_utilisation_capable"]  # every cloned server can


def test_big_fleet_clones_capable_servers():
    from torta.fleet.scenario import load_scenario
    from torta.sim.bench import big_fleet

    w = big_fleet(load_scenario("abilene"), 100)
    assert len(w.servers) == 100
    assert [s.server_id for s in w.servers] == list(range(100))
    assert all(w.models[0] in s.models for s in w.servers)
    assert len({s.region for s in w.servers}) == len(w.dc_regions())


def test_goals_are_the_issue_targets_and_judge_the_median():
    from torta.sim.bench import goal

    assert goal("normal", 1_000_000, 100_000.0, 400.0) == dict(target_requests_per_s=100_000, meets_target=True)
    assert goal("overloaded", 1_000_000, 99_999.0, 400.0)["meets_target"] is False
    assert goal("large-fleet", 1_000_000, 49_000.0, 800.0) == dict(target_requests_per_s=50_000, meets_target=False)
    assert goal("large-fleet", 3_000, 49_000.0, 800.0) == {}  # the goals are stated for 1 M requests
    assert goal("memory-10m", 10_000_000, 1.0, 2049.0) == dict(target_peak_rss_mib=2048, meets_target=False)


def test_bench_rows_carry_the_machine_reference_times():
    from torta.commands.bench import bench_replay

    r = CliRunner().invoke(bench_replay, ["--requests", "2000", "--repeats", "1", "--case", "normal", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["cases"][0]
    assert row["reference_s"] > 0 and row["reference_mem_s"] > 0
    assert "target_requests_per_s" not in row  # the goals are stated for 1 M requests only


def test_cli_cases_are_the_bench_cases():
    from torta.commands.bench import SIM_CASES
    from torta.sim.bench import CASES, DEFAULT_CASES

    assert SIM_CASES == tuple(CASES)
    assert set(DEFAULT_CASES) < set(CASES)


def test_prefix_cache_case_alternates_with_the_cache_off():
    from torta.commands.bench import bench_replay

    r = CliRunner().invoke(bench_replay, ["--requests", "3000", "--repeats", "2", "--case", "prefix-cache", "--json"])
    assert r.exit_code == 0, r.output
    on, off = json.loads(r.stdout)["cases"]
    assert (on["case"], off["case"]) == ("prefix-cache", "prefix-cache-off")
    assert on["prefix_cache"] is True and off["prefix_cache"] is False
    assert on["cache_hit_rate"] > 0 and off["cache_hit_rate"] == 0
    assert on["requests"] == off["requests"] > 2000
    assert len(on["runs_requests_per_s"]) == len(off["runs_requests_per_s"]) == 2
    ratios = sorted(a / b for a, b in zip(on["runs_requests_per_s"], off["runs_requests_per_s"]))
    assert on["speed_ratio_vs_off"] == sum(ratios) / 2  # the median of the two pairs' ratios
    assert "speed_ratio_vs_off" not in off
