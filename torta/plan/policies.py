"""Planner-layer policies behind the `torta.policy` seam, one class and one registration each:

- `myopic-ot`: OT on the current slot (demand = the slot just observed), no forecast; warm least-loaded
  inside the region.
- `torta-ot`: OT on forecast demand (day-ahead `torta.forecast.forecast` over the history before the
  replay, corrected online by the observed/forecast ratio) + the TORTA micro allocator. The forecast is
  computed inside the first `plan` call, so its time counts in planner_ms_per_slot.
- `skylb`: SkyLB selective pushing (threshold in pending requests per server, tuned per scenario).
- `acs`: ACS-Diffusion (adaptive cluster synchronisation over the topology, zones = pricing zones).

Policies take optional context through `prepare(history=..., oracle_demand=..., mean_prompt_tokens=...,
mean_output_tokens=..., model_share=...)` before `reset`; `torta compare` calls it.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from typing import Any

import numpy as np

from torta.plan.acs import ACSConfig, ACSDiffusion, zone_offsets
from torta.plan.alloc import PlannedAllocator, TortaAllocator, WarmLeastLoadedScan, live_lists
from torta.plan.config import MicroConfig, OTConfig
from torta.plan.fleetcost import (DEFAULT_MEAN_OUTPUT_TOKENS, DEFAULT_MEAN_PROMPT_TOKENS, region_facts,
                                  topology_edges)
from torta.plan.ot import CostInputs, cost_matrix, solve_plan, solve_tiered
from torta.plan.skylb import SkyLBRouter
from torta.policy.base import BasePolicy, SlotState
from torta.policy.registry import register
from torta.sim.cluster import build_tables


# The baselines' in-region allocator: warm least-loaded with the TORTA allocator's switching guard (see
# torta.plan.alloc.WarmLeastLoadedScan), so that every policy is compared with a strong allocator, not
# with needless reloads (DESIGN.md, Evaluation protocol). Same value as MicroConfig.switch_penalty_s.
BASELINE_SWITCH_GUARD_S = MicroConfig().switch_penalty_s


class _ContextMixin:
    """Optional run context set by `prepare` (compare) before `reset`."""

    def prepare(self, *, history: Any = None, oracle_demand: np.ndarray | None = None,
                mean_prompt_tokens: float | None = None, mean_output_tokens: float | None = None,
                model_share: np.ndarray | None = None) -> None:
        self.history = history
        self.oracle_demand = None if oracle_demand is None else np.asarray(oracle_demand, dtype=float)
        self.mean_prompt_tokens = float(mean_prompt_tokens or DEFAULT_MEAN_PROMPT_TOKENS)
        self.mean_output_tokens = float(mean_output_tokens or DEFAULT_MEAN_OUTPUT_TOKENS)
        self.model_share = model_share

    def _ctx_defaults(self) -> None:
        if not hasattr(self, "mean_prompt_tokens"):
            self.prepare()

    def params(self) -> dict:
        """Settings to record with the run (tuned values included)."""
        return {}


class OTPolicy(_ContextMixin, BasePolicy):
    """OT macro plan each slot, one transport problem per model (see torta.plan.ot).

    Per model m: source = demand of m per origin (the policy's `demand`), target = free capacity for m
    per region = servers that will hold m (SlotState.warm_servers) x one server's rate for m x the
    region's free share of the slot x `max_utilisation`; cost = latency, energy price x energy per
    request of m there, queueing delay (backlog per server), transfer. Deferred demand (beyond warm
    capacity) goes to the origin's nearest region able to serve m, where it queues and may trigger a
    model switch: capacity moves between models only under real overflow. The plans go to a
    `PlannedAllocator` (global scope), so `plan` returns None to the simulator.
    """

    name = "ot"
    description = "OT macro plan per slot and model."
    has_planner = True
    # Plan regions up to this share of their estimated free capacity. The estimate (torta.sim.cluster work
    # units) overstates saturated throughput by ~1.2x (measured: one A100/L40S/H100 server saturates at
    # 0.82x the estimate, scratch replay of 3000 requests), and queueing grows fast above ~70 % of the
    # real capacity: 0.6 x estimate = ~0.73 of real.
    max_utilisation = 0.6
    capacity_derate = 0.82  # real saturated throughput / estimate (the measurement above)
    # congestion tiers, as shares of the planned capacity. Validation (day 11, first hour, torta-ot, seed 0):
    # 5 tiers (.25/.5/.7/.85/1) / 3 tiers / 1 tier gave 17.4 / 15.8 / 17.4 s mean response; 3 tiers keep
    # the slot solve within 5 ms at 50 regions x 3 models (`torta bench plan`).
    tier_edges = (0.0, 0.5, 0.8, 1.0)

    def __init__(self, config: OTConfig | None = None, inner: str = "warm-least-loaded",
                 micro: MicroConfig | None = None) -> None:
        super().__init__()
        self.config = config or OTConfig(demand_source="last")
        if inner not in ("warm-least-loaded", "torta"):
            raise ValueError(f"inner allocator must be 'warm-least-loaded' or 'torta', got {inner!r}")
        self.inner = inner
        self.micro = micro or MicroConfig()

    def reset(self, world, seed: int) -> None:
        super().reset(world, seed)
        self._ctx_defaults()
        tables = build_tables(world)
        self.facts = region_facts(world, tables, self.mean_prompt_tokens, self.mean_output_tokens,
                                  self.model_share)
        r, m = world.n_regions, len(world.models)
        self._srv_region = list(tables.region)
        self._rate_sm = np.zeros((tables.n_servers, m))
        for sv in range(tables.n_servers):
            for mm in range(m):
                t = tables.stype[sv][mm]
                if t >= 0:
                    ty = tables.types[t]
                    work = self.mean_prompt_tokens * ty.c_prefill_s + self.mean_output_tokens * ty.c_decode_s
                    self._rate_sm[sv, mm] = 1.0 / work if work > 0 else 0.0
        inner = (TortaAllocator(self.micro) if self.inner == "torta"
                 else WarmLeastLoadedScan(BASELINE_SWITCH_GUARD_S))
        self.allocator = PlannedAllocator(inner, r, m, seed)
        if self.inner == "torta":
            self.allocator.spill_s = self.micro.spill_s
            self.allocator.spill_regions = self.micro.spill_regions
        lat = np.asarray(world.latency_ms, dtype=float)
        self._lat = lat
        self._transfer = (1.0 - np.eye(r)) * self.facts.transfer_usd_per_request
        solve_plan(np.ones(2), np.ones(2), np.zeros((2, 2)), self.config)  # warm-up: imports not charged to slots
        w = np.array([max(0.0, reg.origin_weight) for reg in world.regions])
        self._origin_w = w / w.sum() if w.sum() > 0 else np.full(r, 1.0 / r)
        self.last_plans = None
        self.deferred_requests = 0.0
        self.demand_source_used = self.config.demand_source

    def demand(self, state: SlotState, observed: np.ndarray) -> np.ndarray:
        """(R, M) demand the slot's plan is built on; `observed` = the slot just ended (at slot 0: the
        last slot of the history before the replay, where one was given)."""
        if state.slot == 0 and not observed.sum() > 0:
            last = self._history_last()
            if last is not None:
                return last
        return observed

    def _history_last(self) -> np.ndarray | None:
        h = getattr(self, "history", None)
        if h is None or h.height == 0:
            return None
        last = h.filter(h["slot"] == h["slot"].max())
        ridx = {r.name: i for i, r in enumerate(self.world.regions)}
        midx = {m: i for i, m in enumerate(self.world.models)}
        out = np.zeros((len(ridx), len(midx)))
        for series, y in last.select("series", "y").iter_rows():
            reg, _, mod = str(series).partition("|")
            if reg in ridx and mod in midx:
                out[ridx[reg], midx[mod]] += float(y)
        return out

    def plan(self, state: SlotState) -> None:
        f = self.facts
        observed = self.allocator.take_counts()
        a_rm = np.maximum(self.demand(state, observed), 0.0)
        r_n, m_n = a_rm.shape
        servers = np.maximum(f.servers, 1.0)
        free = np.clip(1.0 - state.backlog_s / (servers * state.slot_s), 0.0, 1.0)
        queue_s = state.backlog_s / servers
        plans = np.zeros((m_n, r_n, r_n))
        rows = np.arange(r_n)
        live = self.allocator.live()
        if live is not None:  # exact: each server's rate for the model it will hold, times its free share
            bu, tailm = live
            caps = np.zeros((r_n, m_n))
            t0 = state.t_start_s
            for sv in range(len(tailm)):
                mm = tailm[sv]
                if mm >= 0:
                    fr = 1.0 - max(bu[sv] - t0, 0.0) / state.slot_s
                    if fr > 0:
                        caps[self._srv_region[sv], mm] += self._rate_sm[sv, mm] * fr
            caps *= self.max_utilisation * state.slot_s
        else:
            caps = (self.max_utilisation * state.warm_servers * f.server_rps_rm * state.slot_s * free[:, None])
        if not hasattr(self, "_tier_fracs"):
            edges = np.asarray(self.tier_edges) / self.tier_edges[-1]  # tiers of the planned capacity
            self._tier_fracs = np.diff(edges)
            self._tier_rho = np.asarray(self.tier_edges[1:]) * self.max_utilisation / self.tier_edges[-1] \
                / self.capacity_derate
        if not a_rm.sum() > 0:  # nothing observed yet: prior = origin weights x half the warm capacity
            a_rm = self._origin_w[:, None] * (0.5 * caps.sum(axis=0))[None, :]
        for m in range(m_n):
            cols = np.flatnonzero(f.server_rps_rm[:, m] > 0)
            if cols.size == 0:
                plans[m, rows, rows] = 1.0  # nobody serves m: the simulator drops it with its reason
                continue
            cap = caps[cols, m]
            inputs = CostInputs(latency_ms=self._lat[:, cols], price_usd_per_mwh=state.price_usd_per_mwh[cols],
                                energy_kwh_per_request=f.energy_kwh_rm[cols, m], queue_delay_s=queue_s[cols],
                                transfer_usd_per_request=self._transfer[:, cols])
            base = cost_matrix(inputs, self.config)
            # congestion tiers: expected queueing delay rho / (1 - rho) x the request's service time at the
            # tier's real utilisation, normalised like the queue term
            delay = self._tier_rho[None, :] / (1.0 - self._tier_rho[None, :]) * f.latency_s_rm[cols, m][:, None]
            tier_cost = self.config.weights.queue * delay / (delay + self.config.queue_ref_s)
            p = solve_tiered(a_rm[:, m], cap, base, self._tier_fracs, tier_cost, self.config)
            plans[m][:, cols] = p.share
            np.add.at(plans[m], (rows, f.nearest_capable_rm[:, m]), p.defer_share)  # queued near the origin
            self.deferred_requests += p.total_deferred
        self.allocator.set_plan(plans)
        self.last_plans = plans
        return None

    def params(self) -> dict:
        w = self.config.weights
        return {"method": self.config.method, "demand_source": self.demand_source_used, "inner": self.inner,
                "w_latency": w.latency, "w_energy": w.energy, "w_queue": w.queue, "w_transfer": w.transfer,
                "max_utilisation": self.max_utilisation}


class MyopicOT(OTPolicy):
    name = "myopic-ot"
    description = "OT plan per model on the slot just observed (no forecast, no RL); warm least-loaded inside."

    def __init__(self) -> None:
        super().__init__(OTConfig(demand_source="last"), inner="warm-least-loaded")


class TortaOT(OTPolicy):
    name = "torta-ot"
    description = "OT plan per model on forecast demand (day-ahead, corrected online) + the TORTA micro allocator."
    correction_alpha = 0.3  # EWMA weight of the observed/forecast ratio per (origin, model)

    def __init__(self, demand_source: str = "forecast", micro: MicroConfig | None = None) -> None:
        super().__init__(OTConfig(demand_source=demand_source), inner="torta", micro=micro)

    def reset(self, world, seed: int) -> None:
        super().reset(world, seed)
        self._ratio = np.ones((world.n_regions, len(world.models)))
        self._prev_fc = None
        self._fc = None
        self.forecast_s = 0.0
        if self.config.demand_source == "oracle" and self.oracle_demand is None:
            self.demand_source_used = "last (no oracle demand given)"
        if self.config.demand_source == "forecast":
            # day-ahead forecast before the replay starts (uses only the history before t = 0); its time is
            # reported as forecast_s, not in planner_ms_per_slot (the per-slot decision time)
            t0 = time.perf_counter()
            horizon = len(self.oracle_demand) if self.oracle_demand is not None else 96
            self._fc = self._forecast(max(horizon, 1))
            self.forecast_s = time.perf_counter() - t0
            if self._fc is None:
                self._fc = False
                self.demand_source_used = "last (no history to forecast from)"

    def _forecast(self, horizon: int) -> np.ndarray | None:
        """(H, R, M) day-ahead forecast from `history` (series "region|model", slot, y)."""
        from torta.forecast import forecast

        h = self.history
        if h is None or h.height == 0:
            return None
        fc = forecast(h, horizon, slot_s=float(self.world.slot_s))
        last = int(h["slot"].max())
        ridx = {r.name: i for i, r in enumerate(self.world.regions)}
        midx = {m: i for i, m in enumerate(self.world.models)}
        out = np.zeros((horizon, len(ridx), len(midx)))
        for series, slot, mean in fc.select("series", "slot", "mean").iter_rows():
            reg, _, mod = str(series).partition("|")
            if reg in ridx and mod in midx:
                out[slot - last - 1, ridx[reg], midx[mod]] += max(0.0, float(mean))
        return out

    def demand(self, state: SlotState, observed: np.ndarray) -> np.ndarray:
        src = self.config.demand_source
        t = state.slot
        if src == "oracle" and self.oracle_demand is not None:
            return self.oracle_demand[min(t, len(self.oracle_demand) - 1)]
        if src == "forecast":
            if self._fc is not None and self._fc is not False:
                if t > 0 and self._prev_fc is not None:
                    ok = self._prev_fc > 0
                    ratio = np.where(ok, observed / np.where(ok, self._prev_fc, 1.0), 1.0)
                    self._ratio = (1 - self.correction_alpha) * self._ratio + self.correction_alpha * ratio
                f = self._fc[min(t, len(self._fc) - 1)]
                self._prev_fc = f
                return f * np.clip(self._ratio, 0.5, 2.0)
        return super().demand(state, observed)

    def params(self) -> dict:
        return {**super().params(), "forecast_s": float(getattr(self, "forecast_s", 0.0)),
                "switch_penalty_s": self.micro.switch_penalty_s}


class _RegionFirstAllocator:
    """Base of allocators that pick a region themselves (global scope), then warm least-loaded inside."""

    def __init__(self) -> None:
        self._wll = WarmLeastLoadedScan(BASELINE_SWITCH_GUARD_S)
        self._view_id = None

    def _in_region(self, view, request, r: int) -> int:
        s = self._wll.pick(view, request, r)
        if s >= 0:
            return s
        for r2 in view.tables.near[request.origin][request.model]:  # region cannot hold it: nearest that can
            s = self._wll.pick(view, request, r2)
            if s >= 0:
                return s
        raise ValueError(f"no server can hold request {request.request_id}")


class SkyLBAllocator(_RegionFirstAllocator):
    """Region by SkyLB's rule over pending requests per server (refreshed from the simulator every
    `refresh_s` of simulated time, counting own assignments in between), then warm least-loaded."""

    def __init__(self, threshold: float, refresh_s: float = 1.0) -> None:
        super().__init__()
        self.threshold = float(threshold)
        self.refresh_s = refresh_s

    def _setup(self, view) -> None:
        t = view.tables
        lat = np.asarray(t.latency_s, dtype=float)
        dc = np.array([len(x) > 0 for x in t.servers_in_region])
        self.router = SkyLBRouter(lat, dc, self.threshold)
        self._inv = [1.0 / len(x) if x else 0.0 for x in t.servers_in_region]
        self._sir = t.servers_in_region
        _, _, self._nact, self._q = live_lists(view)
        self._pending = np.zeros(t.n_regions)
        self._next = -math.inf
        self._view_id = id(view)

    def choose(self, view, request, region):
        if self._view_id != id(view):
            self._setup(view)
        now = view.now_s
        if now >= self._next:
            q, nact = self._q, self._nact
            self._pending[:] = [sum(len(q[s]) + nact[s] for s in ss) * inv
                                for ss, inv in zip(self._sir, self._inv)]
            self._next = now + self.refresh_s
        r = self.router.route(request.origin, self._pending) if region is None else region
        self._pending[r] += self._inv[r]
        return self._in_region(view, request, r)


class SkyLB(_ContextMixin, BasePolicy):
    name = "skylb"
    description = ("SkyLB (arXiv 2505.24095): local first; push to the least-pending region when local pending "
                   "per server exceeds a threshold tuned per scenario.")
    has_planner = False
    default_threshold = 2.0  # pending requests per server; replaced by tuning where a training window exists

    def __init__(self, threshold: float | None = None) -> None:
        super().__init__()
        self.threshold = self.default_threshold if threshold is None else float(threshold)
        self.tuned = threshold is not None
        self.allocator = SkyLBAllocator(self.threshold)

    def reset(self, world, seed: int) -> None:
        super().reset(world, seed)
        self.allocator = SkyLBAllocator(self.threshold)

    def params(self) -> dict:
        return {"threshold_pending_per_server": self.threshold, "tuned": self.tuned}


class ACSAllocator(_RegionFirstAllocator):
    """ACS-Diffusion in the replay, one diffusion layer per model over the regions able to serve it.

    Every `control_s` of simulated time: the potential of (region r, model m) is the expected wait of an
    m request there (the warm least-loaded cost: backlog, plus the load time where no server holds m)
    over `u_ref_s`, plus the zone's price offset; each model's intra-zone gains adapt and its new
    arrivals at each region are redirected along the coupling edges by the flow shares (a seeded draw).
    Then warm least-loaded inside the chosen region. Capacities mu: the summed rate of the region's
    servers able to serve m."""

    def __init__(self, config: ACSConfig, zones: np.ndarray, theta: np.ndarray, facts, edges, seed: int,
                 rate_sm: np.ndarray, control_s: float = 5.0, u_ref_s: float = 10.0) -> None:
        super().__init__()
        self.config, self.zones, self.theta, self.facts, self.edges = config, zones, theta, facts, edges
        self.rate_sm = rate_sm
        self.control_s, self.u_ref_s = control_s, u_ref_s
        self._rng = random.Random(seed)

    def _setup(self, view) -> None:
        t = view.tables
        lat_all = np.asarray(t.latency_s, dtype=float) * 1000.0
        self._bu, self._tailm, _, _ = live_lists(view)
        self.layers = []  # per model: (regions, ACSDiffusion, servers per region, loads, local index)
        for m in range(t.n_models):
            regs = np.array([r for r in range(t.n_regions) if t.capable[r][m]], dtype=np.int64)
            if regs.size == 0:
                self.layers.append(None)
                continue
            pos = {int(r): k for k, r in enumerate(regs)}
            mu = np.array([sum(self.rate_sm[s, m] for s in t.capable[r][m]) for r in regs])
            edges = [(pos[i], pos[j]) for i, j in self.edges if i in pos and j in pos]
            zones = self.zones[regs]
            _, zones = np.unique(zones, return_inverse=True)  # dense zone ids within the layer
            theta = np.array([self.theta[self.zones[regs][zones == k][0]] for k in range(int(zones.max()) + 1)])
            acs = ACSDiffusion(mu, zones, lat_all[np.ix_(regs, regs)], edges, theta, self.config)
            cands = [[(s, t.types[t.stype[s][m]].load_s) for s in t.capable[r][m]] for r in regs]
            local = [pos[t.near[o][m][0]] if t.near[o][m] else 0 for o in range(t.n_regions)]
            n = regs.size
            self.layers.append({"regs": regs.tolist(), "acs": acs, "cands": cands, "local": local,
                                "arr": np.zeros(n), "lam": mu * 0.5, "cum": [[1.0] * n for _ in range(n)],
                                "stay": [True] * n})
        self._next = -math.inf
        self._last = 0.0
        self.redirected = 0
        self._view_id = id(view)

    def _control(self, now: float) -> None:
        bu, tailm = self._bu, self._tailm
        dt = now - self._last if self._last > 0 else self.control_s
        for m, layer in enumerate(self.layers):
            if layer is None:
                continue
            u = np.array([min(max(bu[s] - now, 0.0) + (load if tailm[s] != m else 0.0) for s, load in cs)
                          for cs in layer["cands"]]) / self.u_ref_s
            if dt > 0:
                layer["lam"] = 0.5 * layer["lam"] + 0.5 * layer["arr"] / dt
            layer["arr"][:] = 0.0
            acs = layer["acs"]
            acs.adapt(u, min(dt, self.control_s) if dt > 0 else self.control_s)
            share = acs.redirect_shares(u, layer["lam"])
            layer["stay"] = [bool(share[i, i] >= 1.0 - 1e-12) for i in range(share.shape[0])]
            layer["cum"] = np.cumsum(share, axis=1).tolist()
        self._last = now
        self._next = now + self.control_s

    def choose(self, view, request, region):
        if self._view_id != id(view):
            self._setup(view)
        now = view.now_s
        if now >= self._next:
            self._control(now)
        layer = self.layers[request.model]
        if region is None and layer is not None:
            i = layer["local"][request.origin]
            layer["arr"][i] += 1.0
            k = i
            if not layer["stay"][i]:
                row = layer["cum"][i]
                k = min(bisect.bisect_right(row, self._rng.random() * row[-1]), len(row) - 1)
                if k != i:
                    self.redirected += 1
            region = layer["regs"][k]
        elif region is None:
            region = int(self.facts.nearest_dc[request.origin])
        return self._in_region(view, request, region)


# ACS validation sweep (day 11, first hour, servegen-mix-14d on abilene, seed 0; mean response): defaults
# 93.9 s; control 1 s 123.8; u_ref 2 s 81.8; g0 0.2 / g_max 20 117.5; all three 99.7; kappa 0 76.8. Peer
# diffusion moves load one hop per step and stays far behind dispatching policies (least-loaded ~14 s),
# as topologies-and-sync.md §4.5 (iii) anticipates; the defaults (the notes' values) are kept.
class ACS(_ContextMixin, BasePolicy):
    name = "acs"
    description = ("Adaptive cluster-synchronisation diffusion (arXiv:0912.2418): zones = pricing zones, "
                   "adaptive intra-zone gains, OT inter-zone coupling meeting the common-coupling condition.")
    has_planner = False

    def __init__(self, config: ACSConfig | None = None, zone_by: str = "market") -> None:
        super().__init__()
        if zone_by not in ("market", "gpu"):
            raise ValueError(f"zone_by must be 'market' or 'gpu', got {zone_by!r}")
        self.config = config or ACSConfig()
        self.zone_by = zone_by

    def reset(self, world, seed: int) -> None:
        super().reset(world, seed)
        self._ctx_defaults()
        tables = build_tables(world)
        facts = region_facts(world, tables, self.mean_prompt_tokens, self.mean_output_tokens, self.model_share)
        if self.zone_by == "market":
            keys = [r.market or r.name for r in world.regions]
        else:  # majority GPU type of the region's servers
            keys = []
            for r in range(world.n_regions):
                g = [world.servers[s].gpu for s in tables.servers_in_region[r]]
                keys.append(max(sorted(set(g)), key=g.count) if g else "-")
        names = sorted(set(k for k, h in zip(keys, facts.has_servers) if h))
        idx = {k: i for i, k in enumerate(names)}
        zones = np.array([idx.get(k, 0) for k in keys], dtype=np.int64)
        hour = world.start_hour_of_year % world.price_usd_per_mwh.shape[1]
        price = np.asarray(world.price_usd_per_mwh[:, hour:hour + 24].mean(axis=1), dtype=float)
        dc = facts.has_servers
        theta = zone_offsets(zones[dc], price[dc], self.config.kappa)
        if theta.size < len(names):
            theta = np.concatenate([theta, np.zeros(len(names) - theta.size)])
        self.zone_names = names
        rate_sm = np.zeros((tables.n_servers, tables.n_models))
        for sv in range(tables.n_servers):
            for mm in range(tables.n_models):
                if tables.stype[sv][mm] >= 0:
                    ty = tables.types[tables.stype[sv][mm]]
                    work = self.mean_prompt_tokens * ty.c_prefill_s + self.mean_output_tokens * ty.c_decode_s
                    rate_sm[sv, mm] = 1.0 / work if work > 0 else 0.0
        self.allocator = ACSAllocator(self.config, zones, theta, facts, topology_edges(world.latency_ms), seed,
                                      rate_sm)

    def params(self) -> dict:
        c = self.config
        return {"zones": getattr(self, "zone_names", []), "zone_by": self.zone_by, "inter_mode": c.inter_mode,
                "g0": c.g0, "eta": c.eta, "sigma": c.sigma, "g_max": c.g_max, "kappa": c.kappa}


class TortaOTOracle(TortaOT):
    name = "torta-ot-oracle"
    description = "Ablation of torta-ot: OT on the true demand of each slot (oracle forecast)."

    def __init__(self) -> None:
        super().__init__(demand_source="oracle")


class TortaOTLast(TortaOT):
    name = "torta-ot-last"
    description = "Ablation of torta-ot: OT on the slot just observed (no forecast) + the TORTA micro allocator."

    def __init__(self) -> None:
        super().__init__(demand_source="last")


for _cls in (MyopicOT, TortaOT, TortaOTOracle, TortaOTLast, SkyLB, ACS):
    register(_cls.name, _cls, _cls.description)
