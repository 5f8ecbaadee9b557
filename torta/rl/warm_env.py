"""B parallel surrogate days on the warm-model dynamics (`torta.rl.warm`), with a macro planner in the loop.

`WarmEnv(fleet, demand, days, n_envs, planner=...)`; per slot the planner decides on the env's own state
(placement, queues, demand history) and the actor acts on that decision:

- `planner="horizon"` (`torta-horizon-ppo`): the receding-horizon LP of `torta-horizon`
  (torta.planner.horizon.HorizonLP, one kept instance per env so each solve starts warm) on the next H
  slots of the seasonal-naive forecast per origin and model (`torta.rl.fleet.seasonal_forecast`; the replay
  policy uses torta-horizon's day-ahead forecast) gives per-model shares and placement targets; the actor's
  per-origin logit offsets delta (R x R) move every model's shares: P_m[i] = softmax(log(S_m[i] + eps) +
  delta[i]) over the regions able to serve m (delta = 0: the planner's decision, up to eps); the placement
  is the planner's targets (the micro layer's reactive switches on top, `WarmDynamics`);
- `planner="myopic-ot"`: the myopic OT plan on the slot just observed (`torta.rl.env.ot_plan`, one plan for
  every model, masked to the regions able to serve it), placement by reactive switches only; the reward
  references and the validation baseline;
- `planner="none"` (`ppo-only` on this surrogate): P_m[i] = softmax(delta[i]), placement reactive.

Episodes: one day each, warm-started: the `warmup_slots` before the day run under the planner's own
decision (delta = 0) from the fleet's initial placement, so queues and loaded models carry into the day
as in the replay's warm-up (torta.config.EVAL_PROTOCOL.warmup_h). Reward and observation as the plain
surrogate (`torta.rl.env`; references = the day's means under myopic OT through this surrogate), the
observation extended by the placement (servers per region and model / servers able to hold it).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from torta.config import EVAL_PROTOCOL
from torta.planner.config import HorizonConfig
from torta.rl.env import (EnvConfig, build_obs, churn, draw_episodes, obs_dim, ot_plan, plan_from_action,
                          reference_means)
from torta.rl.fleet import seasonal_forecast
from torta.rl.warm import WarmDynamics, WarmFleet

PLANNERS = ("horizon", "myopic-ot", "none")
WARMUP_SLOTS = int(round(EVAL_PROTOCOL.warmup_h * 4))  # 2 h of 15-minute slots


def micro_settings(planner: str, switch_margin_s: float | None = None) -> dict:
    """The micro layer each planner's replay policy runs, as `WarmDynamics` settings: torta-horizon's
    target allocator (switch margin `TargetConfig.switch_margin_s`, spill-over `MicroConfig.spill_s` over
    `spill_regions`); ppo-only's TORTA allocator (the baseline switch guard, the same spill-over); myopic OT's
    warm least-loaded scan (the baseline switch guard, no spill-over)."""
    from torta.allocator.config import MicroConfig, TargetConfig
    from torta.planner.context import BASELINE_SWITCH_GUARD_S

    mc = MicroConfig()
    margin = TargetConfig().switch_margin_s if planner == "horizon" else BASELINE_SWITCH_GUARD_S
    return {"switch_margin_s": margin if switch_margin_s is None else float(switch_margin_s),
            "spill_s": None if planner == "myopic-ot" else mc.spill_s, "spill_regions": mc.spill_regions}


def warm_obs_dim(n_regions: int, n_models: int, cfg: EnvConfig) -> int:
    return obs_dim(n_regions, cfg) + n_regions * n_models


def broadcast_plan(wf: WarmFleet, plan: np.ndarray) -> np.ndarray:
    """(B, R, R) plan for every model -> (B, M, R, R), masked to the regions able to serve each model
    (a row with no such region goes to the origin's nearest capable one)."""
    f = wf.base
    r, m_n = f.n_regions, f.n_models
    out = np.zeros((plan.shape[0], m_n, r, r))
    for m in range(m_n):
        cols = (wf.capable_rm[:, m] > 0) & (f.rps_rm[:, m] > 0)
        p = np.where(cols[None, None, :], plan, 0.0)
        s = p.sum(-1, keepdims=True)
        near = np.eye(r)[np.maximum(f.near_rm[:, m], 0)][None]
        out[:, m] = np.where(s > 0, p / np.where(s > 0, s, 1.0), near)
    return out


def apply_offsets(wf: WarmFleet, shares: np.ndarray, delta: np.ndarray, cfg: EnvConfig, ot_base: bool) -> np.ndarray:
    """Per-model plans (B, M, R, R) from the planner's shares (B, M, R, R) and the actor's offsets (B, R, R)."""
    f = wf.base
    mask = ((wf.capable_rm > 0) & (f.rps_rm > 0)).T[:, None, :]  # (M, 1, R)
    base = np.log(shares + cfg.base_eps) if ot_base else np.zeros_like(shares)
    out = plan_from_action(base, np.asarray(delta, dtype=float)[:, None], mask)
    none = ~mask.any(-1)[:, 0]  # models no region serves: keep the planner's rows (the simulator drops them)
    if none.any():
        out[:, none] = shares[:, none]
    return out


def horizon_inputs(wf: WarmFleet, hconfig: HorizonConfig, demand: np.ndarray, price: np.ndarray, n: np.ndarray,
                   backlog_r: np.ndarray):
    """`HorizonInputs` as `torta-horizon` builds them (torta.planner.horizon_policy.TortaHorizon.plan), for
    one env: demand (H, R, M), price (H, R), placement n (R, M), queued work per region (R,)."""
    from torta.planner.horizon import HorizonInputs

    f = wf.base
    servers = np.maximum(f.servers, 1.0)
    return HorizonInputs(
        demand=np.maximum(demand, 0.0), latency_ms=f.latency_ms, price_usd_per_mwh=price,
        energy_kwh_rm=f.energy_kwh_rm, server_rps_rm=f.rps_rm, service_s_rm=f.lat_s_rm,
        load_s_rm=wf.load_s_rm, capable_rm=wf.capable_rm, servers=wf.servers_any,
        placement=np.minimum(n, wf.capable_rm), slot_s=f.slot_s,
        free_share=np.clip(1.0 - backlog_r / (servers * f.slot_s), 0.0, 1.0), queue_delay_s=backlog_r / servers,
        transfer_usd_per_request=f.transfer_usd_per_request, switch_gpu_s_rm=wf.gpu_s_rm)


class WarmEnv:
    """See the module docstring. demand: (S, slots, R, M) requests per slot (as `torta.rl.env.SurrogateEnv`)."""

    def __init__(self, fleet: WarmFleet, demand: np.ndarray, days, n_envs: int, cfg: EnvConfig = EnvConfig(),
                 planner: str = "horizon", seed: int = 0, hconfig: HorizonConfig | None = None,
                 switch_margin_s: float | None = None, warmup_slots: int = WARMUP_SLOTS,
                 decision_cache: bool = False) -> None:
        if planner not in PLANNERS:
            raise ValueError(f"planner must be one of {PLANNERS}, got {planner!r}")
        f = fleet.base
        self.wf, self.f, self.cfg, self.B, self.planner = fleet, f, cfg, int(n_envs), planner
        self.demand = np.asarray(demand, dtype=float)
        if self.demand.ndim != 4 or self.demand.shape[2:] != (f.n_regions, f.n_models):
            raise ValueError(f"demand must have shape (S, slots, {f.n_regions}, {f.n_models}); got {self.demand.shape}")
        self.per_day = int(round(86400.0 / f.slot_s))
        n_days = self.demand.shape[1] // self.per_day
        self.days = tuple(int(d) for d in days)
        if not self.days or any(d < 2 or d > n_days for d in self.days):
            raise ValueError(f"episode days must be in 2..{n_days}, got {self.days}")
        if not 0 <= warmup_slots <= self.per_day - 4:
            raise ValueError(f"warmup_slots must be in 0..{self.per_day - 4}, got {warmup_slots}")
        self.warmup_slots = int(warmup_slots)
        if decision_cache and (planner != "horizon" or cfg.demand_noise > 0):
            raise ValueError("decision_cache needs planner 'horizon' and demand_noise 0 (one decision per series, "
                             "day and slot)")
        self.decision_cache = bool(decision_cache)
        self._decisions: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.hconfig = hconfig or HorizonConfig()
        self.dyn = WarmDynamics(fleet, **micro_settings(planner, switch_margin_s))
        self.col_ok = f.servers > 0
        self.rng = np.random.default_rng(seed)
        self.obs_dim = warm_obs_dim(f.n_regions, f.n_models, cfg)
        self.ot_base = planner != "none" and cfg.ot_base
        self._refs: dict[tuple[int, int], np.ndarray] = {}
        self._lps: list = []
        self._with_refs = True
        self.t = 0

    # ---- time, demand, prices ----
    def _t_abs(self) -> np.ndarray:
        return (self.day - 1) * self.per_day + self.t

    def _hist_rm(self) -> np.ndarray:
        """(B, per_day + h, R, M) per-origin, per-model demand before the current slot (episode noise scaled)."""
        n = self.per_day + max(4, self.cfg.history_slots)
        idx = np.maximum(self._t_abs()[:, None] + np.arange(-n, 0)[None, :], 0)  # day 2's warm-up: day 1 from its start
        return self.demand[self.series[:, None], idx] * self.scale[:, None, :, None]

    def _true(self) -> np.ndarray:
        return self.demand[self.series, self._t_abs()] * self.scale[:, :, None]

    def _price_rows(self, h_n: int) -> np.ndarray:
        t_s = self._t_abs()[:, None] * self.f.slot_s + (np.arange(h_n)[None, :] + 0.5) * self.f.slot_s
        return self.f.price_at(t_s)  # (B, H, R)

    # ---- the planner's decision on the current state ----
    def _decide(self, hist_rm: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(shares (B, M, R, R), targets (B, R, M) or None) of the slot about to start."""
        b_n, r, m_n = self.B, self.f.n_regions, self.f.n_models
        price = self._price_rows(max(self.hconfig.horizon_slots, 1))
        backlog_r = self.W.sum(-1)
        if self.planner == "none":
            return np.full((b_n, m_n, r, r), 1.0 / r), None
        if self.planner == "myopic-ot":
            last = hist_rm[:, -1].sum(-1)
            agg = np.stack([ot_plan(self.f, last[b], backlog_r[b], price[b, 0]) for b in range(b_n)])
            return broadcast_plan(self.wf, agg), None
        if self.decision_cache:
            i = self.t + self.warmup_slots
            got = [self.cached_decisions(int(sr), int(d)) for sr, d in zip(self.series, self.day)]
            return np.stack([g[0][i] for g in got]), np.stack([g[1][i] for g in got])
        from torta.planner.horizon import HorizonLP

        h_n = self.hconfig.horizon_slots
        while len(self._lps) < b_n:
            self._lps.append(HorizonLP(self.f.latency_ms, self.wf.capable_rm, self.hconfig))
        t = hist_rm.shape[1]
        fc = seasonal_forecast(hist_rm.reshape(b_n, t, r * m_n), h_n, self.per_day).reshape(b_n, h_n, r, m_n)
        shares = np.zeros((b_n, m_n, r, r))
        targets = np.zeros((b_n, r, m_n))
        for b in range(b_n):
            p = self._lps[b].solve(horizon_inputs(self.wf, self.hconfig, fc[b], price[b, :h_n], self.n[b],
                                                  backlog_r[b]))
            shares[b] = p.shares()
            targets[b] = p.targets
        return shares, targets

    def _observe(self) -> np.ndarray:
        hist_rm = self._hist_rm()
        self.shares, self.targets = self._decide(hist_rm)
        last = hist_rm[:, -1]
        w = last / np.maximum(last.sum(-1, keepdims=True), 1e-12)
        self._mix = np.where(last.sum(-1, keepdims=True) > 0, w, 1.0 / last.shape[-1])  # (B, R, M)
        self.ot = np.einsum("bim,bmij->bij", self._mix, self.shares)  # the decision as one plan per origin
        f = self.f
        t_s = self._t_abs() * f.slot_s
        prev = self.prev if self.prev is not None else self.ot
        base = build_obs(f, self.cfg, hist_rm.sum(-1), self.util, self.W.sum(-1), f.price_at(t_s),
                         f.price_at(t_s + f.slot_s), prev, self.ot if self.ot_base else None,
                         (self.t + np.zeros(self.B, dtype=np.int64)) % self.per_day, self.per_day)
        return np.concatenate([base, placement_feature(self.wf, self.n)], axis=1)

    def cached_decisions(self, series: int, day: int) -> tuple[np.ndarray, np.ndarray]:
        """(shares (slots, M, R, R), targets (slots, R, M)) the LP takes along its own day (delta = 0, warm-up
        included), computed once per (series, day): with `decision_cache` the actor acts on these, not on a
        fresh solve of the state its offsets led to (a training-time approximation: the LP's decision still
        follows the forecast and its own placement, not the queues the offsets change; validation runs the
        LP in the loop)."""
        key = (series, day)
        if key not in self._decisions:
            sub = self.sibling(1, [day])
            sub._with_refs = False
            sub.reset(series=np.array([series]), days=np.array([day]))
            shares, targets = list(sub._seen_shares), list(sub._seen_targets)
            r = self.f.n_regions
            while sub.t < sub.per_day:
                sub.step(np.zeros((1, r, r)))
                shares.append(sub.shares[0].copy())
                targets.append(sub.targets[0].copy())
            self._decisions[key] = (np.asarray(shares[:sub.warmup_slots + sub.per_day]),
                                    np.asarray(targets[:sub.warmup_slots + sub.per_day]))
        return self._decisions[key]

    def kl_target(self) -> tuple[np.ndarray, np.ndarray]:
        """(the decision as one plan per origin, the base logits the actor's offsets move) for the KL term."""
        base = np.log(self.ot + self.cfg.base_eps) if self.ot_base else np.zeros_like(self.ot)
        return self.ot.copy(), base

    # ---- episodes ----
    def reference(self, series: int, day: int) -> np.ndarray:
        """[mean RT, mean LB, mean cost per slot] of myopic OT on that day through this surrogate."""
        key = (series, day)
        if key not in self._refs:
            self._refs[key] = reference_means(run_warm(self, [series], [day], planner="myopic-ot"))
        return self._refs[key]

    def reset(self, series: np.ndarray | None = None, days: np.ndarray | None = None) -> np.ndarray:
        b = self.B
        draw_episodes(self, series, days)
        r, m = self.f.n_regions, self.f.n_models
        self.refs = (np.stack([self.reference(int(s), int(d)) for s, d in zip(self.series, self.day)])
                     if self._with_refs else np.ones((b, 3)))
        self._lps = []  # a fresh planner per episode (its warm start is the solver's, not a state of the world)
        self.n = np.broadcast_to(self.wf.initial_rm, (b, r, m)).astype(float).copy()
        self.W = np.zeros((b, r, m))
        self.util = np.zeros((b, r))
        self.prev = None
        self.t = -self.warmup_slots
        self.switches = np.zeros(b)
        obs = self._observe()
        self._seen_shares, self._seen_targets = [self.shares[0].copy()], [None if self.targets is None
                                                                          else self.targets[0].copy()]
        while self.t < 0:  # the warm-up: the planner's own decision, not scored
            obs = self._advance(self.ot_plans(np.zeros((b, r, r))))[0]
            self._seen_shares.append(self.shares[0].copy())
            self._seen_targets.append(None if self.targets is None else self.targets[0].copy())
        self.switches = np.zeros(b)
        return obs

    def ot_plans(self, delta: np.ndarray) -> np.ndarray:
        return apply_offsets(self.wf, self.shares, delta, self.cfg, self.ot_base)

    def _advance(self, plans: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        a = self._true()
        price = self.f.price_at(self._t_abs() * self.f.slot_s)
        self.n, self.W, info = self.dyn.step(plans, a, self.n, self.W, price, self.targets)
        agg = np.einsum("bim,bmij->bij", self._mix, plans)
        ch = churn(agg, self.prev, a.sum(-1))
        c, ref = self.cfg, self.refs
        reward = -(c.w_rt * info["rt_s"] / np.maximum(ref[:, 0], 1e-9) + c.w_lb * info["lb"] / ref[:, 1]
                   + c.w_cost * info["cost_usd"] / ref[:, 2] + c.w_churn * ch)
        info = {**info, "churn": ch, "plan": agg, "ot_plan": self.ot, "plans": plans}
        self.switches = self.switches + info["switches"]
        self.util = info["util"]
        self.prev = agg
        self.t += 1
        done = self.t >= self.per_day
        obs = self._observe() if not done else np.zeros((self.B, self.obs_dim), dtype=np.float32)
        return obs, reward.astype(np.float64), info

    def step(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, reward, info = self._advance(self.ot_plans(np.asarray(delta, dtype=float)))
        return obs, reward, np.full(self.B, self.t >= self.per_day), info

    # ---- evaluation (what `torta.rl.train.train_on` calls on this env) ----
    def evaluate(self, agent, series: list[int], days: list[int]) -> dict[str, float]:
        """Deterministic run of `agent` (None: delta = 0, the planner's own decision) over the given days."""
        sub = self.sibling(len(series), sorted(set(days)))
        obs = sub.reset(series=np.asarray(series), days=np.asarray(days))
        r = self.f.n_regions
        tot = {"return": 0.0, "rt_s": 0.0, "lb": 0.0, "cost_usd": 0.0, "churn": 0.0, "switches": 0.0}
        for _ in range(sub.per_day):
            delta = agent.act_mean(obs) if agent is not None else np.zeros((sub.B, r, r))
            obs, rew, _, info = sub.step(delta)
            tot["return"] += float(rew.mean())
            for k in ("rt_s", "lb", "cost_usd", "churn"):
                tot[k] += float(np.mean(info[k])) / sub.per_day
        tot["switches"] = float(sub.switches.mean())
        return tot

    def reference_eval(self, series: list[int], days: list[int]) -> dict[str, float]:
        """The validation baseline: myopic OT through this surrogate, scored with the same reward."""
        return self.sibling(len(series), sorted(set(days)), planner="myopic-ot").evaluate(None, series, days)

    def sibling(self, n_envs: int, days, planner: str | None = None) -> "WarmEnv":
        """A new env on the same fleet and demand sharing the reference cache (no episode noise)."""
        sub = WarmEnv(self.wf, self.demand, days, n_envs, replace(self.cfg, demand_noise=0.0),
                      planner or self.planner, seed=0, hconfig=self.hconfig,
                      switch_margin_s=self.dyn.switch_margin_s if planner is None else None,
                      warmup_slots=self.warmup_slots)
        if planner == "myopic-ot":  # the reference plans on the slot just observed, with no offsets' base removed
            sub.cfg = replace(sub.cfg, use_forecast=False, ot_base=True)
            sub.ot_base = True
        sub._refs = self._refs
        return sub


def placement_feature(wf: WarmFleet, n: np.ndarray) -> np.ndarray:
    """(B, R * M) servers holding each model / servers able to hold it."""
    return (n / np.maximum(wf.capable_rm[None], 1.0)).reshape(n.shape[0], -1).astype(np.float32)


def run_warm(env: WarmEnv, series: list[int], days: list[int], planner: str | None = None) -> dict[str, np.ndarray]:
    """One deterministic day per (series, day) under a planner's own decision (delta = 0), without reward
    references. Returns per-slot arrays (slots, n): rt_s, lb, cost_usd, churn, switches; util (slots, n, R)."""
    sub = env.sibling(len(series), sorted(set(days)), planner=planner)
    sub._with_refs = False
    sub.reset(series=np.asarray(series), days=np.asarray(days))
    r = env.f.n_regions
    out: dict[str, list] = {k: [] for k in ("rt_s", "lb", "cost_usd", "churn", "util", "switches")}
    for _ in range(sub.per_day):
        _, _, _, info = sub.step(np.zeros((sub.B, r, r)))
        for k in out:
            out[k].append(info[k])
    return {k: np.asarray(v) for k, v in out.items()}
