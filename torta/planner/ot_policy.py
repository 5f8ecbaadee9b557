"""OT-planned policies: `myopic-ot`, `torta-ot` and its ablations (see torta.planner.register)."""

from __future__ import annotations

import time

import numpy as np

from torta.allocator.greedy import PlannedAllocator, TortaAllocator, WarmLeastLoadedScan
from torta.allocator.batch import HungarianPlannedAllocator
from torta.allocator.config import MicroConfig
from torta.planner.config import OTConfig
from torta.planner.fleetcost import region_facts
from torta.planner.ot import CostInputs, cost_matrix, solve_plan, solve_tiered
from torta.planner.context import BASELINE_SWITCH_GUARD_S, ContextMixin
from torta.policy.base import BasePolicy, SlotState
from torta.sim.cluster import build_tables


class OTPolicy(ContextMixin, BasePolicy):
    """OT macro plan each slot, one transport problem per model (see torta.planner.ot).

    Per model m: source = demand of m per origin (the policy's `demand`), target = free capacity for m
    per region = servers that will hold m (SlotState.warm_servers) x one server's rate for m x the
    region's free share of the slot x `max_utilisation`; cost = latency, energy price x energy per
    request of m there, queueing delay (backlog per server), transfer. Deferred demand (beyond warm
    capacity) goes to the origin's nearest region able to serve m, where it queues and may trigger a
    model switch: capacity moves between models only under real overflow. The plans go to a
    `PlannedAllocator` (global scope), so `plan` returns None to the simulator: routing at the origin is
    what lets the micro layer spill a request over to a nearby region when its planned one is saturated
    (MicroConfig.spill_s), which a region-scoped allocator may not do. Returning the (M, R, R) plans
    through the seam instead (tried for issue 16, not kept) lost that spill-over:
    torta-ot's mean response on the first hour of day 12 (abilene, seeds 0/1) went from 13.1/17.5 s to
    381.7/355.0 s. The recorder still sees the plans (`allocator.last_plans`, torta.runs.planlog).
    """

    name = "ot"
    description = "OT macro plan per slot and model."
    has_planner = True
    max_utilisation = 0.6
    """Plan regions up to this share of their estimated free capacity. The estimate (torta.sim.cluster work
    units) overstates saturated throughput (see `capacity_derate`), and queueing grows fast above ~70 %
    of the real capacity: 0.6 x the estimate is ~0.73 of the real one."""
    capacity_derate = 0.82
    """Real saturated throughput over the estimate: one A100 / L40S / H100 server saturates at 0.82x it
    (measured on a scratch replay of 3,000 requests)."""
    tier_edges = (0.0, 0.5, 0.8, 1.0)
    """Congestion tiers, as shares of the planned capacity. Validation day 11 (first hour, torta-ot,
    seed 0): 5 tiers (.25/.5/.7/.85/1) / these 3 / 1 tier gave 17.4 / 15.8 / 17.4 s mean response; 3 tiers
    keep the slot's solve within 5 ms at 50 regions x 3 models (`torta bench plan`)."""

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
    correction_alpha = 0.3
    """EWMA weight of the observed / forecast ratio per (origin, model) that corrects the forecast online."""

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

    def missing_inputs(self) -> list[str]:
        src = self.config.demand_source
        h = getattr(self, "history", None)
        if src == "forecast" and (h is None or h.height == 0):
            return ["the demand history before the replay (to forecast from)"]
        if src == "oracle" and getattr(self, "oracle_demand", None) is None:
            return ["the true demand of each slot (oracle demand)"]
        return []

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


class TortaOTHungarian(TortaOT):
    """torta-ot with the Hungarian batch-window micro allocator (torta.allocator.batch) instead of the
    greedy per-request one: the same forecast-driven OT plan and spill-over rule; inside the serving
    region, the requests reaching it within `batch_window_s` (window opened by the first of them; at most
    `batch_max_requests`) are assigned jointly at the window's close. The wait in the window counts in
    the response time. `batch_window_s` = 0 is torta-ot exactly."""

    name = "torta-ot-hungarian"
    description = ("Ablation of torta-ot: same OT plan; Hungarian min-cost assignment of each region's "
                   "requests over a short batch window instead of the greedy per-request allocator.")

    def __init__(self, demand_source: str = "forecast", micro: MicroConfig | None = None,
                 batch_window_s: float | None = None, batch_max_requests: int | None = None,
                 max_switches: int | None = 1) -> None:
        super().__init__(demand_source=demand_source, micro=micro)
        self.batch_window_s = float(self.micro.hungarian_window_s if batch_window_s is None else batch_window_s)
        self.batch_max_requests = int(self.micro.hungarian_max_batch if batch_max_requests is None
                                      else batch_max_requests)
        self.max_switches = max_switches

    def reset(self, world, seed: int) -> None:
        super().reset(world, seed)
        per_request = self.allocator
        alloc = HungarianPlannedAllocator(per_request.inner, world.n_regions, len(world.models), seed,
                                          self.batch_window_s, self.batch_max_requests, self.max_switches)
        alloc.spill_s, alloc.spill_regions = per_request.spill_s, per_request.spill_regions
        self.allocator = alloc

    def params(self) -> dict:
        a = self.allocator
        extra = (a.stats() if isinstance(a, HungarianPlannedAllocator) else
                 {"batch_window_s": self.batch_window_s, "batch_max_requests": self.batch_max_requests})
        return {**super().params(), **extra}
