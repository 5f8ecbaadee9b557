"""`torta bench replay` output contract (tiny sizes; speed itself is never asserted in tests)."""

from __future__ import annotations

import json

from click.testing import CliRunner


def test_bench_replay_json_contract():
    from torta.sim.bench import bench_replay

    r = CliRunner().invoke(bench_replay, ["--requests", "3000", "--repeats", "1", "--case", "normal",
                                          "--case", "large-fleet", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [c["case"] for c in doc["cases"]] == ["normal", "large-fleet"]
    for c in doc["cases"]:
        assert c["requests"] > 2500 and c["requests_per_s"] > 0 and c["peak_rss_mib"] > 0
        assert c["completed"] + c["dropped"] == c["requests"]
    assert doc["cases"][1]["servers"] == 5000


def test_big_fleet_clones_capable_servers():
    from torta.fleet.scenario import load_scenario
    from torta.sim.bench import big_fleet

    w = big_fleet(load_scenario("abilene"), 100)
    assert len(w.servers) == 100
    assert [s.server_id for s in w.servers] == list(range(100))
    assert all(w.models[0] in s.models for s in w.servers)
    assert len({s.region for s in w.servers}) == len(w.dc_regions())
