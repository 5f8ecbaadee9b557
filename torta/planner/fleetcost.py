"""Per-region facts the planners need, derived once per run from a `World` and the simulator's
`FleetTables` (the same work estimate the simulator's backlog uses, so units agree):

capacity_rps[j]: requests/s region j serves for requests of the workload's mean size, summed over its
servers (each server at its best model among those it may load, weighted by the model mix);
energy_kwh_per_request[j]: decode power x expected work per request (PUE included), averaged over j's
servers; nearest_dc[i]: the lowest-latency region with servers (itself when it has some);
transfer_usd_per_request: bytes of prompt + output text (BYTES_PER_TOKEN, torta.sim.cluster) x the
world's egress price. `topology_edges` recovers the physical links from the latency matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torta.fleet.model import World
from torta.sim.cluster import BYTES_PER_TOKEN, FleetTables

DEFAULT_MEAN_PROMPT_TOKENS = 1000.0  # Splitwise-like magnitude (paper-torta.md §5.2) until data is seen
DEFAULT_MEAN_OUTPUT_TOKENS = 200.0


@dataclass(frozen=True)
class RegionFacts:
    has_servers: np.ndarray  # (R,) bool
    servers: np.ndarray  # (R,) count
    capacity_rps: np.ndarray  # (R,)
    work_s_per_request: np.ndarray  # (R,) mean server-seconds per request in the region
    energy_kwh_per_request: np.ndarray  # (R,)
    nearest_dc: np.ndarray  # (R,) int
    transfer_usd_per_request: float
    server_rps_rm: np.ndarray  # (R, M) mean requests/s of one server of region r running model m (0: none can)
    energy_kwh_rm: np.ndarray  # (R, M) mean energy per request of model m in region r
    nearest_capable_rm: np.ndarray  # (R, M) int: nearest region (by latency from r) able to serve m, -1: none
    latency_s_rm: np.ndarray  # (R, M) mean unloaded latency of a mean request (prefill + decode at batch 1)


def region_facts(world: World, tables: FleetTables, mean_prompt_tokens: float = DEFAULT_MEAN_PROMPT_TOKENS,
                 mean_output_tokens: float = DEFAULT_MEAN_OUTPUT_TOKENS,
                 model_share: np.ndarray | None = None) -> RegionFacts:
    r_n, m_n = tables.n_regions, tables.n_models
    share = np.full(m_n, 1.0 / m_n) if model_share is None else np.asarray(model_share, dtype=float)
    if share.shape != (m_n,) or not share.sum() > 0:
        raise ValueError(f"model_share must have {m_n} non-negative entries with a positive sum")
    share = share / share.sum()
    cap = np.zeros(r_n)
    kwh = np.zeros(r_n)
    work_sum = np.zeros(r_n)
    n = np.zeros(r_n)
    for s in range(tables.n_servers):
        works = np.full(m_n, np.inf)
        for m in range(m_n):
            t = tables.stype[s][m]
            if t >= 0:
                ty = tables.types[t]
                works[m] = mean_prompt_tokens * ty.c_prefill_s + mean_output_tokens * ty.c_decode_s
        ok = np.isfinite(works) & (works > 0)
        if not ok.any():
            continue
        w = share[ok] / share[ok].sum() if share[ok].sum() > 0 else np.full(ok.sum(), 1.0 / ok.sum())
        work = float(np.dot(w, works[ok]))
        r = tables.region[s]
        cap[r] += 1.0 / work
        work_sum[r] += work
        kwh[r] += tables.decode_w[s] * work / 3.6e6
        n[r] += 1
    has = n > 0
    rps_rm = np.zeros((r_n, m_n))
    lat_rm = np.zeros((r_n, m_n))
    kwh_rm = np.zeros((r_n, m_n))
    for r in range(r_n):
        for m in range(m_n):
            ss = tables.capable[r][m]
            if not ss:
                continue
            works = [mean_prompt_tokens * tables.types[tables.stype[s][m]].c_prefill_s
                     + mean_output_tokens * tables.types[tables.stype[s][m]].c_decode_s for s in ss]
            rps_rm[r, m] = float(np.mean([1.0 / w for w in works]))
            kwh_rm[r, m] = float(np.mean([tables.decode_w[s] * w / 3.6e6 for s, w in zip(ss, works)]))
            lat_rm[r, m] = float(np.mean([
                tables.types[tables.stype[s][m]].prefill_s(int(mean_prompt_tokens), mean_prompt_tokens ** 2)
                + mean_output_tokens * tables.types[tables.stype[s][m]].decode_s(1, mean_prompt_tokens)
                for s in ss]))
    near_rm = np.array([[tables.near[o][m][0] if tables.near[o][m] else -1 for m in range(m_n)]
                        for o in range(r_n)], dtype=np.int64)
    if not has.any():
        raise ValueError(f"world {world.name!r} has no server able to serve any model")
    lat = np.asarray(world.latency_ms, dtype=float)
    cand = np.flatnonzero(has)
    nearest = np.array([i if has[i] else int(cand[np.lexsort((cand, lat[i, cand]))[0]]) for i in range(r_n)])
    gb = (mean_prompt_tokens + mean_output_tokens) * BYTES_PER_TOKEN / 1e9
    return RegionFacts(
        has_servers=has, servers=np.asarray([len(x) for x in tables.servers_in_region], dtype=float),
        capacity_rps=cap, work_s_per_request=np.where(has, work_sum / np.maximum(n, 1), 0.0),
        energy_kwh_per_request=np.where(has, kwh / np.maximum(n, 1), 0.0), nearest_dc=nearest,
        transfer_usd_per_request=gb * float(world.transfer_usd_per_gb), server_rps_rm=rps_rm,
        energy_kwh_rm=kwh_rm, nearest_capable_rm=near_rm, latency_s_rm=lat_rm)


def topology_edges(latency_ms: np.ndarray, tol_ms: float = 1e-9) -> list[tuple[int, int]]:
    """Links (i < j) whose direct latency is shorter than every two-leg path through a third node.

    Latency is shortest-path length plus a per-hop cost (torta.fleet.topology), so a pair is adjacent
    exactly when no relay k gives lat[i, k] + lat[k, j] <= lat[i, j]."""
    lat = np.asarray(latency_ms, dtype=float)
    n = lat.shape[0]
    edges = []
    for i in range(n):
        via = lat[i][:, None] + lat  # via[k, j] = lat[i, k] + lat[k, j]
        for j in range(i + 1, n):
            relay = np.delete(via[:, j], [i, j])
            if relay.size == 0 or relay.min() > lat[i, j] + tol_ms:
                edges.append((i, j))
    return edges
