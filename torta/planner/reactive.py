"""Reactive baselines with their own region choice: `skylb` and `acs` (see torta.planner.register)."""

from __future__ import annotations

import bisect
import math
import random

import numpy as np

from torta.planner.acs import ACSConfig, ACSDiffusion, zone_offsets
from torta.allocator.greedy import live_lists
from torta.planner.fleetcost import region_facts, topology_edges
from torta.planner.context import ContextMixin, RegionFirstAllocator
from torta.planner.skylb import SkyLBRouter
from torta.policy.base import BasePolicy
from torta.sim.cluster import build_tables


class SkyLBAllocator(RegionFirstAllocator):
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
        _, _, self._nact, self._qlen = live_lists(view)
        self._pending = np.zeros(t.n_regions)
        self._next = -math.inf
        # under the information model (torta.sim.infomodel) each origin's gateway keeps its own pending
        # counts, refreshed from what it perceives; without it one shared vector (instant global state)
        self._per_gateway = bool(getattr(view, "per_gateway", False))
        self._gw = {}  # origin -> [pending, next refresh time]
        self._view_id = id(view)

    def choose(self, view, request, region):
        if self._view_id != id(view):
            self._setup(view)
        now = view.now_s
        if self._per_gateway:
            gw = self._gw.get(request.origin)
            if gw is None:
                gw = self._gw[request.origin] = [np.zeros(len(self._sir)), -math.inf]
            pending = gw[0]
            if now >= gw[1]:
                self._refresh(pending)
                gw[1] = now + self.refresh_s
        else:
            pending = self._pending
            if now >= self._next:
                self._refresh(pending)
                self._next = now + self.refresh_s
        r = self.router.route(request.origin, pending) if region is None else region
        pending[r] += self._inv[r]
        return self._in_region(view, request, r)

    def _refresh(self, pending) -> None:
        qlen, nact = self._qlen, self._nact
        pending[:] = [sum(qlen(s) + nact[s] for s in ss) * inv for ss, inv in zip(self._sir, self._inv)]


class SkyLB(ContextMixin, BasePolicy):
    name = "skylb"
    description = ("SkyLB (arXiv 2505.24095): local first; push to the least-pending region when local pending "
                   "per server exceeds a threshold tuned per scenario.")
    has_planner = False
    default_threshold = 2.0
    """Pending requests per server; replaced by the threshold tuned on the validation day where the
    workload has one (torta.runs.execute.tune_skylb)."""

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


class ACSAllocator(RegionFirstAllocator):
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
class ACS(ContextMixin, BasePolicy):
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


