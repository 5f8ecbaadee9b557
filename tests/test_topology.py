"""Topology loaders and the latency matrix, with each known data trap tested on the real file."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, strategies as st

from torta.errors import InputError, UnknownNameError
from torta.fleet.paths import TOPOLOGY_DIR
from torta.fleet.topology import (FIBRE_KM_PER_MS, degrees_minutes_to_decimal, great_circle_km,
                                  latency_matrix, load_topology, read_zoo, read_zoo_graph)


def test_zoo_gml_with_duplicated_edges_is_read_and_collapsed():
    path = TOPOLOGY_DIR / "zoo" / "Belnet.gml"  # repeats 1-2, 3-4, 11-12, 18-19 and 16-17 (x4)
    with pytest.raises(nx.NetworkXError, match="duplicated"):
        nx.read_gml(path, label="id")
    g = read_zoo_graph(path)
    assert g.number_of_edges() == 33
    assert nx.Graph(g).number_of_edges() == 26
    # Belnet has no coordinates at all: a clear error, not an empty topology
    with pytest.raises(InputError, match="Latitude"):
        read_zoo(path)


def test_uninett2010_duplicate_labels_become_unique_names():
    path = TOPOLOGY_DIR / "zoo" / "Uninett2010.gml"
    with pytest.raises(nx.NetworkXError):
        nx.read_gml(path)  # default label='label' rejects the repeated "UiO"
    topo = load_topology("zoo/Uninett2010.gml")
    assert len(topo.nodes) == 74
    assert len(set(topo.names)) == 74
    assert {"UiO #0", "UiO #1"} <= set(topo.names)  # the two "UiO" nodes, by Zoo id
    assert "UiO St Olavsplass 5" in topo.names  # unique labels stay as they are


def test_nobel_eu_degrees_minutes_are_converted():
    raw = (TOPOLOGY_DIR / "sndlib" / "nobel-eu.txt").read_text(encoding="latin-1")
    assert "Berlin ( 13.21 52.31 )" in raw
    topo = load_topology("sndlib/nobel-eu.txt")
    berlin = topo.nodes[topo.index("Berlin")]
    # 13 deg 21 min E, 52 deg 31 min N (the real Berlin is 13.405 E, 52.52 N)
    assert berlin.lon == pytest.approx(13 + 21 / 60)
    assert berlin.lat == pytest.approx(52 + 31 / 60)
    # read as decimal degrees instead, Berlin would be ~25 km off the real city
    assert great_circle_km(berlin.lat, berlin.lon, 52.52, 13.405) < 5


def test_degrees_minutes_rejects_minutes_over_59():
    assert degrees_minutes_to_decimal(-9.08) == pytest.approx(-(9 + 8 / 60))
    with pytest.raises(ValueError, match="minutes"):
        degrees_minutes_to_decimal(13.75)


def test_cosited_nodes_get_the_link_floor_not_zero_latency():
    topo = load_topology("zoo/HurricaneElectric.gml")
    assert topo.zero_km_links > 0
    assert min(km for _, _, km in topo.edges) == pytest.approx(10.0)
    lat = latency_matrix(topo, per_hop_ms=0.5)
    i, j = topo.index("New York 1"), topo.index("New York 2")
    a, b = topo.nodes[i], topo.nodes[j]
    assert great_circle_km(a.lat, a.lon, b.lat, b.lon) == 0.0
    assert lat[i, j] > 0
    if topo.graph().has_edge(i, j):
        assert lat[i, j] == pytest.approx(10.0 / FIBRE_KM_PER_MS + 0.5)


def test_zoo_nodes_without_coordinates_are_dropped_and_listed():
    topo = load_topology("zoo/Chinanet.gml")
    assert len(topo.nodes) == 38
    assert sorted(topo.dropped_nodes) == [f"International Link {k}" for k in (1, 2, 3, 4)]


@pytest.mark.parametrize("ref", ["sndlib/abilene.txt", "sndlib/geant.txt", "zoo/Chinanet.gml",
                                 "zoo/HurricaneElectric.gml", "zoo/Geant2012.gml",
                                 "sndlib/nobel-eu.txt"])
def test_latency_matrix_is_a_metric_with_direct_links_exact(ref):
    topo = load_topology(ref)
    lat = latency_matrix(topo, per_hop_ms=0.5)
    n = len(topo.nodes)
    assert lat.shape == (n, n)
    assert np.allclose(lat, lat.T) and np.all(np.diag(lat) == 0)
    off = lat[~np.eye(n, dtype=bool)]
    assert np.all(off > 0)
    # triangle inequality (shortest paths)
    assert np.all(lat[:, None, :] <= lat[:, :, None] + lat[None, :, :] + 1e-9)
    # a direct link is never beaten by more than its own length (1 hop or a shorter detour)
    for i, j, km in topo.edges:
        assert lat[i, j] <= km / FIBRE_KM_PER_MS + 0.5 + 1e-9


def test_abilene_latency_is_great_circle_over_fibre_plus_hops():
    topo = load_topology("sndlib/abilene.txt")
    lat = latency_matrix(topo, per_hop_ms=0.0)
    i, j = topo.index("NYCMng"), topo.index("LOSAng")
    a, b = topo.nodes[i], topo.nodes[j]
    direct = great_circle_km(a.lat, a.lon, b.lat, b.lon) / FIBRE_KM_PER_MS
    assert direct < lat[i, j] < 1.6 * direct  # a path over the backbone, not the crow's line
    assert 20 < lat[i, j] < 30  # NY-LA fibre one-way is ~20-30 ms


def test_sndlib_demands_are_read():
    topo = load_topology("sndlib/abilene.txt")
    assert len(topo.demands) == 132
    assert all(v >= 0 for v in topo.demands.values())


def test_unknown_topology_lists_shipped_ones():
    with pytest.raises(UnknownNameError, match="sndlib/abilene.txt"):
        load_topology("zoo/NoSuchNet.gml")


@given(st.floats(-89, 89), st.floats(-179, 179), st.floats(-89, 89), st.floats(-179, 179))
def test_great_circle_is_symmetric_and_bounded(a, b, c, d):
    x, y = great_circle_km(a, b, c, d), great_circle_km(c, d, a, b)
    assert x == pytest.approx(y, abs=1e-6)
    assert 0 <= x <= math.pi * 6371.0088 + 1e-6
