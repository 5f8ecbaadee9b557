"""Backbone topologies: Internet Topology Zoo GML/GraphML and SNDlib native files.

Known traps, each handled here and tested on the real file:
- Zoo GML files that repeat an edge without `multigraph 1` (nx.read_gml rejects them): we re-read
  as a multigraph and collapse parallel edges (`Topology.duplicate_edges` counts them).
- Duplicate node labels (Uninett2010: "UiO" twice): nodes are read by id; a repeated label gets
  a ` #<id>` suffix so every region name stays unique.
- SNDlib nobel-eu gives coordinates as degrees.minutes (13.21 = 13 deg 21 min): converted with
  d + (x - d) * 100 / 60 when the file is known to use that convention (`DEGREES_MINUTES`).
- Co-sited nodes (Hurricane Electric "New York 1/2/3") give 0-km links: every link length is
  floored at `min_link_km` (default 10 km, about one metro fibre span).
- Zoo nodes without coordinates (Chinanet's "International Link N" stubs, Geant2012 UA/MD/BY)
  cannot be placed: they are dropped with their links and listed in `Topology.dropped_nodes`.

Latency: one-way d_ij = min over paths of sum(link km / FIBRE_KM_PER_MS + per_hop_ms), i.e.
great-circle link lengths at 200 km per ms plus a per-hop cost, along the shortest path under that
combined weight (networkx Dijkstra), so the matrix is a metric.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from torta.errors import InputError, UnknownNameError
from torta.fleet.paths import TOPOLOGY_DIR

FIBRE_KM_PER_MS = 200.0  # light in fibre ~ 2/3 c = 200,000 km/s (../shared/topologies/README.md)
DEFAULT_PER_HOP_MS = 0.5  # router/switching + non-geodesic fibre slack per hop (assumption)
DEFAULT_MIN_LINK_KM = 10.0
EARTH_RADIUS_KM = 6371.0088  # IUGG mean Earth radius
DEGREES_MINUTES = {"nobel-eu.txt"}  # SNDlib files whose coordinates are degrees.minutes


@dataclass(frozen=True)
class Node:
    name: str
    lat: float
    lon: float
    country: str = ""


@dataclass(frozen=True)
class Topology:
    name: str
    path: str
    nodes: tuple[Node, ...]
    edges: tuple[tuple[int, int, float], ...]  # (i, j, km) with i < j, km already floored
    demands: dict[tuple[str, str], float] = field(default_factory=dict, compare=False)
    dropped_nodes: tuple[str, ...] = ()
    duplicate_edges: int = 0
    zero_km_links: int = 0  # links whose great-circle length was below min_link_km

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def index(self, name: str) -> int:
        names = self.names
        if name not in names:
            raise UnknownNameError(f"node of topology {self.name}", name, names)
        return names.index(name)

    def graph(self) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(range(len(self.nodes)))
        for i, j, km in self.edges:
            g.add_edge(i, j, km=km)
        return g


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def degrees_minutes_to_decimal(x: float) -> float:
    """13.21 (13 deg 21 min) -> 13.35. Negative values keep their sign."""
    sign = -1.0 if x < 0 else 1.0
    x = abs(x)
    d = math.floor(x)
    minutes = round((x - d) * 100, 6)
    if minutes >= 60:
        raise ValueError(f"{x}: minutes part {minutes} >= 60 is not degrees.minutes")
    return sign * (d + minutes / 60.0)


def _finish(name: str, path: Path, nodes: list[Node], raw_edges: list[tuple[int, int]],
            min_link_km: float, demands=None, dropped=()) -> Topology:
    seen: set[tuple[int, int]] = set()
    edges, zero, dups = [], 0, 0
    for u, v in raw_edges:
        if u == v:
            continue
        key = (min(u, v), max(u, v))
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        a, b = nodes[key[0]], nodes[key[1]]
        km = great_circle_km(a.lat, a.lon, b.lat, b.lon)
        if km < min_link_km:
            zero += 1
            km = min_link_km
        edges.append((key[0], key[1], km))
    topo = Topology(name, str(path), tuple(nodes), tuple(edges), dict(demands or {}),
                    tuple(dropped), dups, zero)
    g = topo.graph()
    if len(nodes) > 1 and not nx.is_connected(g):
        comps = sorted(nx.connected_components(g), key=len)
        raise InputError(path, "topology is not connected; smallest component: "
                         + ", ".join(nodes[i].name for i in comps[0]))
    return topo


def _unique_names(labels: list[tuple[object, str]]) -> list[str]:
    counts: dict[str, int] = {}
    for _, lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    return [lab if counts[lab] == 1 else f"{lab} #{nid}" for nid, lab in labels]


def read_zoo_graph(path: Path) -> nx.Graph:
    """The raw Zoo graph, read by node id. A GML file that repeats an edge without declaring
    `multigraph 1` (rejected by nx.read_gml) is re-read as a multigraph."""
    path = Path(path)
    if path.suffix == ".graphml":
        return nx.read_graphml(path)
    try:
        return nx.read_gml(path, label="id")
    except nx.NetworkXError as exc:
        if "duplicated" not in str(exc):
            raise InputError(path, f"not a readable GML file: {exc}") from None
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^graph\s*\[", "graph [\n  multigraph 1", text, count=1, flags=re.M)
    return nx.parse_gml(text, label="id")


def read_zoo(path: Path, min_link_km: float = DEFAULT_MIN_LINK_KM) -> Topology:
    """Topology Zoo .gml or .graphml (read by node id; duplicate labels made unique)."""
    path = Path(path)
    g = read_zoo_graph(path)
    ids = list(g.nodes)
    placed, dropped = [], []
    for nid in ids:
        a = g.nodes[nid]
        lab = str(a.get("label", nid))
        if a.get("Latitude") is None or a.get("Longitude") is None:
            dropped.append(lab)
        else:
            placed.append(nid)
    if not placed:
        raise InputError(path, "no node has Latitude/Longitude: latency cannot be computed")
    names = _unique_names([(nid, str(g.nodes[nid].get("label", nid))) for nid in placed])
    nodes = [Node(nm, float(g.nodes[nid]["Latitude"]), float(g.nodes[nid]["Longitude"]),
                  str(g.nodes[nid].get("Country", ""))) for nm, nid in zip(names, placed)]
    pos = {nid: i for i, nid in enumerate(placed)}
    raw = [(pos[u], pos[v]) for u, v in g.edges() if u in pos and v in pos]
    # a multigraph lists repeated edges separately: _finish collapses and counts them
    return _finish(path.stem, path, nodes, raw, min_link_km, dropped=dropped)


def _section(txt: str, name: str, path: Path) -> list[str]:
    m = re.search(r"^" + name + r"\s*\(\s*\n(.*?)^\)", txt, re.S | re.M)
    if not m:
        raise InputError(path, f"SNDlib section {name} not found")
    return [ln.strip() for ln in m.group(1).splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def read_sndlib(path: Path, min_link_km: float = DEFAULT_MIN_LINK_KM,
                degrees_minutes: bool | None = None) -> Topology:
    """SNDlib native format (NODES / LINKS / DEMANDS). janos-us style two-way links collapse."""
    path = Path(path)
    txt = path.read_text(encoding="latin-1")
    dm = path.name in DEGREES_MINUTES if degrees_minutes is None else degrees_minutes
    nodes, index = [], {}
    for ln in _section(txt, "NODES", path):
        m = re.match(r"(\S+)\s*\(\s*(\S+)\s+(\S+)\s*\)", ln)
        if not m:
            raise InputError(path, f"bad node line {ln!r}", field="NODES")
        nid, lon, lat = m.group(1), float(m.group(2)), float(m.group(3))
        if dm:
            lon, lat = degrees_minutes_to_decimal(lon), degrees_minutes_to_decimal(lat)
        index[nid] = len(nodes)
        nodes.append(Node(nid, lat, lon))
    raw = []
    for ln in _section(txt, "LINKS", path):
        m = re.match(r"(\S+)\s*\(\s*(\S+)\s+(\S+)\s*\)", ln)
        if not m or m.group(2) not in index or m.group(3) not in index:
            raise InputError(path, f"bad link line {ln!r}", field="LINKS")
        raw.append((index[m.group(2)], index[m.group(3)]))
    demands: dict[tuple[str, str], float] = {}
    if re.search(r"^DEMANDS\s*\(", txt, re.M):
        for ln in _section(txt, "DEMANDS", path):
            m = re.match(r"(\S+)\s*\(\s*(\S+)\s+(\S+)\s*\)\s+\S+\s+(\S+)", ln)
            if not m:
                raise InputError(path, f"bad demand line {ln!r}", field="DEMANDS")
            key = (m.group(2), m.group(3))
            demands[key] = demands.get(key, 0.0) + float(m.group(4))
    # two-way listings (janos-us: every link in both directions) collapse and count as duplicates
    return _finish(path.stem, path, nodes, raw, min_link_km, demands=demands)


def available_topologies() -> list[str]:
    return sorted(str(p.relative_to(TOPOLOGY_DIR)) for p in TOPOLOGY_DIR.rglob("*")
                  if p.suffix in {".gml", ".graphml", ".txt"})


def load_topology(ref: str | Path, min_link_km: float = DEFAULT_MIN_LINK_KM) -> Topology:
    """`ref`: a shipped name like "sndlib/abilene.txt" / "zoo/Chinanet.gml", or a file path."""
    p = Path(ref)
    if not p.is_absolute() and (TOPOLOGY_DIR / p).exists():
        p = TOPOLOGY_DIR / p
    if not p.exists():
        raise UnknownNameError("topology", str(ref), available_topologies())
    if p.suffix in {".gml", ".graphml"}:
        return read_zoo(p, min_link_km)
    return read_sndlib(p, min_link_km)


def latency_matrix(topo: Topology, per_hop_ms: float = DEFAULT_PER_HOP_MS,
                   subset: list[int] | None = None) -> np.ndarray:
    """One-way latency (ms): shortest path of (link km / 200 km per ms + per-hop ms)."""
    g = topo.graph()
    for _, _, data in g.edges(data=True):
        data["ms"] = data["km"] / FIBRE_KM_PER_MS + per_hop_ms
    n = len(topo.nodes)
    lat = np.zeros((n, n))
    for src, dist in nx.all_pairs_dijkstra_path_length(g, weight="ms"):
        for dst, ms in dist.items():
            lat[src, dst] = ms
    lat = np.minimum(lat, lat.T)  # guard against float asymmetry of the two directions
    np.fill_diagonal(lat, 0.0)
    if subset is not None:
        lat = lat[np.ix_(subset, subset)]
    return lat
