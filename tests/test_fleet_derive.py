"""The offline derivation scripts and loader paths the shipped scenarios do not exercise,
run on small synthetic inputs written to tmp_path (never on ../shared)."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings, strategies as st

from torta.fleet.fit import nnls_small
from torta.fleet.paths import TOPOLOGY_DIR
from torta.fleet.price_data import derive
from torta.fleet.topology import load_topology, read_sndlib, read_zoo
from torta.fleet.vidur_summary import LAYER_OPS, summarize


def test_vidur_summary_sums_layer_ops_times_layers(tmp_path):
    cols = {f"time_stats.{op}.median": [1.0, 3.0] for op in LAYER_OPS}  # 8 ops
    cols["time_stats.add.median"] = [0.5, 0.5]
    cols["time_stats.emb.median"] = [2.0, 2.0]
    cols["num_tensor_parallel_workers"] = [1, 1]
    cols["num_tokens"] = [16, 16]  # two repeats of one configuration -> median
    pl.DataFrame(cols).write_csv(tmp_path / "a100_llama2-7b_mlp.csv")
    out = summarize(tmp_path)
    assert out.height == 1
    # per layer: median(1, 3) * 8 ops + 2 * 0.5 = 17; x 32 layers + emb 2
    assert out["linear_ms"][0] == pytest.approx(32 * 17 + 2)
    assert out["gpu"][0] == "A100" and out["model"][0] == "llama2-7b"


def test_price_derivation_indexes_by_utc_hour(tmp_path):
    src = tmp_path / "green-dcc"
    (src / "electricity_prices_hourly_2023").mkdir(parents=True)
    (src / "carbon_intensity_hourly_2023").mkdir(parents=True)
    hours = pl.datetime_range(pl.datetime(2023, 1, 1), pl.datetime(2023, 12, 31, 23), "1h",
                              eager=True)
    utc = hours.dt.strftime("%Y-%m-%d %H:%M:%S+00:00")
    pl.DataFrame({"Datetime (UTC)": utc, "Datetime (Local)": utc,
                  "Price (USD/MWh)": np.arange(8760, dtype=float)}).reverse().write_csv(
        src / "electricity_prices_hourly_2023" / "XX_electricity_prices_2023.csv")
    pl.DataFrame({"Datetime (UTC)": hours.dt.strftime("%Y-%m-%d %H:%M:%S"),
                  "Carbon Intensity gCO₂eq/kWh (direct)": np.full(8760, 100.0)}).write_csv(
        src / "carbon_intensity_hourly_2023" / "XX_2023_hourly.csv")
    dst = tmp_path / "out"
    dst.mkdir()
    derive(src, dst)
    p = pl.read_parquet(dst / "prices_2023_hourly.parquet")
    assert p["hour_utc"].to_list() == list(range(8760))
    assert p["XX"].to_list() == [float(h) for h in range(8760)]  # sorted back by UTC hour
    assert pl.read_parquet(dst / "carbon_2023_hourly.parquet")["XX"].mean() == 100.0


def test_graphml_copy_reads_like_the_gml(tmp_path):
    gml = TOPOLOGY_DIR / "zoo" / "Abilene.gml"
    g = nx.read_gml(gml, label="id")
    out = tmp_path / "Abilene.graphml"
    nx.write_graphml(nx.MultiGraph(g), out)
    a, b = read_zoo(gml), read_zoo(out)
    assert a.names == b.names
    assert [e[2] for e in a.edges] == pytest.approx([e[2] for e in b.edges])


def test_sndlib_links_listed_both_ways_collapse(tmp_path):
    text = """NODES (
  A ( 0.0 0.0 )
  B ( 1.0 0.0 )
  C ( 2.0 0.0 )
)
LINKS (
  L0 ( A B ) 0.00 0.00 0.00 0.00 ( 64.00 854.00 )
  L1 ( B A ) 0.00 0.00 0.00 0.00 ( 64.00 854.00 )
  L2 ( B C ) 0.00 0.00 0.00 0.00 ( 64.00 854.00 )
)
DEMANDS (
  D0 ( A C ) 1 240.00 UNLIMITED
  D1 ( C A ) 1 60.00 UNLIMITED
)
"""
    p = tmp_path / "tiny.txt"
    p.write_text(text)
    t = read_sndlib(p)
    assert len(t.edges) == 2 and t.duplicate_edges == 1
    assert t.demands == {("A", "C"): 240.0, ("C", "A"): 60.0}
    assert load_topology(p).names == ["A", "B", "C"]


def test_disconnected_topology_is_an_error(tmp_path):
    p = tmp_path / "split.txt"
    p.write_text("NODES (\n  A ( 0 0 )\n  B ( 1 0 )\n  C ( 5 5 )\n)\nLINKS (\n"
                 "  L0 ( A B ) 0 0 0 0 ( 1 1 )\n)\n")
    with pytest.raises(ValueError, match="not connected"):
        read_sndlib(p)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 5))
def test_nnls_small_is_optimal(seed, k):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(12, k))
    b = rng.normal(size=12)
    x = nnls_small(a, b)
    assert np.all(x >= 0)
    best = float(np.sum((a @ x - b) ** 2))
    # no feasible point on a coarse grid beats it
    for cand in itertools.product(*[np.linspace(0, 2, 5)] * k):
        assert float(np.sum((a @ np.array(cand) - b) ** 2)) >= best - 1e-9
