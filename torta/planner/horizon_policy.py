"""`torta-horizon`: the receding-horizon macro planner (torta.planner.horizon) + the target-following
micro allocator (torta.allocator.targets)."""

from __future__ import annotations

import numpy as np

from torta.allocator.config import MicroConfig, TargetConfig
from torta.allocator.greedy import PlannedAllocator
from torta.allocator.targets import TargetAllocator
from torta.planner.config import HorizonConfig
from torta.planner.horizon import HorizonInputs, HorizonLP, new_highs
from torta.planner.ot_policy import TortaOT
from torta.policy.base import SlotState
from torta.sim.cluster import build_tables


class TortaHorizon(TortaOT):
    """Every slot: the next H slots of demand (torta-ot's day-ahead forecast, fit once in `reset` over the
    history before the replay and corrected online by the EWMA observed / forecast ratio; or the oracle /
    the slot just observed) go into one LP that decides per slot the flows of each origin's demand per
    model AND the servers per region holding each model, switches charged once (torta.planner.horizon).
    Slot 0's flows become the routing plan (a `PlannedAllocator`, global scope, with torta-ot's
    spill-over), slot 0's placement the micro layer's targets (`TargetAllocator`); next slot, again.

    Validation day 11 (abilene, servegen-mix-14d, the whole day after 2 h of warm-up, S = 5 s, seed 0), with
    the switch charge and the planned utilisation tuned there (HorizonConfig.switch_cost = 360,
    max_utilisation = 0.4; docs/data/tune-horizon-switching.json, tune-horizon-utilisation.json): mean
    response 6.74 s against least-loaded-d4's 5.53 s, 98 model switches against its 57, cost $49.23
    against $47.43 (validation numbers, not the test days)."""

    name = "torta-horizon"
    description = ("Receding-horizon LP (HiGHS) over the next 2 h of forecast demand: flows and servers per "
                   "model per region, switches charged once; the micro layer pre-loads to the plan's targets.")

    # The defaults an ablation (below) overrides, one each.
    default_config = HorizonConfig()
    default_demand_source = "forecast"
    default_targets = TargetConfig()

    def __init__(self, config: HorizonConfig | None = None, demand_source: str | None = None,
                 micro: MicroConfig | None = None, targets: TargetConfig | None = None) -> None:
        super().__init__(demand_source=demand_source or self.default_demand_source, micro=micro)
        self.hconfig = config or self.default_config
        self.tconfig = targets or self.default_targets

    def _forecast(self, horizon: int) -> np.ndarray | None:
        return super()._forecast(horizon + self.hconfig.horizon_slots)  # the last slot's horizon too

    def reset(self, world, seed: int) -> None:
        super().reset(world, seed)
        tables = build_tables(world)
        r_n, m_n = world.n_regions, len(world.models)
        self.allocator = PlannedAllocator(TargetAllocator(self.micro, self.tconfig), r_n, m_n, seed)
        self.allocator.spill_s = self.micro.spill_s
        self.allocator.spill_regions = self.micro.spill_regions
        capable = np.zeros((r_n, m_n))
        load = np.zeros((r_n, m_n))
        gpu_s = np.zeros((r_n, m_n))
        servers = np.zeros(r_n)
        for r in range(r_n):
            for m in range(m_n):
                ss = tables.capable[r][m]
                capable[r, m] = len(ss)
                if ss:
                    load[r, m] = float(np.mean([tables.types[tables.stype[s][m]].load_s for s in ss]))
                    gpu_s[r, m] = float(np.mean([tables.types[tables.stype[s][m]].load_s * tables.tp[s] for s in ss]))
            servers[r] = sum(1 for s in tables.servers_in_region[r] if any(t >= 0 for t in tables.stype[s]))
        self._capable, self._load_rm, self._gpu_s_rm, self._servers_any = capable, load, gpu_s, servers
        self._lp = HorizonLP(np.asarray(world.latency_ms, dtype=float), capable, self.hconfig)
        new_highs()  # warm-up: the solver's first construction not charged to slot 0
        self.lp_failures = 0
        self.planned_switches = 0.0
        self.lp_ms: list[float] = []

    def _horizon_demand(self, state: SlotState, first: np.ndarray) -> np.ndarray:
        """(H, R, M): slot 0 = `first` (what torta-ot plans on), then the same source ahead."""
        h_n, t = self.hconfig.horizon_slots, state.slot
        out = np.repeat(first[None], h_n, axis=0)
        src = self.config.demand_source
        if src == "oracle" and self.oracle_demand is not None:
            n = len(self.oracle_demand)
            for h in range(1, h_n):
                out[h] = self.oracle_demand[min(t + h, n - 1)]
        elif src == "forecast" and self._fc is not None and self._fc is not False:
            n, ratio = len(self._fc), np.clip(self._ratio, 0.5, 2.0)
            for h in range(1, h_n):
                out[h] = self._fc[min(t + h, n - 1)] * ratio
        return np.maximum(out, 0.0)

    def _prices(self, state: SlotState, h_n: int) -> np.ndarray:
        w = self.world
        cols = w.price_usd_per_mwh.shape[1]
        hours = [(w.start_hour_of_year + int((state.t_start_s + (h + 0.5) * state.slot_s) // 3600)) % cols
                 for h in range(h_n)]
        out = np.asarray(w.price_usd_per_mwh[:, hours], dtype=float).T
        out[0] = state.price_usd_per_mwh
        return out

    def plan(self, state: SlotState) -> None:
        f = self.facts
        observed = self.allocator.take_counts()
        dem = self._horizon_demand(state, np.maximum(self.demand(state, observed), 0.0))
        h_n = dem.shape[0]
        servers = np.maximum(f.servers, 1.0)
        if not dem.sum() > 0:  # nothing observed yet: prior = origin weights x half the warm capacity
            warm_cap = (state.warm_servers * f.server_rps_rm).sum(axis=0) * state.slot_s * self.hconfig.max_utilisation
            dem[:] = self._origin_w[None, :, None] * 0.5 * warm_cap[None, None, :]
        inp = HorizonInputs(
            demand=dem, latency_ms=self._lat, price_usd_per_mwh=self._prices(state, h_n),
            energy_kwh_rm=f.energy_kwh_rm, server_rps_rm=f.server_rps_rm, service_s_rm=f.latency_s_rm,
            load_s_rm=self._load_rm, capable_rm=self._capable, servers=self._servers_any,
            placement=np.minimum(state.warm_servers, self._capable), slot_s=state.slot_s,
            free_share=np.clip(1.0 - state.backlog_s / (servers * state.slot_s), 0.0, 1.0),
            queue_delay_s=state.backlog_s / servers, transfer_usd_per_request=f.transfer_usd_per_request,
            switch_gpu_s_rm=self._gpu_s_rm)
        p = self._lp.solve(inp)
        self.lp_ms.append(p.solve_ms)
        if p.status != 0:
            self.lp_failures += 1
        plans = p.shares()
        self.allocator.set_plan(plans)
        self.allocator.inner.set_targets(p.targets, state.warm_servers)
        self.last_plans = plans
        self.deferred_requests += float(p.defer[0].sum())
        self.planned_switches += float(p.switches[0].sum())
        return None

    def params(self) -> dict:
        c, t = self.hconfig, self.tconfig
        inner = getattr(getattr(self, "allocator", None), "inner", None)
        ms = np.asarray(getattr(self, "lp_ms", []) or [0.0])
        # max_utilisation: the LP's (HorizonConfig), not the OT policy's class attribute that super() records
        return {**super().params(), "max_utilisation": c.max_utilisation, "horizon_slots": c.horizon_slots,
                "k_nearest": c.k_nearest,
                "switch_cost": c.switch_cost,
                "switch_cost_per_gpu_s": c.switch_cost_per_gpu_s, "defer_cost": c.defer_cost, "switch_margin_s": t.switch_margin_s,
                "preload": t.preload, "preloads": int(getattr(inner, "preloads", 0)),
                "planned_switches": float(getattr(self, "planned_switches", 0.0)),
                "lp_failures": int(getattr(self, "lp_failures", 0)),
                "lp_ms_median": float(np.median(ms)), "lp_ms_p95": float(np.percentile(ms, 95))}


# Ablations of torta-horizon (issue 18, item 5): each changes one setting and keeps every other default, so
# a pair (variant, torta-horizon) on the same cell isolates it. torta-horizon itself is H = 8, the
# forecast, pre-loading on (`torta experiment ablation` pairs each variant against it).


class TortaHorizonH1(TortaHorizon):
    name = "torta-horizon-h1"
    description = "Ablation of torta-horizon: H = 1 (myopic: plans only the slot it applies, same forecast)."
    default_config = HorizonConfig(horizon_slots=1)


class TortaHorizonH4(TortaHorizon):
    name = "torta-horizon-h4"
    description = "Ablation of torta-horizon: H = 4 slots (1 h) instead of 8."
    default_config = HorizonConfig(horizon_slots=4)


class TortaHorizonH12(TortaHorizon):
    name = "torta-horizon-h12"
    description = "Ablation of torta-horizon: H = 12 slots (3 h) instead of 8, one LP row per slot."
    default_config = HorizonConfig(horizon_slots=12)


class TortaHorizonOracle(TortaHorizon):
    name = "torta-horizon-oracle"
    description = "Ablation of torta-horizon: plans on the true demand of the next H slots (oracle forecast)."
    default_demand_source = "oracle"


class TortaHorizonLast(TortaHorizon):
    name = "torta-horizon-last"
    description = ("Ablation of torta-horizon: persistence, the slot just observed repeated over the "
                   "horizon (no forecast).")
    default_demand_source = "last"


class TortaHorizonNoPreload(TortaHorizon):
    name = "torta-horizon-no-preload"
    description = ("Ablation of torta-horizon: no pre-loading; the plan's targets only shape the micro "
                   "layer's switching costs (TargetConfig.preload = False).")
    default_targets = TargetConfig(preload=False)


HORIZON_ABLATIONS = (TortaHorizonH1, TortaHorizonH4, TortaHorizonH12, TortaHorizonOracle, TortaHorizonLast,
                     TortaHorizonNoPreload)
