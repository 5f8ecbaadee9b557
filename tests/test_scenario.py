"""Scenarios: every shipped one loads into a consistent World; bad input gives clear errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from torta.errors import InputError, UnknownNameError
from torta.fleet.paths import SCENARIO_DIR
from torta.fleet.scenario import (capacity_requests_per_s, fleet_tables, list_scenarios,
                                  load_scenario)

SHIPPED = ["abilene", "chinanet", "geant", "hurricane-electric", "single-region"]
MULTI = ["abilene", "chinanet", "geant", "hurricane-electric"]
CONV = (1155.0, 211.0)  # Azure 2023 conv mean prompt / output tokens


def test_list_scenarios_has_the_shipped_ones():
    assert set(SHIPPED) <= set(list_scenarios())


@pytest.mark.parametrize("name", SHIPPED)
def test_world_is_consistent(name):
    w = load_scenario(name)
    r = w.n_regions
    assert w.latency_ms.shape == (r, r)
    assert np.allclose(w.latency_ms, w.latency_ms.T) and np.all(np.diag(w.latency_ms) == 0)
    assert w.price_usd_per_mwh.shape == (r, 8760) and w.carbon_g_per_kwh.shape == (r, 8760)
    assert np.all(w.price_usd_per_mwh >= 0)
    assert sum(x.origin_weight for x in w.regions) == pytest.approx(1.0)
    assert [s.server_id for s in w.servers] == list(range(len(w.servers)))
    for s in w.servers:
        assert w.regions[s.region].hosts_datacenter
        assert s.initial_model in s.models and set(s.models) <= set(w.models)
        assert s.gpu in w.power and s.gpu in w.gpu_usd_per_hour
        assert w.perf.kv_capacity_tokens(s.initial_model, s.gpu, s.tp) > 0
    assert all(r_.market for r_ in w.regions)
    assert 0 <= w.start_hour_of_year < 8760 and w.slot_s > 0 and w.window_hours >= 1


def test_single_region_is_four_h100x8_llama70b():
    w = load_scenario("single-region")
    assert w.n_regions == 1 and len(w.servers) == 4
    assert all((s.gpu, s.tp, s.initial_model) == ("H100", 8, "llama2-70b") for s in w.servers)


def test_shipped_sizes():
    ab = load_scenario("abilene")
    assert ab.n_regions == 12 and len(ab.servers) <= 50
    assert load_scenario("geant").n_regions == 22
    assert load_scenario("chinanet").n_regions >= 38
    he = load_scenario("hurricane-electric")
    lons = [r.lon for r in he.regions]
    assert max(lons) - min(lons) > 200  # US west coast to Tokyo: many time zones
    for name in MULTI:
        w = load_scenario(name)
        assert len({s.gpu for s in w.servers}) >= 3
        assert set(w.models) == {"llama2-70b", "llama2-13b", "llama2-7b"}
        assert any(len(s.models) > 1 for s in w.servers)  # switching is possible


@pytest.mark.parametrize("name", MULTI)
def test_sizing_puts_regional_peaks_above_local_capacity(name):
    """At a 60 % mean load split by origin weight, with a x1.5 diurnal peak (ServeGen m-large
    peak/trough 1.45), some DC region's local peak exceeds its own capacity, while the fleet
    as a whole has room (the claim written in each TOML)."""
    w = load_scenario(name)
    cap = sum(capacity_requests_per_s(w, m, *CONV, servers="initial") for m in w.models)
    total = cap.sum()
    demand = 0.6 * total * np.array([r.origin_weight for r in w.regions])
    dc = np.array([r.hosts_datacenter for r in w.regions])
    assert np.any(1.5 * demand[dc] > cap[dc])
    assert demand.sum() < total


def test_capacity_counts_allowed_servers_and_scales_with_them(tmp_path):
    w = load_scenario("single-region")
    one = capacity_requests_per_s(w, "llama2-70b", *CONV)
    assert one.shape == (1,) and one[0] > 0
    text = (SCENARIO_DIR / "single-region.toml").read_text().replace("count = 4", "count = 8")
    p = tmp_path / "double.toml"
    p.write_text(text)
    assert capacity_requests_per_s(load_scenario(p), "llama2-70b", *CONV)[0] == \
        pytest.approx(2 * one[0])
    # longer outputs cost more time per request
    assert capacity_requests_per_s(w, "llama2-70b", 1155, 800)[0] < one[0]
    ab = load_scenario("abilene")
    c7 = capacity_requests_per_s(ab, "llama2-7b", *CONV)
    no7 = [i for i in range(ab.n_regions)
           if not any("llama2-7b" in s.models for s in ab.servers if s.region == i)]
    assert all(c7[i] == 0 for i in no7)
    with pytest.raises(UnknownNameError):
        capacity_requests_per_s(w, "llama2-7b", *CONV)


def test_fleet_tables_are_tidy():
    w = load_scenario("abilene")
    t = fleet_tables(w)
    assert set(t) == {"regions", "servers", "latency", "prices"}
    assert t["regions"].height == 12 and t["servers"].height == len(w.servers)
    assert t["latency"].height == 144 and t["prices"].height == 12 * 8760
    assert t["servers"]["usd_per_hour"].min() > 0
    for df in t.values():
        assert isinstance(df, pl.DataFrame)
        assert sum(df.null_count().row(0)) == 0


def test_same_input_same_world():
    a, b = load_scenario("geant"), load_scenario("geant")
    assert a.regions == b.regions and a.servers == b.servers
    assert np.array_equal(a.latency_ms, b.latency_ms)
    assert np.array_equal(a.price_usd_per_mwh, b.price_usd_per_mwh)


# ------------------------------------------------------------------ bad input

def _bad(tmp_path, old: str, new: str, base: str = "abilene") -> str:
    text = (SCENARIO_DIR / f"{base}.toml").read_text()
    assert old in text
    p = tmp_path / "bad.toml"
    p.write_text(text.replace(old, new, 1))
    return str(p)


@pytest.mark.parametrize("old,new,exc,needles", [
    ('node = "CHINng"', 'node = "Gotham"', UnknownNameError, ["Gotham", "servers[0].node", "CHINng"]),
    ('gpu = "H100"', 'gpu = "B200"', UnknownNameError, ["B200", "servers[0].gpu", "A100"]),
    ('names = ["llama2-70b", "llama2-13b", "llama2-7b"]', 'names = ["llama2-70b", "gpt-5"]',
     UnknownNameError, ["gpt-5", "models.names", "llama2-13b"]),
    ('file = "sndlib/abilene.txt"', 'file = "sndlib/nowhere.txt"', UnknownNameError,
     ["nowhere", "topology.file", "sndlib/geant.txt"]),
    ('slot_s = 900', 'slot_s = "900"', InputError, ["time.slot_s", "a number"]),
    ('slot_s = 900', 'slot_secs = 900', InputError, ["time.slot_secs", "allowed", "slot_s"]),
    ('slot_s = 900', 'slot_s = -5', InputError, ["time.slot_s", "[1, 86400]"]),
    ('slot_s = 900', 'slot_s = inf', InputError, ["time.slot_s", "finite", "inf"]),
    ('window_hours = 24', 'window_hours = 0', InputError, ["time.window_hours", ">= 1"]),
    ('count = 2', 'count = 0', InputError, ["servers[", ".count", ">= 1"]),
    ('[origins]\nweights = "demand"', '[origins]', InputError, ["origins.weights", "missing"]),
    ('tp = 8\ncount = 1', 'tp = 1\ncount = 1', InputError,
     ["servers[0].models", "does not fit on 1 x H100"]),
    ('initial_model = "llama2-70b"', 'initial_model = "llama2-7b"', UnknownNameError,
     ["servers[0].initial_model", "llama2-13b"]),
    ('start = "2023-07-10T00:00:00Z"', 'start = "2024-07-10T00:00:00Z"', InputError,
     ["time.start", "2023"]),
])
def test_bad_scenarios_name_file_key_and_allowed_values(tmp_path, old, new, exc, needles):
    path = _bad(tmp_path, old, new)
    with pytest.raises(exc) as info:
        load_scenario(path)
    msg = str(info.value)
    for n in needles:
        assert n in msg, msg
    assert "bad.toml" in msg


def test_unknown_scenario_lists_shipped_ones():
    with pytest.raises(UnknownNameError, match="abilene"):
        load_scenario("atlantis")


def test_invalid_toml_names_the_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("name = [unclosed\n")
    with pytest.raises(InputError, match="broken.toml"):
        load_scenario(p)


def test_carbon_scaling_country_vs_none(tmp_path):
    w = load_scenario("geant")
    i = [r.name for r in w.regions].index("se1.se")
    assert w.carbon_g_per_kwh[i].mean() < 20  # Sweden's hydro/nuclear grid, not Germany's
    p = _bad(tmp_path, "pue = 1.2", 'pue = 1.2\ncarbon_scaling = "none"', base="geant")
    w2 = load_scenario(p)
    assert w2.carbon_g_per_kwh[i].mean() > 100  # the raw nearest zone (DE-LU or GB)
    p = _bad(tmp_path, "pue = 1.2", 'pue = 1.2\ncarbon_scaling = "kwh"', base="geant")
    with pytest.raises(InputError, match="energy.carbon_scaling"):
        load_scenario(p)
