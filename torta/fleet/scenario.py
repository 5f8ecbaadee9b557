"""Scenarios: a TOML file in `scenarios/` resolved into a `World`.

Schema (every key is checked; unknown or mistyped keys are an `InputError` naming file and key):

    name = "abilene"                       # optional, defaults to the file stem
    description = "..."                    # optional
    [topology]
    file = "sndlib/abilene.txt"            # shipped (torta/data/topologies/...) or a path
    nodes = ["NYCMng", ...]                # optional: keep only these nodes as regions
    per_hop_ms = 0.5                       # optional
    min_link_km = 10.0                     # optional floor for co-sited nodes
    [time]
    slot_s = 900                           # macro-layer slot length
    start = "2023-07-10T00:00:00Z"         # where t=0 falls in the 2023 price year (UTC)
    window_hours = 24                      # optional: default replay window from t=0
    [energy]
    pue = 1.2                              # optional
    price_cap_usd_per_mwh = 1000.0         # optional
    clip_negative_prices = true            # optional
    transfer_usd_per_gb = 0.02             # inter-region egress price
    markets = { NODE = "MARKET" }          # optional overrides of the nearest-market mapping
    carbon_scaling = "country"             # optional: "country" (default) or "none", see below
    [origins]
    weights = "demand" | "uniform" | { NODE = weight, ... }
    [models]
    names = ["llama2-70b", "llama2-13b", "llama2-7b"]
    [[servers]]                            # one block per group of identical servers
    node = "NYCMng"
    gpu = "H100"
    tp = 8
    count = 2
    models = ["llama2-70b", "llama2-13b"]  # models this server may load
    initial_model = "llama2-70b"

Ranges (checked; an `InputError` names file and key): `pue` finite >= 1; `price_cap_usd_per_mwh` and
`transfer_usd_per_gb` finite >= 0; `min_link_km` finite > 0; `per_hop_ms` finite >= 0; `slot_s` in
[1, 86400] s; origin weights finite >= 0; node names in `topology.nodes` and model names in
`models.names` unique; at most 100,000 servers in all (`torta.limits`).

Carbon: each region takes the hourly shape of its nearest zone with hourly data; with
`carbon_scaling = "country"` a region in another country than that zone (known from the Zoo
`Country` attribute or a GEANT-style `xx1.xx` name) is rescaled to its country's average from
Green Algorithms (e.g. Stockholm on the DE-LU shape x 5.7/308).
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path

import numpy as np
import polars as pl

from torta import limits
from torta.errors import InputError, UnknownNameError
from torta.fleet import catalog, prices
from torta.fleet.model import PowerSpec, Region, ServerSpec, World
from torta.fleet.paths import SCENARIO_DIR
from torta.fleet.perf import FittedPerfModel, ModelDoesNotFitError, default_perf_model, replica
from torta.fleet.topology import (DEFAULT_MIN_LINK_KM, DEFAULT_PER_HOP_MS, latency_matrix,
                                  load_topology)

YEAR_START = dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)
TYPICAL_BATCH = 64  # the largest batch measured by Splitwise: the fits are validated up to it

_KEYS: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    # section -> key -> (type, required)
    "": {"name": (str, False), "description": (str, False), "topology": (dict, True),
         "time": (dict, True), "energy": (dict, True), "origins": (dict, True),
         "models": (dict, True), "servers": (list, True)},
    "topology": {"file": (str, True), "nodes": (list, False), "per_hop_ms": ((int, float), False),
                 "min_link_km": ((int, float), False)},
    "time": {"slot_s": ((int, float), True), "start": (str, True), "window_hours": (int, False)},
    "energy": {"pue": ((int, float), False), "price_cap_usd_per_mwh": ((int, float), False),
               "clip_negative_prices": (bool, False), "transfer_usd_per_gb": ((int, float), True),
               "markets": (dict, False), "carbon_scaling": (str, False)},
    "origins": {"weights": ((str, dict), True)},
    "models": {"names": (list, True)},
    "servers": {"node": (str, True), "gpu": (str, True), "tp": (int, True), "count": (int, True),
                "models": (list, True), "initial_model": (str, True)},
}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false",
               dict: "a table", list: "an array"}


def _check(table: dict, section: str, path: Path, where: str) -> None:
    spec = _KEYS[section]
    for key in table:
        if key not in spec:
            raise InputError(path, f"unknown key {key!r}; allowed: {', '.join(sorted(spec))}",
                             field=f"{where}{key}")
    for key, (typ, required) in spec.items():
        if key not in table:
            if required:
                raise InputError(path, f"missing required key {key!r}", field=f"{where}{key}")
            continue
        val = table[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        if isinstance(val, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(val, types)
        if not ok:
            want = " or ".join(_TYPE_NAMES[t] for t in types)
            raise InputError(path, f"expected {want}, got {val!r}", field=f"{where}{key}")


def _number(path: Path, table: dict, key: str, default: float, where: str, *, lo: float,
            lo_open: bool = False) -> float:
    """table[key] (or `default`) as a float; InputError unless finite and >= lo (> lo if lo_open)."""
    v = float(table.get(key, default))
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo)
    if not ok:
        rel = ">" if lo_open else ">="
        raise InputError(path, f"expected a finite number {rel} {lo:g}, got {table.get(key)!r}", field=f"{where}{key}")
    return v


def _unique(path: Path, names: list, field: str) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise InputError(path, f"{n!r} appears more than once; names must be unique", field=field)
        seen.add(n)


def list_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def scenario_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.exists():
        return p
    cand = SCENARIO_DIR / f"{name_or_path}.toml"
    if cand.exists():
        return cand
    raise UnknownNameError("scenario", str(name_or_path), list_scenarios())


def _hour_of_year(start: str, path: Path) -> int:
    try:
        t = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(path, f"not an ISO timestamp: {start!r}", field="time.start") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    h = int((t - YEAR_START).total_seconds() // 3600)
    if not 0 <= h < prices.HOURS:
        raise InputError(path, f"{start!r} is outside 2023 (the price year)", field="time.start")
    return h


def load_scenario(name_or_path: str | Path, perf: FittedPerfModel | None = None) -> World:
    """Resolve a scenario (shipped name or .toml path) into a `World`."""
    path = scenario_path(name_or_path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"invalid TOML: {exc}") from None
    _check(doc, "", path, "")
    for sec in ("topology", "time", "energy", "origins", "models"):
        _check(doc[sec], sec, path, f"{sec}.")
    for i, srv in enumerate(doc["servers"]):
        if not isinstance(srv, dict):
            raise InputError(path, "each [[servers]] entry must be a table", field=f"servers[{i}]")
        _check(srv, "servers", path, f"servers[{i}].")

    topo_sec = doc["topology"]
    min_link_km = _number(path, topo_sec, "min_link_km", DEFAULT_MIN_LINK_KM, "topology.", lo=0.0, lo_open=True)
    per_hop_ms = _number(path, topo_sec, "per_hop_ms", DEFAULT_PER_HOP_MS, "topology.", lo=0.0)
    en = doc["energy"]
    pue = _number(path, en, "pue", 1.2, "energy.", lo=1.0)
    cap = _number(path, en, "price_cap_usd_per_mwh", prices.DEFAULT_CAP_USD_PER_MWH, "energy.", lo=0.0)
    transfer_usd_per_gb = _number(path, en, "transfer_usd_per_gb", 0.0, "energy.", lo=0.0)
    slot_s = float(doc["time"]["slot_s"])
    if not (math.isfinite(slot_s) and limits.MIN_SLOT_S <= slot_s <= limits.MAX_SLOT_S):
        raise InputError(path, f"slot_s must be a finite number of seconds in [{limits.MIN_SLOT_S:g}, "
                               f"{limits.MAX_SLOT_S:g}], got {doc['time']['slot_s']}", field="time.slot_s")
    if "nodes" in topo_sec:
        _unique(path, topo_sec["nodes"], "topology.nodes")
    _unique(path, doc["models"]["names"], "models.names")
    total = 0
    for i, srv in enumerate(doc["servers"]):
        total += max(0, srv["count"])
        if total > limits.MAX_SERVERS:
            raise InputError(path, f"more than {limits.MAX_SERVERS:,} servers in all (count {srv['count']:,} here)",
                             field=f"servers[{i}].count")
    try:
        topo = load_topology(topo_sec["file"], min_link_km)
    except UnknownNameError as exc:
        raise UnknownNameError(f"topology ({path} [topology.file])", exc.name, exc.valid) from None
    except OSError as exc:
        raise InputError(path, f"cannot read the topology file {topo_sec['file']!r}: {exc.strerror or exc}",
                         field="topology.file") from None
    names = topo.names
    _unique(path, list(names), "topology.file (node names of the topology)")
    if "nodes" in topo_sec:
        subset = []
        for nd in topo_sec["nodes"]:
            if nd not in names:
                raise UnknownNameError(f"node ({path} [topology.nodes]) of {topo.name}", nd, names)
            subset.append(names.index(nd))
    else:
        subset = list(range(len(names)))
    lat_ms = latency_matrix(topo, per_hop_ms, subset)
    region_names = [names[i] for i in subset]
    nodes = [topo.nodes[i] for i in subset]

    model_names = doc["models"]["names"]
    if not model_names:
        raise InputError(path, "at least one model is required", field="models.names")
    for m in model_names:
        if m not in catalog.model_catalog():
            raise UnknownNameError(f"model ({path} [models.names])", m, list(catalog.model_catalog()))

    perf = perf or default_perf_model()
    servers: list[ServerSpec] = []
    for i, srv in enumerate(doc["servers"]):
        where = f"servers[{i}]"
        if srv["node"] not in region_names:
            raise UnknownNameError(f"node ({path} [{where}.node])", srv["node"], region_names)
        if srv["gpu"] not in catalog.gpu_catalog():
            raise UnknownNameError(f"GPU ({path} [{where}.gpu])", srv["gpu"],
                                   list(catalog.gpu_catalog()))
        if srv["tp"] not in (1, 2, 4, 8):
            raise InputError(path, f"tp must be 1, 2, 4 or 8, got {srv['tp']}", field=f"{where}.tp")
        if srv["count"] < 1:
            raise InputError(path, f"count must be >= 1, got {srv['count']}",
                             field=f"{where}.count")
        allowed = tuple(srv["models"])
        if not allowed:
            raise InputError(path, "at least one model", field=f"{where}.models")
        for m in allowed:
            if m not in model_names:
                raise UnknownNameError(f"model ({path} [{where}.models]; must be in models.names)",
                                       m, model_names)
            try:
                replica(m, srv["gpu"], srv["tp"])
            except ModelDoesNotFitError as exc:
                raise InputError(path, str(exc), field=f"{where}.models") from None
        if srv["initial_model"] not in allowed:
            raise UnknownNameError(f"initial_model ({path} [{where}.initial_model])",
                                   srv["initial_model"], list(allowed))
        region = region_names.index(srv["node"])
        for _ in range(srv["count"]):
            servers.append(ServerSpec(len(servers), region, srv["gpu"], srv["tp"], allowed,
                                      srv["initial_model"]))
    if not servers:
        raise InputError(path, "at least one server is required", field="servers")

    # origin weights
    w_spec = doc["origins"]["weights"]
    if w_spec == "uniform":
        weights = np.ones(len(region_names))
    elif w_spec == "demand":
        if not topo.demands:
            raise InputError(path, f"{topo.name} has no demand matrix; use 'uniform' or a table",
                             field="origins.weights")
        weights = np.array([sum(v for (s, _), v in topo.demands.items() if s == r)
                            for r in region_names], dtype=float)
    elif isinstance(w_spec, dict):
        weights = np.zeros(len(region_names))
        for nd, w in w_spec.items():
            if nd not in region_names:
                raise UnknownNameError(f"node ({path} [origins.weights])", nd, region_names)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 0):
                raise InputError(path, f"weight must be a finite number >= 0, got {w!r}",
                                 field=f"origins.weights.{nd}")
            weights[region_names.index(nd)] = float(w)
    else:
        raise InputError(path, f"expected 'demand', 'uniform' or a table, got {w_spec!r}",
                         field="origins.weights")
    if not np.isfinite(weights).all():  # a topology demand matrix with NaN or infinite entries
        bad = region_names[int(np.argmin(np.isfinite(weights)))]
        raise InputError(path, f"origin weight of {bad!r} from the topology's demands is not finite",
                         field="origins.weights")
    if weights.sum() <= 0:
        raise InputError(path, "origin weights sum to zero", field="origins.weights")
    weights = weights / weights.sum()

    # energy
    clip = bool(en.get("clip_negative_prices", True))
    overrides = en.get("markets", {})
    for nd, mk in overrides.items():
        if nd not in region_names:
            raise UnknownNameError(f"node ({path} [energy.markets])", nd, region_names)
        if mk not in prices.available_price_markets():
            raise UnknownNameError(f"market ({path} [energy.markets.{nd}])", str(mk),
                                   prices.available_price_markets())
    scaling = en.get("carbon_scaling", "country")
    if scaling not in ("country", "none"):
        raise InputError(path, f"expected 'country' or 'none', got {scaling!r}",
                         field="energy.carbon_scaling")
    has_dc = {s.region for s in servers}
    regions, price_rows, carbon_rows = [], [], []
    for i, (nm, nd) in enumerate(zip(region_names, nodes)):
        market = overrides.get(nm) or prices.nearest_market(nd.lat, nd.lon, "price")[0]
        zone = market if market in prices.available_carbon_zones() else \
            prices.nearest_market(nd.lat, nd.lon, "carbon")[0]
        regions.append(Region(nm, nd.lat, nd.lon, i in has_dc, market, pue, float(weights[i])))
        price_rows.append(prices.price_series(market, cap, clip))
        loc = prices.country_code(nm, nd.country) if scaling == "country" else None
        carbon_rows.append(prices.regional_carbon_series(zone, loc)[0])

    window_hours = int(doc["time"].get("window_hours", 24))
    if window_hours < 1:
        raise InputError(path, f"window_hours must be >= 1, got {window_hours}",
                         field="time.window_hours")
    gpus = sorted({s.gpu for s in servers})
    power = {g: PowerSpec(catalog.gpu(g).idle_w, catalog.gpu(g).prefill_w, catalog.gpu(g).decode_w)
             for g in gpus}
    return World(
        name=str(doc.get("name", path.stem)),
        regions=tuple(regions),
        servers=tuple(servers),
        latency_ms=lat_ms,
        price_usd_per_mwh=np.vstack(price_rows),
        carbon_g_per_kwh=np.vstack(carbon_rows),
        power=power,
        gpu_usd_per_hour={g: catalog.gpu(g).usd_per_gpu_hour for g in gpus},
        transfer_usd_per_gb=transfer_usd_per_gb,
        models=tuple(model_names),
        slot_s=slot_s,
        start_hour_of_year=_hour_of_year(doc["time"]["start"], path),
        perf=perf,
        window_hours=window_hours,
    )


# ---------------------------------------------------------------- capacity

def server_requests_per_s(perf, model: str, gpu: str, tp: int, mean_prompt_tokens: float,
                          mean_output_tokens: float, batch: int | None = None) -> float:
    """Steady-state request throughput of one server for one model.

    Continuous batching at a typical batch B = min(TYPICAL_BATCH, max_batch at full context
    P + O): each request costs its own prefill (P tokens, attention over P^2) plus O decode
    iterations shared by the B sequences in the batch, at the mean context P + O/2:

        seconds per request = (prefill_ms(P, P^2) + O * decode_ms_per_iter(B, P + O/2) / B) / 1000
    """
    p, o = float(mean_prompt_tokens), float(mean_output_tokens)
    if perf.kv_capacity_tokens(model, gpu, tp) <= 0:
        return 0.0
    b = batch or max(1, min(TYPICAL_BATCH, perf.max_batch(model, gpu, tp, int(p + o))))
    ms = perf.prefill_ms(model, gpu, tp, int(round(p)), p * p) + \
        o * perf.decode_ms_per_iter(model, gpu, tp, b, p + o / 2.0) / b
    return 1000.0 / ms


def capacity_requests_per_s(world: World, model: str, mean_prompt_tokens: float,
                            mean_output_tokens: float, servers: str = "allowed") -> np.ndarray:
    """Per-region steady-state throughput (requests/s) for `model` (see `server_requests_per_s`).

    `servers="allowed"` counts every server that may load the model (the fleet fully switched to
    it); `"initial"` counts only servers whose initial model it is. Summed over servers.
    """
    if model not in world.models:
        raise UnknownNameError("model", model, list(world.models))
    if servers not in ("allowed", "initial"):
        raise ValueError(f"servers must be 'allowed' or 'initial', got {servers!r}")
    perf = world.perf or default_perf_model()
    out = np.zeros(world.n_regions)
    cache: dict[tuple[str, int], float] = {}
    for s in world.servers:
        if (servers == "allowed" and model not in s.models) or \
                (servers == "initial" and s.initial_model != model):
            continue
        key = (s.gpu, s.tp)
        if key not in cache:
            cache[key] = server_requests_per_s(perf, model, s.gpu, s.tp, mean_prompt_tokens,
                                               mean_output_tokens)
        out[s.region] += cache[key]
    return out


# ---------------------------------------------------------------- tables for assets

def fleet_tables(world: World) -> dict[str, pl.DataFrame]:
    """Tidy polars frames: regions, servers, latency (all ordered pairs), prices (hourly)."""
    n = world.n_regions
    counts = np.bincount([s.region for s in world.servers], minlength=n)
    gpus = np.bincount([s.region for s in world.servers],
                       weights=[s.tp for s in world.servers], minlength=n)
    regions = pl.DataFrame({
        "scenario": [world.name] * n,
        "region": list(range(n)),
        "name": [r.name for r in world.regions],
        "lat": [r.lat for r in world.regions],
        "lon": [r.lon for r in world.regions],
        "hosts_datacenter": [r.hosts_datacenter for r in world.regions],
        "market": [r.market for r in world.regions],
        "pue": [r.pue for r in world.regions],
        "origin_weight": [r.origin_weight for r in world.regions],
        "servers": counts.astype(np.int64),
        "gpus": gpus.astype(np.int64),
        "price_mean_usd_per_mwh": world.price_usd_per_mwh.mean(axis=1),
        "carbon_mean_g_per_kwh": world.carbon_g_per_kwh.mean(axis=1),
    })
    servers = pl.DataFrame({
        "scenario": [world.name] * len(world.servers),
        "server_id": [s.server_id for s in world.servers],
        "region": [s.region for s in world.servers],
        "region_name": [world.regions[s.region].name for s in world.servers],
        "gpu": [s.gpu for s in world.servers],
        "tp": [s.tp for s in world.servers],
        "models": [",".join(s.models) for s in world.servers],
        "initial_model": [s.initial_model for s in world.servers],
        "usd_per_hour": [world.gpu_usd_per_hour[s.gpu] * s.tp for s in world.servers],
    })
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    latency = pl.DataFrame({
        "scenario": [world.name] * (n * n),
        "src": ii.ravel(), "dst": jj.ravel(),
        "src_name": [world.regions[i].name for i in ii.ravel()],
        "dst_name": [world.regions[j].name for j in jj.ravel()],
        "latency_ms": world.latency_ms.ravel(),
    })
    hours = world.price_usd_per_mwh.shape[1]
    price = pl.DataFrame({
        "scenario": [world.name] * (n * hours),
        "region": np.repeat(np.arange(n), hours),
        "hour_utc": np.tile(np.arange(hours), n),
        "price_usd_per_mwh": world.price_usd_per_mwh.ravel(),
        "carbon_g_per_kwh": world.carbon_g_per_kwh.ravel(),
    })
    return {"regions": regions, "servers": servers, "latency": latency, "prices": price}


def topology_links(name_or_path: str | Path) -> pl.DataFrame:
    """The scenario's physical links between its regions (src_name, dst_name, km), for maps."""
    path = scenario_path(name_or_path)
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    topo_sec = doc.get("topology", {})
    topo = load_topology(topo_sec["file"], float(topo_sec.get("min_link_km", DEFAULT_MIN_LINK_KM)))
    keep = set(topo_sec.get("nodes", topo.names))
    rows = [(topo.nodes[i].name, topo.nodes[j].name, float(km)) for i, j, km in topo.edges
            if topo.nodes[i].name in keep and topo.nodes[j].name in keep]
    return pl.DataFrame(rows, schema={"src_name": pl.String, "dst_name": pl.String, "km": pl.Float64},
                        orient="row")
