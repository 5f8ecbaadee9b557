"""Slot-level surrogate of the fleet, vectorised across B environments (numpy, batch first).

One step = one macro slot (`fleet.slot_s`, 900 s). Per region j and slot (DESIGN.md, Macro layer):
- arrivals: the workload's requests per origin and model (`load_demand`) routed by the plan P[i, j]
  (the same plan row for every model; a model region j cannot serve goes to the origin's nearest region
  that can, as the simulator re-routes it);
- service capacity: servers x slot x `capacity_derate` server-seconds of estimated work (the latency
  model's per-token costs, `torta.planner.fleetcost.region_facts`); work beyond it is carried to the next
  slot as backlog W_j;
- response time of a request from i served in j for model m: 2 x latency_ij (the simulator counts the
  forward and the return path) + the unloaded latency x (1 + rho_j) (decode slows as batches grow) +
  an M/M/c queueing wait (Sakasegawa's approximation, c = servers, rho_j = arrived work / capacity,
  capped at 0.98) + the fluid wait behind the backlog (mean of the backlog at the slot's start and end,
  drained at the region's capacity);
- utilisation = served work / (servers x slot), the simulator's definition (`torta.sim.accounting`);
- load imbalance = server-weighted standard deviation of the regions' utilisation;
- cost = energy per request x price + inter-region transfer per request (the plan-dependent part of the
  run's cost; idle energy does not depend on the plan);
- plan churn = demand-weighted mean over origins of half the L1 distance between consecutive plans.

Action: per-origin logits delta (R x R). The plan is the row softmax of base + delta, where base is
log(P_OT + eps) (the OT plan of the slot, `ot_plan`) for the OT-supervised variants and 0 for `ppo-only`.
Reward = -(w_rt RT/RT_ref + w_lb LB/LB_ref + w_cost C/C_ref + w_churn churn), the references being the
day's means under the myopic OT plan run through the same surrogate (computed once per episode day).

State (`build_obs`): recent demand per origin (`history_slots`), forecast demand per origin
(`horizon_slots`, `seasonal_forecast`; the last observed slot repeated when `use_forecast` is off),
utilisation and backlog per region, servers per region, current and next prices, the previous plan, the
base (OT) plan, time-of-day sin/cos.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from torta.planner.config import OTConfig
from torta.planner.ot import CostInputs, cost_matrix, solve_tiered
from torta.planner.register import OTPolicy
from torta.rl.fleet import SurrogateFleet, seasonal_forecast

_OT_CONFIG = OTConfig(demand_source="last")
_TIER_EDGES = np.asarray(OTPolicy.tier_edges, dtype=float)
_TIER_FRACS = np.diff(_TIER_EDGES / _TIER_EDGES[-1])
_TIER_RHO = _TIER_EDGES[1:] * OTPolicy.max_utilisation / _TIER_EDGES[-1] / OTPolicy.capacity_derate


@dataclass(frozen=True)
class EnvConfig:
    """Surrogate settings. Reward weights: paper-torta.md §8 (w_rt 1, w_lb 0.5, w_cost 0.5, w_churn 0.1;
    a recommendation, not a paper number)."""

    history_slots: int = 4
    horizon_slots: int = 4
    w_rt: float = 1.0
    w_lb: float = 0.5
    w_cost: float = 0.5
    w_churn: float = 0.1
    use_forecast: bool = True  # False: the forecast features repeat the last observed slot, OT plans on it
    ot_base: bool = True  # plan = softmax(log(P_OT + eps) + delta); False: softmax(delta), no OT input
    base_eps: float = 0.02
    demand_noise: float = 0.0  # log-normal sigma of a per-(episode, origin) demand scale in training

    def __post_init__(self) -> None:
        if self.history_slots < 1 or self.horizon_slots < 1:
            raise ValueError("history_slots and horizon_slots must be >= 1")
        for n in ("w_rt", "w_lb", "w_cost", "w_churn", "base_eps", "demand_noise"):
            if not getattr(self, n) >= 0:
                raise ValueError(f"EnvConfig.{n} must be >= 0, got {getattr(self, n)!r}")


def obs_dim(n_regions: int, cfg: EnvConfig) -> int:
    r = n_regions
    return r * (cfg.history_slots + cfg.horizon_slots) + 5 * r + 2 * r * r + 2


def ot_plan(fleet: SurrogateFleet, demand_r: np.ndarray, backlog_s: np.ndarray, price: np.ndarray) -> np.ndarray:
    """The myopic OT plan (R, R) on aggregate demand, as `torta.planner.register.OTPolicy` builds it for one
    model: capacity = max_utilisation x the region's rate x its free share of the slot, cost = latency,
    energy price, queueing delay and transfer, three congestion tiers, deferred demand queued at the
    origin's nearest region. One env: demand_r (R,), backlog_s (R,), price (R,)."""
    r_n = fleet.n_regions
    servers = np.maximum(fleet.servers, 1.0)
    free = np.clip(1.0 - backlog_s / (servers * fleet.slot_s), 0.0, 1.0)
    cap = OTPolicy.max_utilisation * fleet.capacity_rps * fleet.slot_s * free
    cols = np.flatnonzero(fleet.capacity_rps > 0)
    a = np.maximum(np.asarray(demand_r, dtype=float), 0.0)
    if not a.sum() > 0:
        a = np.ones(r_n)
    lat_s = np.where(fleet.rps_rm > 0, fleet.lat_s_rm, 0).sum(1) / np.maximum((fleet.rps_rm > 0).sum(1), 1)
    transfer = (1.0 - np.eye(r_n)) * fleet.transfer_usd_per_request
    inputs = CostInputs(latency_ms=fleet.latency_ms[:, cols], price_usd_per_mwh=price[cols],
                        energy_kwh_per_request=fleet.energy_kwh_per_request[cols],
                        queue_delay_s=(backlog_s / servers)[cols], transfer_usd_per_request=transfer[:, cols])
    base = cost_matrix(inputs, _OT_CONFIG)
    delay = _TIER_RHO[None, :] / (1.0 - _TIER_RHO[None, :]) * lat_s[cols][:, None]
    tier_cost = _OT_CONFIG.weights.queue * delay / (delay + _OT_CONFIG.queue_ref_s)
    p = solve_tiered(a, cap[cols], base, _TIER_FRACS, tier_cost, _OT_CONFIG)
    out = np.zeros((r_n, r_n))
    out[:, cols] = p.share
    near = np.argmin(np.where(fleet.capacity_rps[None, :] > 0, fleet.latency_ms, np.inf), axis=1)
    out[np.arange(r_n), near] += p.defer_share
    return out


def plan_from_action(base_logits: np.ndarray, delta: np.ndarray, col_ok: np.ndarray) -> np.ndarray:
    """Row softmax of base + delta over the regions that host servers (col_ok (R,) bool). (..., R, R)."""
    z = np.where(col_ok, base_logits + delta, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def base_logits(ot: np.ndarray | None, shape: tuple, cfg: EnvConfig) -> np.ndarray:
    if cfg.ot_base and ot is not None:
        return np.log(ot + cfg.base_eps)
    return np.zeros(shape)


class Dynamics:
    """The surrogate's slot transition, batched: `step(P (B,R,R), a (B,R,M), W (B,R))`."""

    def __init__(self, fleet: SurrogateFleet) -> None:
        self.f = fleet
        r, m = fleet.n_regions, fleet.n_models
        ok = fleet.rps_rm > 0
        self.ok = ok.astype(float)  # (R, M)
        self.work = np.where(ok, 1.0 / np.where(ok, fleet.rps_rm, 1.0), 0.0)  # (R, M) server-seconds/request
        near = np.zeros((r, r, m))  # near[i, j, m] = 1 where j is origin i's nearest region for m
        for i in range(r):
            for mm in range(m):
                if fleet.near_rm[i, mm] >= 0:
                    near[i, fleet.near_rm[i, mm], mm] = 1.0
        self.near = near
        self.cap_s = fleet.servers * fleet.slot_s * fleet.capacity_derate  # (R,)
        self.srv = np.maximum(fleet.servers, 1.0)
        self.has = fleet.servers > 0
        self.lat2_s = 2.0 * fleet.latency_ms / 1000.0  # forward + return
        self.transfer = (1.0 - np.eye(r)) * fleet.transfer_usd_per_request
        c = self.srv
        self.sak_exp = np.sqrt(2.0 * (c + 1.0)) - 1.0
        # mean real work per request per region (for the M/M/c wait), model-averaged where capable
        self.work_real = (self.work.sum(1) / np.maximum(ok.sum(1), 1)) / fleet.capacity_derate

    def step(self, P: np.ndarray, a: np.ndarray, W: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, dict]:
        f = self.f
        x = a[:, :, None, :] * P[:, :, :, None]  # (B, i, j, m)
        lost = (x * (1.0 - self.ok[None, None])).sum(axis=2)  # (B, i, m) routed where m cannot run
        x = x * self.ok[None, None] + lost[:, :, None, :] * self.near[None]
        A = np.einsum("bijm,jm->bj", x, self.work)  # arrived work, server-seconds
        total = W + A
        cap = self.cap_s[None, :]
        served = np.minimum(total, cap)
        W2 = total - served
        util = np.where(self.has, served / (self.srv * f.slot_s), 0.0)
        rho = np.where(self.has, np.minimum(A / np.maximum(cap, 1e-9), 0.98), 0.0)
        wq = self.work_real[None] * rho ** self.sak_exp[None] / (self.srv[None] * (1.0 - rho))
        backlog_wait = 0.5 * (W + W2) / np.maximum(cap / f.slot_s, 1e-9)
        svc = f.lat_s_rm[None] * (1.0 + rho[:, :, None]) + (wq + backlog_wait)[:, :, None]  # (B, j, m)
        n = x.sum(axis=(1, 2, 3))
        rt_sum = np.einsum("bijm,ij->b", x, self.lat2_s) + np.einsum("bijm,bjm->b", x, svc)
        rt = np.where(n > 0, rt_sum / np.maximum(n, 1e-12), 0.0)
        w = np.where(self.has, f.servers, 0.0)
        w = w / w.sum()
        mu = (util * w).sum(1)
        lb = np.sqrt(((util - mu[:, None]) ** 2 * w).sum(1))
        energy = np.einsum("bijm,jm,bj->b", x, f.energy_kwh_rm, price) / 1000.0
        transfer = np.einsum("bijm,ij->b", x, self.transfer)
        return W2, {"rt_s": rt, "util": util, "lb": lb, "cost_usd": energy + transfer, "requests": n,
                    "backlog_s": W2}


def churn(P: np.ndarray, prev: np.ndarray | None, demand_r: np.ndarray) -> np.ndarray:
    """Demand-weighted mean over origins of 0.5 x |P - prev|_1 (B,)."""
    if prev is None:
        return np.zeros(P.shape[0])
    d = 0.5 * np.abs(P - prev).sum(-1)  # (B, R)
    w = demand_r / np.maximum(demand_r.sum(-1, keepdims=True), 1e-12)
    return (d * w).sum(-1)


def build_obs(fleet: SurrogateFleet, cfg: EnvConfig, hist_r: np.ndarray, util: np.ndarray, backlog_s: np.ndarray,
              price_now: np.ndarray, price_next: np.ndarray, prev_plan: np.ndarray, base_plan: np.ndarray | None,
              slot_of_day: np.ndarray, per_day: int) -> np.ndarray:
    """Observation (B, obs_dim). hist_r (B, T, R): per-origin demand up to the last observed slot,
    T >= per_day + 4 (for the forecast)."""
    b, _, r = hist_r.shape
    scale = max(float(fleet.capacity_rps.sum()) * fleet.slot_s / r, 1e-9)
    recent = hist_r[:, -cfg.history_slots:, :] / scale
    if cfg.use_forecast:
        fc = seasonal_forecast(hist_r, cfg.horizon_slots, per_day) / scale
    else:
        fc = np.repeat(hist_r[:, -1:, :], cfg.horizon_slots, axis=1) / scale
    pscale = max(float(np.abs(fleet.price_usd_per_mwh).mean()), 1e-9)
    queue = np.clip(backlog_s / (np.maximum(fleet.servers, 1.0) * fleet.slot_s), 0.0, 5.0)
    srv = np.broadcast_to(fleet.servers / max(float(fleet.servers.max()), 1.0), (b, r))
    base = np.zeros((b, r, r)) if base_plan is None or not cfg.ot_base else base_plan
    ang = 2.0 * np.pi * np.asarray(slot_of_day, dtype=float) / per_day
    parts = [recent.reshape(b, -1), fc.reshape(b, -1), util, queue, srv, price_now / pscale, price_next / pscale,
             prev_plan.reshape(b, -1), base.reshape(b, -1), np.sin(ang)[:, None], np.cos(ang)[:, None]]
    return np.concatenate([np.broadcast_to(p, (b, p.shape[1])) for p in parts], axis=1).astype(np.float32)


class SurrogateEnv:
    """B parallel episodes of one day each (`per_day` slots), synchronised: `reset()` starts B episodes
    on days drawn from `days` (and demand series drawn from the first axis of `demand`); `step(delta)`
    returns (obs, reward, done, info); all B episodes end together after `per_day` steps.

    demand: (S, slots, R, M) requests per slot; day d (1-based) covers slots [(d-1) per_day, d per_day);
    every day in `days` must be >= 2 (the forecast and the first slot's history need the previous day).
    """

    def __init__(self, fleet: SurrogateFleet, demand: np.ndarray, days: list[int] | tuple[int, ...], n_envs: int,
                 cfg: EnvConfig = EnvConfig(), seed: int = 0) -> None:
        self.f, self.cfg, self.B = fleet, cfg, int(n_envs)
        self.demand = np.asarray(demand, dtype=float)
        if self.demand.ndim != 4 or self.demand.shape[2:] != (fleet.n_regions, fleet.n_models):
            raise ValueError(f"demand must have shape (S, slots, {fleet.n_regions}, {fleet.n_models}); "
                             f"got {self.demand.shape}")
        self.per_day = int(round(86400.0 / fleet.slot_s))
        n_days = self.demand.shape[1] // self.per_day
        self.days = tuple(int(d) for d in days)
        if not self.days or any(d < 2 or d > n_days for d in self.days):
            raise ValueError(f"episode days must be in 2..{n_days}, got {self.days}")
        self.dyn = Dynamics(fleet)
        self.col_ok = fleet.servers > 0
        self.rng = np.random.default_rng(seed)
        self.obs_dim = obs_dim(fleet.n_regions, cfg)
        self._refs: dict[tuple[int, int], np.ndarray] = {}
        self.t = 0

    # ---- references (myopic OT through the same surrogate), cached per (series, day) ----
    def reference(self, series: int, day: int) -> np.ndarray:
        """[mean RT, mean LB, mean cost per slot] of the myopic OT plan on that day."""
        key = (series, day)
        if key not in self._refs:
            self._refs[key] = reference_means(run_fixed(self, [series], [day], policy="myopic-ot"))
        return self._refs[key]

    def _t_abs(self) -> np.ndarray:
        return (self.day - 1) * self.per_day + self.t

    def _hist(self) -> np.ndarray:
        """(B, per_day + 4 + h, R) per-origin demand before the current slot (scaled by the episode noise)."""
        n = self.per_day + max(4, self.cfg.history_slots)
        t = self._t_abs()
        idx = t[:, None] + np.arange(-n, 0)[None, :]
        d = self.demand[self.series[:, None], idx].sum(-1)  # (B, n, R)
        return d * self.scale[:, None, :]

    def _true(self) -> np.ndarray:
        return self.demand[self.series, self._t_abs()] * self.scale[:, :, None]  # (B, R, M)

    def _prices(self) -> tuple[np.ndarray, np.ndarray]:
        t_s = self._t_abs() * self.f.slot_s
        return self.f.price_at(t_s), self.f.price_at(t_s + self.f.slot_s)

    def _ot(self, hist: np.ndarray, price: np.ndarray) -> np.ndarray:
        if self.cfg.use_forecast:
            dem = seasonal_forecast(hist, 1, self.per_day)[:, 0, :]
        else:
            dem = hist[:, -1, :]
        return np.stack([ot_plan(self.f, dem[b], self.W[b], price[b]) for b in range(self.B)])

    def _observe(self) -> np.ndarray:
        hist = self._hist()
        pn, px = self._prices()
        self.ot = self._ot(hist, pn)
        prev = self.prev if self.prev is not None else self.ot
        return build_obs(self.f, self.cfg, hist, self.util, self.W, pn, px, prev, self.ot,
                         np.full(self.B, self.t), self.per_day)

    def reset(self, series: np.ndarray | None = None, days: np.ndarray | None = None) -> np.ndarray:
        b = self.B
        draw_episodes(self, series, days)
        r = self.f.n_regions
        self.t = 0
        self.W = np.zeros((b, r))
        self.util = np.zeros((b, r))
        self.prev = None
        self.refs = np.stack([self.reference(int(s), int(d)) for s, d in zip(self.series, self.day)]) \
            if getattr(self, "_with_refs", True) else np.ones((b, 3))
        return self._observe()

    def plan(self, delta: np.ndarray) -> np.ndarray:
        return plan_from_action(base_logits(self.ot, self.ot.shape, self.cfg), delta, self.col_ok)

    def step(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        return self.step_plan(self.plan(np.asarray(delta, dtype=float)))

    def step_plan(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        a = self._true()
        price, _ = self._prices()
        self.W, info = self.dyn.step(P, a, self.W, price)
        ch = churn(P, self.prev, a.sum(-1))
        c = self.cfg
        ref = self.refs
        reward = -(c.w_rt * info["rt_s"] / np.maximum(ref[:, 0], 1e-9) + c.w_lb * info["lb"] / ref[:, 1]
                   + c.w_cost * info["cost_usd"] / ref[:, 2] + c.w_churn * ch)
        info = {**info, "churn": ch, "plan": P, "ot_plan": self.ot}
        self.util = info["util"]
        self.prev = P
        self.t += 1
        done = np.full(self.B, self.t >= self.per_day)
        obs = self._observe() if not done[0] else np.zeros((self.B, self.obs_dim), dtype=np.float32)
        return obs, reward.astype(np.float64), done, info


def reference_means(res: dict[str, np.ndarray]) -> np.ndarray:
    """[mean RT, mean LB (floor 1e-3), mean cost (floor 1e-12)] per slot of a reference run: the reward's
    normalisers."""
    return np.array([res["rt_s"].mean(), max(res["lb"].mean(), 1e-3), max(res["cost_usd"].mean(), 1e-12)])


def draw_episodes(env, series: np.ndarray | None, days: np.ndarray | None) -> None:
    """Set env.series, env.day and env.scale for B new episodes: drawn from env.rng unless given (given
    series: no demand noise)."""
    b = env.B
    env.series = (env.rng.integers(0, env.demand.shape[0], b) if series is None
                  else np.asarray(series, dtype=np.int64))
    env.day = (np.asarray(env.days)[env.rng.integers(0, len(env.days), b)] if days is None
               else np.asarray(days, dtype=np.int64))
    r = env.f.n_regions
    sig = env.cfg.demand_noise
    env.scale = np.exp(env.rng.normal(0.0, sig, (b, r))) if sig > 0 and series is None else np.ones((b, r))


def run_fixed(env: SurrogateEnv, series: list[int], days: list[int], policy: str = "myopic-ot",
              plans: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run a day through the surrogate with a fixed rule (no references needed): 'myopic-ot' (OT on the
    last observed slot), 'ot' (the env's own OT target, i.e. forecast-based when use_forecast),
    'local' (each origin to its nearest region), or given `plans` (slots, R, R). Returns per-slot arrays
    (slots, n) of rt_s, lb, cost_usd, churn and util (slots, n, R)."""
    sub = SurrogateEnv.__new__(SurrogateEnv)
    sub.__dict__.update(env.__dict__)
    sub.B = len(series)
    sub._with_refs = False
    if policy == "myopic-ot":
        sub.cfg = replace(env.cfg, use_forecast=False)
    sub.reset(series=np.asarray(series), days=np.asarray(days))
    out: dict[str, list] = {"rt_s": [], "lb": [], "cost_usd": [], "churn": [], "util": [], "reward": []}
    r = env.f.n_regions
    for t in range(env.per_day):
        if plans is not None:
            P = np.broadcast_to(plans[t], (sub.B, r, r))
        elif policy in ("myopic-ot", "ot"):
            P = sub.ot
        elif policy == "local":
            P = np.broadcast_to(np.eye(r)[np.array([int(np.argmin(np.where(env.col_ok, env.f.latency_ms[i], np.inf)))
                                                     for i in range(r)])], (sub.B, r, r))
        else:
            raise ValueError(f"unknown fixed policy {policy!r}")
        _, rew, _, info = sub.step_plan(np.asarray(P, dtype=float))
        for k in ("rt_s", "lb", "cost_usd", "churn", "util"):
            out[k].append(info[k])
        out["reward"].append(rew)
    return {k: np.asarray(v) for k, v in out.items()}
