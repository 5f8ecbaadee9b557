"""The macro optimal-transport planner (POT).

Per slot: source marginal = demand per origin region (requests or token-work, any unit as long as
capacity uses the same one), target = available capacity per data-centre region, cost = weighted sum of
four terms each normalised to [0, 1] (latency, energy price x energy per request, expected queueing
delay, inter-region transfer cost). Unbalanced supply and capacity are handled by an extended problem:

    sources: origins 0..R-1 and one *slack* row holding sum(capacity)
    targets: regions 0..D-1 and one *defer* column holding sum(demand)
    cost:    C[i, j] real, C[i, defer] = defer_cost (> every real cost), C[slack, :] = 0

so the optimum serves as much demand as capacity allows (every unit moved off the defer column saves
defer_cost - C[i, j] > 0), at minimum cost, and keeps any excess queued at its origin (the defer column):
demand is never dropped silently. Unused capacity is absorbed by the slack row at no cost, so traffic
stays local when local capacity suffices and the local route is the cheapest.

References: POT `ot.emd` (network simplex), `ot.sinkhorn`, `ot.unbalanced.sinkhorn_unbalanced`;
paper-torta.md §3.2 and §9.3 (defer column) for the reconstruction of the paper's OT layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from torta.planner.config import OTConfig

import ot  # POT (absolute import, not this module); the `torta` CLI sets POT_BACKEND_DISABLE_PYTORCH=1


@dataclass(frozen=True)
class CostInputs:
    """Raw (unnormalised) cost terms for one slot. R origins, D data-centre regions.

    latency_ms[i, j]: one-way network latency origin i -> region j.
    price_usd_per_mwh[j]: electricity price in region j this slot.
    energy_kwh_per_request[j]: marginal energy of serving one unit of demand in region j (PUE included).
    queue_delay_s[j]: expected queueing delay in region j (backlog / service rate).
    transfer_usd_per_request[i, j]: inter-region transfer cost of one unit i -> j (0 on the diagonal).
    """

    latency_ms: np.ndarray
    price_usd_per_mwh: np.ndarray
    energy_kwh_per_request: np.ndarray
    queue_delay_s: np.ndarray
    transfer_usd_per_request: np.ndarray

    def __post_init__(self) -> None:
        lat = np.asarray(self.latency_ms)
        if lat.ndim != 2:
            raise ValueError(f"CostInputs.latency_ms must be 2-D (origins x regions), got shape {lat.shape}")
        r, d = lat.shape
        for name in ("price_usd_per_mwh", "energy_kwh_per_request", "queue_delay_s"):
            arr = np.asarray(getattr(self, name))
            if arr.shape not in ((d,), ()):
                raise ValueError(f"CostInputs.{name} must have shape ({d},), got {arr.shape}")
        tr = np.asarray(self.transfer_usd_per_request)
        if tr.shape not in ((r, d), ()):
            raise ValueError(f"CostInputs.transfer_usd_per_request must have shape ({r}, {d}), got {tr.shape}")
        for name in ("latency_ms", "price_usd_per_mwh", "energy_kwh_per_request", "queue_delay_s",
                     "transfer_usd_per_request"):
            arr = np.asarray(getattr(self, name), dtype=float)
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"CostInputs.{name} has non-finite values")
            if np.any(arr < 0) and name != "price_usd_per_mwh":  # market prices can be negative
                raise ValueError(f"CostInputs.{name} must be >= 0")


def _scale01(x: np.ndarray) -> np.ndarray:
    """Shift-free scaling to [0, 1] by the largest absolute value (0 stays 0)."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return x / m if m > 0 else np.zeros_like(x)


def cost_matrix(inputs: CostInputs, config: OTConfig) -> np.ndarray:
    """Weighted, normalised cost C[i, j] (origins x regions), every term in [0, 1] before weighting."""
    w = config.weights
    lat = np.asarray(inputs.latency_ms, dtype=float)
    r, d = lat.shape
    energy_usd = (np.broadcast_to(np.asarray(inputs.price_usd_per_mwh, dtype=float), (d,)) / 1000.0
                  * np.broadcast_to(np.asarray(inputs.energy_kwh_per_request, dtype=float), (d,)))
    # negative prices: shift so the cheapest region costs 0
    energy_usd = energy_usd - min(0.0, float(energy_usd.min())) if d else energy_usd
    q = np.broadcast_to(np.asarray(inputs.queue_delay_s, dtype=float), (d,))
    queue = q / (q + config.queue_ref_s)  # saturating map to [0, 1)
    transfer = np.broadcast_to(np.asarray(inputs.transfer_usd_per_request, dtype=float), (r, d))
    return (w.latency * _scale01(lat) + w.energy * _scale01(energy_usd)[None, :]
            + w.queue * queue[None, :] + w.transfer * _scale01(transfer))


@dataclass(frozen=True)
class OTPlan:
    """One slot's macro plan. R origins, D data-centre regions.

    share[i, j]: fraction of origin i's demand served in region j; share.sum(1) + defer_share == 1 for
    every origin (an origin with no demand gets its cheapest region with capacity).
    flow[i, j], defer[i]: the same in demand units; flow.sum(0) <= capacity and flow.sum(1) + defer = demand (approximate solvers' plans are
    rounded onto that set).
    """

    share: np.ndarray
    defer_share: np.ndarray
    flow: np.ndarray
    defer: np.ndarray
    cost: np.ndarray
    method: str
    solve_ms: float

    @property
    def total_deferred(self) -> float:
        return float(self.defer.sum())


def solve_plan(demand: np.ndarray, capacity: np.ndarray, cost: np.ndarray,
               config: OTConfig = OTConfig()) -> OTPlan:
    """Solve the slot's transport problem (see the module docstring) and return the row-normalised plan."""
    t0 = time.perf_counter()
    a = np.asarray(demand, dtype=np.float64)
    b = np.asarray(capacity, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or c.shape != (a.size, b.size):
        raise ValueError(f"solve_plan: shapes demand (R,), capacity (D,) and cost (R, D) expected; got "
                         f"{a.shape}, {b.shape}, {c.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(np.isfinite(c))):
        raise ValueError("solve_plan: demand, capacity and cost must be finite")
    if np.any(a < 0) or np.any(b < 0):
        raise ValueError("solve_plan: demand and capacity must be >= 0")
    if c.size and float(c.max()) >= config.defer_cost:
        raise ValueError(f"solve_plan: defer_cost {config.defer_cost} must exceed every cost "
                         f"(max {float(c.max()):.3g})")
    r, d = c.shape
    sa, sb = float(a.sum()), float(b.sum())
    total = sa + sb
    flow = np.zeros((r, d))
    defer = np.zeros(r)
    if sa > 0 and sb <= 0:
        defer = a.copy()
    elif sa > 0:
        # solve on the support (zero-mass rows/columns carry nothing; Sinkhorn would take log(0))
        ri, cj = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
        rs, cs = ri.size, cj.size
        a_ext = np.empty(rs + 1)
        a_ext[:rs] = a[ri] / total
        a_ext[rs] = sb / total
        b_ext = np.empty(cs + 1)
        b_ext[:cs] = b[cj] / total
        b_ext[cs] = sa / total
        b_ext *= a_ext.sum() / b_ext.sum()  # equal masses to the last ulp
        m_ext = np.zeros((rs + 1, cs + 1))
        m_ext[:rs, :cs] = c[np.ix_(ri, cj)]
        m_ext[:rs, cs] = config.defer_cost
        g = _solve(a_ext, b_ext, m_ext, c, config)
        flow[np.ix_(ri, cj)] = g[:rs, :cs] * total
        defer[ri] = g[:rs, cs] * total
        if config.method != "emd":
            flow, defer = _round_feasible(a, b, flow)
    share, defer_share = _row_shares(a, b, c, flow, defer)
    return OTPlan(share=share, defer_share=defer_share, flow=flow, defer=defer, cost=c,
                  method=config.method, solve_ms=(time.perf_counter() - t0) * 1000.0)


def _round_feasible(a: np.ndarray, b: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round an approximate (Sinkhorn) plan onto the feasible set: columns scaled down to their
    capacity, rows down to their demand, and whatever a row then lacks goes to its defer entry, so
    capacity is never exceeded and every unit of demand is either placed or deferred, never lost."""
    flow = np.maximum(flow, 0.0)
    col = flow.sum(0)
    over = col > b
    if over.any():
        flow[:, over] *= b[over] / col[over]
    row = flow.sum(1)
    big = row > a
    if big.any():
        flow[big] *= (a[big] / row[big])[:, None]
    return flow, np.maximum(a - flow.sum(1), 0.0)


def _solve(a: np.ndarray, b: np.ndarray, m: np.ndarray, c: np.ndarray, config: OTConfig) -> np.ndarray:
    if config.method == "emd":
        return ot.emd(a, b, m, numItermax=1_000_000)
    # relative to the cost scale, floored at 1 (the order of one normalised term) so a slot whose real
    # costs are all tiny does not get a vanishing regulariser that Sinkhorn cannot converge with
    reg = config.sinkhorn_reg * max(float(c.max()) if c.size else 0.0, 1.0)
    if config.method == "sinkhorn":
        return ot.sinkhorn(a, b, m, reg, method="sinkhorn_log", numItermax=config.sinkhorn_max_iter,
                           stopThr=config.sinkhorn_stop_thr, warn=False)
    return ot.unbalanced.sinkhorn_unbalanced(a, b, m, reg, config.unbalanced_reg_m,
                                             method="sinkhorn_stabilized",
                                             numItermax=config.sinkhorn_max_iter,
                                             stopThr=config.sinkhorn_stop_thr)


def _row_shares(a: np.ndarray, b: np.ndarray, c: np.ndarray, flow: np.ndarray,
                defer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, d = c.shape
    flow = np.clip(flow, 0.0, None)
    defer = np.clip(defer, 0.0, None)
    rows = flow.sum(1) + defer
    share = np.zeros((r, d))
    defer_share = np.zeros(r)
    pos = rows > 1e-12 * max(1.0, float(a.max()) if r else 1.0)
    share[pos] = flow[pos] / rows[pos, None]
    defer_share[pos] = defer[pos] / rows[pos]
    # origins without (planned) demand: route to their cheapest region that has capacity
    idle = np.flatnonzero(~pos)
    if d and idle.size:
        rows = c[idle]
        if (b > 0).any():
            rows = np.where(b[None, :] > 0, rows, np.inf)
        share[idle, np.argmin(rows, axis=1)] = 1.0
    elif not d:
        defer_share[~pos] = 1.0
    return share, defer_share


def solve_tiered(demand: np.ndarray, capacity: np.ndarray, cost: np.ndarray, tier_fracs: np.ndarray,
                 tier_costs: np.ndarray, config: OTConfig = OTConfig()) -> OTPlan:
    """OT with a convex congestion cost, kept exact by splitting each region into capacity tiers.

    Region j's capacity is cut into tiers k of size tier_fracs[k] * capacity[j] (fractions summing to
    at most 1); sending a unit into tier k costs cost[i, j] + tier_costs[j, k] (non-decreasing in k), so
    the optimum fills the cheap tiers of every region before the dear ones: load spreads the way a
    convex queueing-delay cost would spread it, and the problem stays a transport problem for `ot.emd`.
    Returns the plan aggregated over tiers (share/flow per region).
    """
    b = np.asarray(capacity, dtype=float)
    c = np.asarray(cost, dtype=float)
    fr = np.asarray(tier_fracs, dtype=float)
    tc = np.asarray(tier_costs, dtype=float)
    d = b.size
    k = fr.size
    if tc.shape != (d, k):
        raise ValueError(f"solve_tiered: tier_costs must have shape ({d}, {k}), got {tc.shape}")
    if np.any(fr < 0) or fr.sum() > 1.0 + 1e-9:
        raise ValueError("solve_tiered: tier_fracs must be >= 0 and sum to at most 1")
    if np.any(np.diff(tc, axis=1) < -1e-12):
        raise ValueError("solve_tiered: tier costs must be non-decreasing across tiers")
    t0 = time.perf_counter()
    cap_t = (b[:, None] * fr[None, :]).ravel()  # (D*K,) region-major
    cost_t = (c[:, :, None] + tc[None, :, :]).reshape(c.shape[0], d * k)
    p = solve_plan(demand, cap_t, cost_t, config)
    flow = p.flow.reshape(c.shape[0], d, k).sum(axis=2)
    share = p.share.reshape(c.shape[0], d, k).sum(axis=2)
    return OTPlan(share=share, defer_share=p.defer_share, flow=flow, defer=p.defer, cost=c,
                  method=p.method, solve_ms=(time.perf_counter() - t0) * 1000.0)
