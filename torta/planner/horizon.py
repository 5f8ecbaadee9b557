"""The receding-horizon macro planner: flows and model placement over the next H slots, one LP (HiGHS).

Every slot the policy (`torta-horizon`, torta.planner.horizon_policy) hands `solve_horizon` the forecast
demand of the next H slots per origin and model and today's placement (servers per region holding each
model); one linear program decides jointly, for every slot h of the horizon,

- x[h, m, o, j]: requests of origin o's model-m demand served in region j (j among o's `k_nearest`
  regions able to serve m),
- d[h, m, o]: requests of it the plan cannot place (the defer column, `defer_cost` each),
- n[h, j, m]: servers of region j holding m (sum over m = the region's servers, n <= servers able to),
- u[h, j, m] >= n[h, j, m] - n[h-1, j, m] (n[-1] = today's placement): servers loading m in slot h; a
  switch is charged once (`switch_cost`) and takes its load time off the slot's capacity (lost service),
  so a model is loaded once ahead of a ramp, not per slot, and kept through a dip shorter than its cost,
- t[h, j, m]: the congestion cost of region j's model-m load, the perspective cap x phi(load / cap) of the
  convex piecewise-linear tier cost of OTPolicy (`tier_edges`, expected queueing rho / (1 - rho) x the
  service time per tier), linear because phi is: t >= c_k load + b_k cap for every tier k.

Flow costs per request: latency, energy price of the slot's hour x energy per request, transfer (off the
origin), and at h = 0 today's queueing delay, each normalised to [0, 1] and weighted as OTConfig's cost.
Capacity of n servers: n x one server's rate x `max_utilisation` x slot length (x the share of slot 0 not
taken by today's backlog). The caller applies slot 0: `HorizonPlan.shares()` (the micro layer's routing)
and `HorizonPlan.targets` (servers per region per model to hold in the coming slot); next slot it plans
again (model-predictive control).

Solver: HiGHS's dual simplex through `highspy` (HiGHS's own Python interface; the solver `scipy.optimize.linprog(
method="highs")` wraps) on a sparse formulation, the placement continuous and rounded afterwards (largest
remainder per region, ties to today's placement). Successive calls of one `HorizonLP` have the same rows and
columns, so each solve starts from the previous call's optimal basis (a warm start, which `linprog` cannot
take): the receding horizon's LPs differ by one slot of demand, and the warm simplex needs a fraction of the
cold solve's iterations (`torta bench plan`). A MILP with integer n (`scipy.optimize.milp`) was not used:
the per-slot budget is 20 ms at 50 regions x 3 models x H = 12, the LP relaxation of this
transport-with-capacity structure is nearly integral on regions with many servers, and only slot 0's
rounded placement is ever applied.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass

import highspy
import numpy as np
from scipy.sparse import csc_array

from torta.planner.config import HorizonConfig


@dataclass(frozen=True)
class HorizonInputs:
    """One planning call. R regions, M models, H slots."""

    demand: np.ndarray  # (H, R, M) requests per slot per origin and model (forecast)
    latency_ms: np.ndarray  # (R, R)
    price_usd_per_mwh: np.ndarray  # (H, R) price of each slot's hour
    energy_kwh_rm: np.ndarray  # (R, M) energy per request of model m in region r
    server_rps_rm: np.ndarray  # (R, M) requests/s of one server of r on m (0: none of r's servers can)
    service_s_rm: np.ndarray  # (R, M) unloaded latency of a mean request
    load_s_rm: np.ndarray  # (R, M) seconds for one of r's servers to load m
    capable_rm: np.ndarray  # (R, M) servers of r that may hold m
    servers: np.ndarray  # (R,) servers of r that may hold some model
    placement: np.ndarray  # (R, M) servers holding each model now (n[-1])
    slot_s: float
    free_share: np.ndarray | None = None  # (R,) share of slot 0 not taken by today's backlog (None: 1)
    queue_delay_s: np.ndarray | None = None  # (R,) today's queueing delay per server, slot 0's cost (None: 0)
    transfer_usd_per_request: float = 0.0
    slot_weight: np.ndarray | None = None  # (H,) slots each row stands for (a block of the horizon); None: 1
    switch_gpu_s_rm: np.ndarray | None = None  # (R, M) GPU-seconds one load of m takes on r's servers (None: 0)

    def __post_init__(self) -> None:
        d = np.asarray(self.demand)
        if d.ndim != 3:
            raise ValueError(f"HorizonInputs.demand must be (H, R, M), got shape {d.shape}")
        h, r, m = d.shape
        shapes = {"latency_ms": (r, r), "price_usd_per_mwh": (h, r), "energy_kwh_rm": (r, m),
                  "server_rps_rm": (r, m), "service_s_rm": (r, m), "load_s_rm": (r, m), "capable_rm": (r, m),
                  "servers": (r,), "placement": (r, m), "free_share": (r,), "queue_delay_s": (r,), "slot_weight": (h,),
                  "switch_gpu_s_rm": (r, m)}
        for name, shape in shapes.items():
            v = getattr(self, name)
            if v is None:
                continue
            a = np.asarray(v, dtype=float)
            if a.shape != shape:
                raise ValueError(f"HorizonInputs.{name} must have shape {shape}, got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"HorizonInputs.{name} has non-finite values")
            if name != "price_usd_per_mwh" and np.any(a < 0):  # market prices can be negative
                raise ValueError(f"HorizonInputs.{name} must be >= 0")
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError("HorizonInputs.demand must be finite and >= 0")
        if not (self.slot_s > 0 and np.isfinite(self.slot_s)):
            raise ValueError(f"HorizonInputs.slot_s must be a finite number of seconds > 0, got {self.slot_s!r}")


@dataclass(frozen=True)
class HorizonPlan:
    """The horizon's decision; slot 0 is the one to apply."""

    flow: np.ndarray  # (H, M, R, R) requests of (origin, model) served per region
    defer: np.ndarray  # (H, R, M)
    placement: np.ndarray  # (H, R, M) servers holding each model (LP value, continuous)
    switches: np.ndarray  # (H, R, M) servers loading each model (LP value)
    targets: np.ndarray  # (R, M) int: servers to hold each model in slot 0 (rounded placement[0])
    nearest: np.ndarray  # (M, R) int: each origin's nearest region able to serve m (-1: none)
    objective: float
    status: int  # 0: optimal; otherwise the solver failed and the plan keeps today's placement, flows local
    solve_ms: float
    simplex_iterations: int = 0  # the solver's, this call (a warm start needs fewer)

    def shares(self) -> np.ndarray:
        """(M, R, R) row-stochastic routing of slot 0: each origin's planned flows over its demand; the
        deferred part queues at its nearest capable region; an origin without demand goes there too."""
        flow = self.flow[0]
        m_n, r_n, _ = flow.shape
        out = np.zeros_like(flow)
        rows = np.arange(r_n)
        for m in range(m_n):
            near = self.nearest[m]
            if (near < 0).all():
                out[m, rows, rows] = 1.0  # nobody serves m: the simulator drops it with its reason
                continue
            tot = flow[m].sum(axis=1) + self.defer[0, :, m]
            pos = tot > 1e-9
            out[m][pos] = flow[m][pos] / tot[pos, None]
            out[m, rows, near] += np.where(pos, self.defer[0, :, m] / np.where(pos, tot, 1.0), 1.0)
        return out


class HorizonLP:
    """The LP's structure for one fleet (pairs, candidate flows, index arrays), built once and refilled with
    each call's numbers; `solve` does one planning call."""

    def __init__(self, latency_ms: np.ndarray, capable_rm: np.ndarray, config: HorizonConfig) -> None:
        self.config = config
        lat = np.asarray(latency_ms, dtype=float)
        cap = np.asarray(capable_rm, dtype=float)
        r_n, m_n = cap.shape
        self.r_n, self.m_n = r_n, m_n
        pj, pm = np.nonzero(cap > 0)  # (region, model) pairs that can hold the model, region-major
        self.pj, self.pm, self.p_n = pj, pm, pj.size
        pair_of = np.full((r_n, m_n), -1, dtype=np.int64)
        pair_of[pj, pm] = np.arange(pj.size)
        fo, fm, fj, rank = [], [], [], []
        nearest = np.full((m_n, r_n), -1, dtype=np.int64)
        for m in range(m_n):
            cols = np.flatnonzero(cap[:, m] > 0)
            if cols.size == 0:
                continue
            for o in range(r_n):
                order = cols[np.lexsort((cols, lat[o, cols]))][:config.k_nearest]
                nearest[m, o] = order[0]
                fo.extend([o] * order.size)
                rank.extend(range(order.size))
                fm.extend([m] * order.size)
                fj.extend(order.tolist())
        self.nearest = nearest
        self.fo, self.fm, self.fj = (np.asarray(a, dtype=np.int64) for a in (fo, fm, fj))
        self.far = np.asarray(rank, dtype=np.int64) >= config.k_nearest_ahead  # closed beyond slot 0
        self.fp = pair_of[self.fj, self.fm] if self.fj.size else np.zeros(0, dtype=np.int64)
        self.f_n = self.fo.size
        self.lat_norm = lat[self.fo, self.fj] / max(float(lat.max()), 1e-12) if self.f_n else np.zeros(0)
        self.off_origin = (self.fo != self.fj).astype(float)
        e = np.asarray(config.tier_edges, dtype=float) / config.tier_edges[-1]
        self.tier_lo, self.tier_w = e[:-1], np.diff(e)
        self.tier_rho = e[1:] * config.tier_edges[-1] * config.max_utilisation / config.tier_edges[-1] \
            / config.capacity_derate
        self.k_n = self.tier_w.size
        # variables of one slot, in order: x (F), d (M x R, model-major), n (P), u (P), t (P)
        self.block = self.f_n + m_n * r_n + 3 * self.p_n
        self._struct: dict = {}
        self._basis: dict = {}  # H -> the last optimal basis of that shape (the next call's warm start)

    def _offsets(self) -> tuple[int, int, int, int]:
        ox = 0
        od = ox + self.f_n
        on = od + self.m_n * self.r_n
        return od, on, on + self.p_n, on + 2 * self.p_n

    def _structure(self, h_n: int) -> dict:
        """Row / column index arrays of the constraint matrices for H = h_n (cached); values per call."""
        if h_n in self._struct:
            return self._struct[h_n]
        f_n, p_n, r_n, m_n, k_n, b = self.f_n, self.p_n, self.r_n, self.m_n, self.k_n, self.block
        od, on, ou, ot = self._offsets()
        hh = np.arange(h_n)[:, None]
        fi = np.arange(f_n)[None, :]
        pi = np.arange(p_n)[None, :]
        # equalities: demand rows (h, m, o) then server-count rows (h, region with pairs)
        regions = np.unique(self.pj)
        reg_row = np.full(r_n, -1, dtype=np.int64)
        reg_row[regions] = np.arange(regions.size)
        n_dem = m_n * r_n
        eq_rows = [(hh * (n_dem + regions.size) + self.fm * r_n + self.fo).ravel(),
                   (hh * (n_dem + regions.size) + np.arange(n_dem)[None, :]).ravel(),
                   (hh * (n_dem + regions.size) + n_dem + reg_row[self.pj][None, :]).ravel()]
        eq_cols = [(hh * b + fi).ravel(), (hh * b + od + np.arange(n_dem)[None, :]).ravel(),
                   (hh * b + on + pi).ravel()]
        # inequalities per slot: capacity (P), tiers (P x K, pair-major), switch (P)
        per = p_n * (2 + k_n)
        cap_r = hh * per + self.fp[None, :]
        h3 = np.arange(h_n)[:, None, None]
        tier_local = p_n + self.fp[:, None] * k_n + np.arange(k_n)[None, :]  # (F, K)
        ub_rows = [cap_r.ravel(), (hh * per + pi).ravel(), (hh * per + pi).ravel(),
                   (h3 * per + tier_local[None]).ravel()]
        ub_cols = [(hh * b + fi).ravel(), (hh * b + on + pi).ravel(), (hh * b + ou + pi).ravel(),
                   np.broadcast_to(h3 * b + np.arange(f_n)[None, :, None], (h_n, f_n, k_n)).ravel()]
        pk_rows = hh * per + p_n + (np.arange(p_n)[:, None] * k_n + np.arange(k_n)[None, :]).ravel()[None, :]
        pk_cols_n = hh * b + on + np.repeat(np.arange(p_n), k_n)[None, :]
        pk_cols_u = hh * b + ou + np.repeat(np.arange(p_n), k_n)[None, :]
        pk_cols_t = hh * b + ot + np.repeat(np.arange(p_n), k_n)[None, :]
        ub_rows += [pk_rows.ravel()] * 3
        ub_cols += [pk_cols_n.ravel(), pk_cols_u.ravel(), pk_cols_t.ravel()]
        sw_r = hh * per + p_n * (1 + k_n) + pi
        ub_rows += [sw_r.ravel(), sw_r.ravel(), sw_r[1:].ravel()]
        ub_cols += [(hh * b + on + pi).ravel(), (hh * b + ou + pi).ravel(), ((hh[1:] - 1) * b + on + pi).ravel()]
        s = {"eq_rows": np.concatenate(eq_rows), "eq_cols": np.concatenate(eq_cols),
             "ub_rows": np.concatenate(ub_rows), "ub_cols": np.concatenate(ub_cols),
             "n_eq": h_n * (n_dem + regions.size), "n_ub": h_n * per, "regions": regions}
        self._struct[h_n] = s
        return s

    def solve(self, inp: HorizonInputs) -> HorizonPlan:
        t0 = time.perf_counter()
        if self.config.blocks is not None and inp.slot_weight is None:
            inp = blocked(inp, self.config.blocks)
        cfg, w = self.config, self.config.weights
        dem = np.asarray(inp.demand, dtype=float)
        h_n, r_n, m_n = dem.shape
        if (r_n, m_n) != (self.r_n, self.m_n):
            raise ValueError(f"HorizonLP built for {self.r_n} regions x {self.m_n} models, got demand for "
                             f"{r_n} x {m_n}")
        f_n, p_n, k_n, b = self.f_n, self.p_n, self.k_n, self.block
        od, on, ou, ot = self._offsets()
        st = self._structure(h_n)
        pj, pm = self.pj, self.pm
        wt = np.ones(h_n) if inp.slot_weight is None else np.maximum(np.asarray(inp.slot_weight, float), 1e-9)
        start = cfg.discount ** (np.cumsum(wt) - wt)
        disc = start * wt  # a row standing for L slots counts L times; its switches once
        # per-request flow cost (H, F)
        usd = np.asarray(inp.price_usd_per_mwh, dtype=float)[:, :, None] / 1000.0 * inp.energy_kwh_rm[None]
        usd = usd - min(0.0, float(usd.min()))
        usd_n = usd / max(float(usd.max()), 1e-300) if usd.max() > 0 else np.zeros_like(usd)
        fc = (w.latency * self.lat_norm)[None, :] + w.energy * usd_n[:, self.fj, self.fm]
        if inp.transfer_usd_per_request > 0:
            fc = fc + w.transfer * self.off_origin[None, :]
        if inp.queue_delay_s is not None:
            q = np.asarray(inp.queue_delay_s, dtype=float)
            fc[0] += w.queue * (q / (q + cfg.queue_ref_s))[self.fj]
        # capacity per server per slot (H, P) and the lost-service share of a switch
        kp = np.broadcast_to(cfg.max_utilisation * inp.server_rps_rm[pj, pm] * inp.slot_s, (h_n, p_n)).copy()
        if inp.free_share is not None:
            kp[0] *= np.clip(np.asarray(inp.free_share, dtype=float)[pj], 0.0, 1.0)
        lost = np.minimum(inp.load_s_rm[pj, pm][None, :] / (inp.slot_s * wt[:, None]), 1.0) * kp
        # tiers: cost per request c_k and the perspective's intercepts b_k (<= 0), per pair
        delay = self.tier_rho[None, :] / (1.0 - self.tier_rho[None, :]) * inp.service_s_rm[pj, pm][:, None]
        ck = w.queue * delay / (delay + cfg.queue_ref_s)  # (P, K)
        phi_lo = np.concatenate([np.zeros((p_n, 1)), np.cumsum(ck * self.tier_w[None, :], axis=1)[:, :-1]], axis=1)
        bk = phi_lo - ck * self.tier_lo[None, :]
        # objective
        c = np.zeros(h_n * b)
        cv = c.reshape(h_n, b)
        cv[:, :f_n] = fc * disc[:, None]
        cv[:, od:on] = cfg.defer_cost * disc[:, None]
        sw_cost = np.full(p_n, cfg.switch_cost)
        if inp.switch_gpu_s_rm is not None:
            sw_cost = sw_cost + cfg.switch_cost_per_gpu_s * np.asarray(inp.switch_gpu_s_rm, dtype=float)[pj, pm]
        cv[:, ou:ot] = sw_cost[None, :] * start[:, None]
        cv[:, ot:] = disc[:, None]
        # equalities: demand (h, m, o) = x + d; servers per region = sum of n
        eq_vals = np.concatenate([np.ones(h_n * f_n), np.ones(h_n * m_n * r_n), np.ones(h_n * p_n)])
        regions = st["regions"]
        b_eq = np.concatenate([np.concatenate([dem[h].T.ravel(), np.asarray(inp.servers, float)[regions]])
                               for h in range(h_n)])
        # inequalities (values in the order of _structure's blocks)
        ck_f = ck[self.fp]  # (F, K)
        ub_vals = np.concatenate([
            np.ones(h_n * f_n), (-kp).ravel(), lost.ravel(),
            np.broadcast_to(ck_f[None], (h_n, f_n, k_n)).ravel(),
            (bk[None] * kp[:, :, None]).ravel(), (-bk[None] * lost[:, :, None]).ravel(),
            np.full(h_n * p_n * k_n, -1.0),
            np.ones(h_n * p_n), np.full(h_n * p_n, -1.0), np.full((h_n - 1) * p_n, -1.0)])
        b_ub = np.zeros(st["n_ub"])
        n0 = np.asarray(inp.placement, dtype=float)[pj, pm]
        b_ub.reshape(h_n, -1)[0, p_n * (1 + k_n):] = n0
        hi = np.full(h_n * b, np.inf)
        hi.reshape(h_n, b)[:, on:ou] = np.asarray(inp.capable_rm, dtype=float)[pj, pm][None, :]
        hi.reshape(h_n, b)[1:, :f_n][:, self.far] = 0.0  # slots ahead: flows to the k_nearest_ahead only
        # columns closed in every call (flows beyond k_nearest_ahead in the slots ahead) leave the LP: a
        # smaller model for the simplex, and the same one whether or not it starts warm (no presolve then).
        # One column-wise matrix over the kept columns: the inequality rows, then the equality rows.
        keep = hi > 0
        col_of = np.cumsum(keep) - 1
        rows = np.concatenate([st["ub_rows"], st["n_ub"] + st["eq_rows"]])
        cols = np.concatenate([st["ub_cols"], st["eq_cols"]])
        vals = np.concatenate([ub_vals, eq_vals])
        kept = keep[cols]
        a = csc_array((vals[kept], (rows[kept], col_of[cols[kept]])), shape=(st["n_ub"] + st["n_eq"], int(keep.sum())))
        a.sort_indices()  # HiGHS wants each column's row indices in order
        res = self._run(h_n, keep, _moved_rows(wt), c[keep], a, b_ub, b_eq, hi[keep])
        if res.status == 0:
            x = np.zeros(h_n * b)
            x[keep] = res.x
            res = dataclasses.replace(res, x=x)
        flow = np.zeros((h_n, m_n, r_n, r_n))
        defer = np.zeros((h_n, r_n, m_n))
        place = np.zeros((h_n, r_n, m_n))
        sw = np.zeros((h_n, r_n, m_n))
        if res.status == 0:
            v = res.x.reshape(h_n, b)
            np.add.at(flow, (slice(None), self.fm, self.fo, self.fj), np.maximum(v[:, :f_n], 0.0))
            defer = np.maximum(v[:, od:on], 0.0).reshape(h_n, m_n, r_n).transpose(0, 2, 1).copy()
            place[:, pj, pm] = v[:, on:ou]
            sw[:, pj, pm] = np.maximum(v[:, ou:ot], 0.0)
            targets = round_placement(place[0], np.asarray(inp.placement, dtype=float),
                                      np.asarray(inp.capable_rm, dtype=float), np.asarray(inp.servers, float))
            obj = float(res.fun)
        else:  # keep today's placement; each origin's demand to its nearest capable region
            targets = np.asarray(inp.placement, dtype=float).round().astype(np.int64)
            for m in range(m_n):
                ok = self.nearest[m] >= 0
                flow[:, m, np.flatnonzero(ok), self.nearest[m][ok]] = dem[:, ok, m]
            place[:] = targets[None]
            obj = float("nan")
        return HorizonPlan(flow=flow, defer=defer, placement=place, switches=sw, targets=targets,
                           nearest=self.nearest, objective=obj, status=int(res.status),
                           solve_ms=(time.perf_counter() - t0) * 1000.0, simplex_iterations=res.iterations)


    def _run(self, h_n: int, keep: np.ndarray, moved: np.ndarray, c, a, b_ub, b_eq, col_upper) -> "_Result":
        """min c x, x >= 0, x <= col_upper, and a x <= b_ub on a's first rows, = b_eq on the rest, by HiGHS
        (simplex), warm from the last optimal basis of this shape (`_start`): status 0 optimal, 2 infeasible,
        3 unbounded, 4 anything else (the codes of scipy.optimize.linprog)."""
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = int(c.size), int(a.shape[0])
        lp.col_cost_, lp.col_lower_ = c, np.zeros(c.size)
        lp.col_upper_ = np.where(np.isinf(col_upper), highspy.kHighsInf, col_upper)
        lp.row_lower_ = np.concatenate([np.full(b_ub.size, -highspy.kHighsInf), b_eq])
        lp.row_upper_ = np.concatenate([b_ub, b_eq])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
        h = new_highs()
        h.passModel(lp)
        start = self._start(h_n, keep, moved) if self.config.warm_start else None
        if start is not None and h.setBasis(start) != highspy.HighsStatus.kOk:
            h.clearSolver()  # a start HiGHS cannot use: solve cold
        if h.run() == highspy.HighsStatus.kError and start is not None:
            h.clearSolver()
            h.run()
        st, info = h.getModelStatus(), h.getInfo()
        if st == highspy.HighsModelStatus.kOptimal:
            if self.config.warm_start:
                self._basis[h_n] = (h.getBasis(), b_ub.size)
            return _Result(0, np.asarray(h.getSolution().col_value), float(info.objective_function_value),
                           int(info.simplex_iteration_count))
        self._basis.pop(h_n, None)  # a failed solve's basis is no start
        code = {highspy.HighsModelStatus.kInfeasible: 2, highspy.HighsModelStatus.kUnbounded: 3}.get(st, 4)
        return _Result(code, None, float("nan"), int(info.simplex_iteration_count))

    def _start(self, h_n: int, keep: np.ndarray, moved: np.ndarray) -> highspy.HighsBasis | None:
        """The warm start: the last optimal basis of this shape, each LP row's part taken from the previous
        call's row `moved[h]` (`_moved_rows`: the receding horizon moved one slot, so the previous call's
        slot h + 1 is this call's slot h). Columns and both row groups (inequalities, then equalities) are
        laid out row-major, so the move is a fancy index; closed columns are nonbasic at their bound 0. A
        moved basis may hold more or fewer basic variables than rows: it goes in as an *alien* basis, which
        HiGHS completes or trims before its simplex starts. Unmoved, the last basis goes in as it is."""
        prev = self._basis.get(h_n)
        if prev is None:
            return None
        got, n_ub = prev
        if np.array_equal(moved, np.arange(h_n)):
            return got

        def take(a: np.ndarray) -> np.ndarray:
            return a.reshape(h_n, -1)[moved].ravel()

        cols = np.zeros(keep.size, dtype=np.int64)
        cols[keep] = [int(v) for v in got.col_status]
        rows = np.asarray([int(v) for v in got.row_status], dtype=np.int64)
        basis = highspy.HighsBasis()
        basis.col_status = [_STATUS[v] for v in take(cols)[keep].tolist()]
        basis.row_status = [_STATUS[v] for v in np.concatenate([take(rows[:n_ub]), take(rows[n_ub:])]).tolist()]
        basis.alien = True
        basis.valid = True
        return basis


def _moved_rows(slot_weight: np.ndarray) -> np.ndarray:
    """For each LP row h, the row of the previous call whose basis part starts row h: with one row per slot
    the previous call's slot h + 1, i.e. (1, 2, ..., H - 1, H - 1). With blocks of slots (rows standing for
    several slots) each row is kept in place: moving the blocked rows (1, 1, 2, 4, 4) by their next slot,
    (1, 2, 2, 3, 4), made the warm solve slower (`torta bench plan`, 50 regions x 3 models x H = 12: 34-35
    against 23 ms CPU per call unmoved; cold 46-49 ms)."""
    w = np.rint(np.asarray(slot_weight, dtype=float)).astype(np.int64)
    if w.size < 2 or bool((w != 1).any()):
        return np.arange(w.size)
    return np.minimum(np.arange(w.size) + 1, w.size - 1)


_STATUS = list(highspy.HighsBasisStatus.__members__.values())  # indexed by the status's integer value


_BANNER_SHOWN = False


def new_highs() -> highspy.Highs:
    """A silent, single-threaded HiGHS (simplex). HiGHS prints its banner on the process's stdout (C level,
    the first time a solver is built, whatever `output_flag` says afterwards); `torta replay --json` keeps
    stdout for its JSON, so the first construction runs with file descriptor 1 pointed at /dev/null."""
    global _BANNER_SHOWN
    if not _BANNER_SHOWN:
        sys.stdout.flush()
        saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
            h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(null)
        _BANNER_SHOWN = True
    else:
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)  # one core per replay (the experiment runs cells side by side)
    h.setOptionValue("solver", "simplex")
    return h


@dataclass(frozen=True)
class _Result:
    status: int
    x: np.ndarray | None
    fun: float
    iterations: int


def blocked(inp: HorizonInputs, blocks: tuple) -> HorizonInputs:
    """The same call on one row per block of slots: each row the mean demand and price of its slots,
    weighted by its length (HorizonInputs.slot_weight)."""
    b = np.asarray(blocks, dtype=np.int64)
    if int(b.sum()) != np.asarray(inp.demand).shape[0]:
        raise ValueError(f"blocks {tuple(blocks)} sum to {int(b.sum())}, the demand has "
                         f"{np.asarray(inp.demand).shape[0]} slots")
    edges = np.concatenate([[0], np.cumsum(b)])

    def mean_rows(a: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(a)[edges[i]:edges[i + 1]].mean(axis=0) for i in range(b.size)])

    return dataclasses.replace(inp, demand=mean_rows(inp.demand), price_usd_per_mwh=mean_rows(inp.price_usd_per_mwh),
                               slot_weight=b.astype(float))


def round_placement(n: np.ndarray, current: np.ndarray, capable: np.ndarray, servers: np.ndarray) -> np.ndarray:
    """(R, M) integer placement from the LP's continuous one: per region, floors plus the largest remainders
    up to the region's servers (ties go to today's placement), never above `capable`."""
    n = np.clip(np.asarray(n, dtype=float), 0.0, capable)
    out = np.floor(n + 1e-9).astype(np.int64)
    for r in range(n.shape[0]):
        need = int(round(min(servers[r], capable[r].sum()))) - int(out[r].sum())
        if need <= 0:
            continue
        rem = n[r] - out[r]
        room = out[r] < capable[r]
        key = np.where(room, rem + 1e-6 * (current[r] > out[r]), -np.inf)
        for m in np.argsort(-key, kind="stable")[:need]:
            if np.isfinite(key[m]):
                out[r, m] += 1
    return out


def solve_horizon(inputs: HorizonInputs, config: HorizonConfig = HorizonConfig()) -> HorizonPlan:
    """One planning call without a kept structure (tests, one-offs); the policy keeps a `HorizonLP`."""
    return HorizonLP(inputs.latency_ms, inputs.capable_rm, config).solve(inputs)
