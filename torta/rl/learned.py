"""The learned macro policy behind the `torta.policy` seam, and its ablations (registered on import):

- `torta`: each slot, the OT plan per model (torta.planner.register.OTPolicy on the seasonal-naive forecast
  of the coming slot, `torta.rl.fleet.seasonal_forecast`) is adjusted by the PPO actor's per-origin logit
  offsets (the mean action): P_m[i] = softmax(log(P_OT_m[i] + eps) + delta[i]) over the regions able to
  serve m; inside the region the TORTA micro allocator (torta.allocator.greedy.TortaAllocator, with the plan
  layer's spill-over); checkpoint `<scenario>-torta.pt`.
- `torta-no-forecast`: the same with the forecast replaced by the last observed slot (features and OT
  demand); checkpoint `<scenario>-torta-no-forecast.pt`.
- `ppo-only` (P_m[i] = softmax(delta[i]), no OT plan) left the registry: it never learned, on either
  surrogate (checkpoints/README.md); `torta train --variant ppo-only` still trains it, to reproduce that.
- `torta-no-micro`: `torta`'s checkpoint and plans, round robin over the region's servers able to serve
  the request (`RoundRobinInRegion`) instead of the micro allocator, no spill-over.

The observation is built exactly as the surrogate builds it (`torta.rl.env.build_obs`); utilisation per
region is the served work of the last slot estimated from the observed demand, the plan in force and
the backlog change (the surrogate's definition). Checkpoints: `torta.rl.train.default_checkpoint`.
"""

from __future__ import annotations

import math

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from torta.allocator.greedy import PlannedAllocator
from torta.planner.config import OTConfig
from torta.planner.register import OTPolicy
from torta.policy.base import SlotState
from torta.policy.registry import register
from torta.rl.env import EnvConfig, build_obs, obs_dim, plan_from_action
from torta.rl.fleet import fleet_from_world, seasonal_forecast


class RoundRobinInRegion:
    """Warm-preferring round robin over the servers of the region able to hold the request (KV
    capacity >= prompt), one cycle per (region, model), the same rule as the built-in round-robin
    (`torta.allocator.builtin.round_robin`): the next server whose tail model is the request's and
    whose expected wait is at most the load time; when none, the server that can start the request
    soonest, a load included where it must load the model."""

    def __init__(self) -> None:
        self._view_id = None

    def _setup(self, view: Any) -> None:
        t = view.tables
        self._cands = [[[(s, t.types[t.stype[s][m]].kv_cap, t.types[t.stype[s][m]].load_s)
                         for s in t.capable[r][m]] for m in range(t.n_models)] for r in range(t.n_regions)]
        self._next = [[0] * t.n_models for _ in range(t.n_regions)]
        self._view_id = id(view)

    def pick(self, view: Any, request: Any, region: int) -> int:
        if self._view_id != id(view):
            self._setup(view)
        m, p = request.model, request.prompt_tokens
        c = self._cands[region][m]
        n = len(c)
        k = self._next[region][m]
        for step in range(n):
            s, cap, load_s = c[(k + step) % n]
            if cap >= p and view.tail_model(s) == m and view.backlog_s(s) <= load_s:
                self._next[region][m] = (k + step + 1) % n
                return s
        tails = [view.tail_model(s) for s in view.tables.servers_in_region[region]]
        warm = m in tails  # keep each model's last warm server in the region (minReplicas = 1), as the
        best, bs = math.inf, -1  # built-in allocators do, unless no server of the region holds m
        for s, cap, load_s in c:
            if cap >= p:
                tm = view.tail_model(s)
                if tm != m and warm and tails.count(tm) < 2:
                    continue
                w = view.backlog_s(s) + (load_s if tm != m else 0.0)
                if w < best:
                    best, bs = w, s
        return bs


def check_state_dict(sd: dict, path: Path, want_obs: int, world) -> None:
    """InputError naming the checkpoint unless its keys and shapes are those of `Agent` for this world
    (observation size `want_obs`, one action per region pair) and every weight is finite."""
    import torch

    from torta.errors import InputError
    from torta.rl.ppo import Agent

    w = sd.get("actor.0.weight")
    hidden = int(w.shape[0]) if isinstance(w, torch.Tensor) and w.ndim == 2 else 128
    with torch.device("meta"):  # shapes only: no memory, no draw from torch's generator
        ref = Agent(want_obs, world.n_regions, hidden).state_dict()
    missing, extra = sorted(set(ref) - set(sd)), sorted(set(sd) - set(ref))
    if missing or extra:
        raise InputError(str(path), f"checkpoint keys do not match the policy network: missing {missing[:6]}, "
                         f"unexpected {extra[:6]}", field=(missing or extra)[0])
    for k, t in ref.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            why = (f"checkpoint observation size {int(sd['obs_mean'].shape[0])} does not fit world {world.name!r} "
                   f"({world.n_regions} regions: {want_obs}); train one for this scenario"
                   if k == "obs_mean" else f"shape {tuple(sd[k].shape)}, expected {tuple(t.shape)} for world "
                                            f"{world.name!r} ({world.n_regions} regions)")
            raise InputError(str(path), why, field=k)
        if not sd[k].is_floating_point():
            raise InputError(str(path), f"dtype {sd[k].dtype}; expected floating-point weights", field=k)
        bad = int((~torch.isfinite(sd[k])).sum())
        if bad:
            raise InputError(str(path), f"{bad} of {sd[k].numel()} weights are NaN or infinite; refusing the "
                                        "checkpoint", field=k)


class RLPolicy(OTPolicy):
    """Base of the learned policies (see the module docstring)."""

    name = "torta"
    description = ("PPO macro policy with OT supervision (plan = OT plan per model adjusted by the actor) + the "
                   "TORTA micro allocator; checkpoint checkpoints/<scenario>-torta.pt.")
    checkpoint_variant = "torta"
    round_robin = False

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        super().__init__(OTConfig(demand_source="last"), inner="torta")
        self.checkpoint = checkpoint

    # ---- setup ----
    def reset(self, world, seed: int) -> None:
        super().reset(world, seed)
        if self.round_robin:
            self.allocator = PlannedAllocator(RoundRobinInRegion(), world.n_regions, len(world.models), seed)
        self._load_agent(world)
        self._init_state(world)

    def _load_agent(self, world) -> None:
        from dataclasses import replace

        from torta.errors import InputError
        from torta.rl.ppo import Agent
        from torta.rl.train import VARIANTS, default_checkpoint, load_checkpoint

        path = Path(self.checkpoint) if self.checkpoint else default_checkpoint(world.name, self.checkpoint_variant)
        sd, meta = load_checkpoint(path)
        env_kw = {k: v for k, v in (meta.get("config", {}).get("env") or {}).items()
                  if k in {f.name for f in fields(EnvConfig)}}
        v = VARIANTS[self.checkpoint_variant]
        try:
            self.ecfg = replace(EnvConfig(**env_kw), use_forecast=v["use_forecast"], ot_base=v["ot_base"])
            want = obs_dim(world.n_regions, self.ecfg)
        except (TypeError, ValueError) as exc:
            raise InputError(str(path.with_suffix(".json")), f"checkpoint sidecar config.env does not fit EnvConfig: "
                             f"{exc}", field="config.env") from None
        check_state_dict(sd, path, want, world)
        self.agent = Agent.from_state_dict(sd)
        self.checkpoint_path = str(path)
        self.checkpoint_meta = meta

    def _init_state(self, world) -> None:
        self.fleet = fleet_from_world(world, self.mean_prompt_tokens, self.mean_output_tokens, self.model_share)
        self.per_day = int(round(86400.0 / float(world.slot_s)))
        r, m = world.n_regions, len(world.models)
        need = self.per_day + max(4, self.ecfg.history_slots)
        h = self._history_array()
        if h is None or h.shape[0] < need:
            pad = np.zeros((need - (0 if h is None else h.shape[0]), r, m))
            h = pad if h is None else np.concatenate([pad, h])
            self._short_history = True
        else:
            self._short_history = False
        self._hist = list(h[-need:])
        self._need = need
        self._prev_models = None
        self._prev_agg = None
        self._w_prev = np.zeros(r)
        self._observed = np.zeros((r, m))
        ok = self.fleet.rps_rm > 0
        self._work = np.where(ok, 1.0 / np.where(ok, self.fleet.rps_rm, 1.0), 0.0)
        self.agent_ms = 0.0

    def _history_array(self) -> np.ndarray | None:
        h = getattr(self, "history", None)
        if h is None or h.height == 0:
            return None
        ridx = {reg.name: i for i, reg in enumerate(self.world.regions)}
        midx = {mm: i for i, mm in enumerate(self.world.models)}
        lo, hi = int(h["slot"].min()), int(h["slot"].max())
        out = np.zeros((hi - lo + 1, len(ridx), len(midx)))
        for series, slot, y in h.select("series", "slot", "y").iter_rows():
            reg, _, mod = str(series).partition("|")
            if reg in ridx and mod in midx and y is not None:
                out[int(slot) - lo, ridx[reg], midx[mod]] += float(y)
        return out

    # ---- the OT part: demand for the OT plan ----
    def demand(self, state: SlotState, observed: np.ndarray) -> np.ndarray:
        if state.slot > 0:
            self._hist.append(np.asarray(observed, dtype=float))
            self._hist = self._hist[-self._need:]
        self._observed = np.asarray(observed, dtype=float)
        hist = np.asarray(self._hist)
        if self.ecfg.use_forecast and not (self._short_history and state.slot < self._need):
            t, r, m = hist.shape
            return seasonal_forecast(hist.reshape(t, r * m), 1, self.per_day)[0].reshape(r, m)
        return hist[-1]

    # ---- observation and plan ----
    def observe(self, state: SlotState, ot_models: np.ndarray) -> np.ndarray:
        f = self.fleet
        hist = np.asarray(self._hist)  # (T, R, M)
        last = hist[-1]
        w = last / np.maximum(last.sum(1, keepdims=True), 1e-12)
        w = np.where(last.sum(1, keepdims=True) > 0, w, 1.0 / last.shape[1])
        agg_ot = np.einsum("im,mij->ij", w, ot_models)
        self._agg_w = w
        cap = f.servers * f.slot_s * f.capacity_derate
        if self._prev_models is not None:
            arrived = np.einsum("im,mij,jm->j", self._observed, self._prev_models, self._work)
        else:
            arrived = np.zeros(f.n_regions)
        w_now = np.asarray(state.backlog_s, dtype=float)
        served = np.clip(arrived + self._w_prev - w_now, 0.0, cap)
        util = np.where(f.servers > 0, served / (np.maximum(f.servers, 1.0) * f.slot_s), 0.0)
        self._w_prev = w_now
        price_now = np.asarray(state.price_usd_per_mwh, dtype=float)
        price_next = f.price_at(state.t_start_s + state.slot_s) if f.price_usd_per_mwh.size else price_now
        prev = self._prev_agg if self._prev_agg is not None else agg_ot
        return build_obs(f, self.ecfg, hist.sum(-1)[None], util[None], w_now[None], price_now[None],
                         np.asarray(price_next, dtype=float)[None], prev[None], agg_ot[None],
                         np.array([state.slot % self.per_day]), self.per_day)

    def apply(self, ot_models: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Per-model plans (M, R, R) from the OT plans and the actor's offsets (R, R)."""
        f = self.fleet
        plans = np.empty_like(ot_models)
        for m in range(ot_models.shape[0]):
            cols = f.rps_rm[:, m] > 0
            if not cols.any():
                plans[m] = ot_models[m]
                continue
            base = np.log(ot_models[m] + self.ecfg.base_eps) if self.ecfg.ot_base else np.zeros_like(delta)
            plans[m] = plan_from_action(base, delta, cols)
        return plans

    def plan(self, state: SlotState) -> None:
        import time

        super().plan(state)
        ot_models = self.last_plans
        t0 = time.perf_counter()
        obs = self.observe(state, ot_models)
        delta = self.agent.act_mean(obs)[0]
        self.agent_ms += (time.perf_counter() - t0) * 1000.0
        self._set(ot_models, delta)
        return None

    def _set(self, ot_models: np.ndarray, delta: np.ndarray | None, plan: np.ndarray | None = None) -> np.ndarray:
        """Install per-model plans: from the actor's delta, or one given aggregate plan (R, R) for every
        model (masked to the regions able to serve it). Returns the aggregate plan in force."""
        if plan is not None:
            plans = self._broadcast_plan(plan, ot_models.shape[0])
        else:
            plans = self.apply(ot_models, delta)
        self.allocator.set_plan(plans)
        self.last_plans = plans
        self._prev_models = plans
        self._prev_agg = np.einsum("im,mij->ij", self._agg_w, plans)
        return self._prev_agg

    def _broadcast_plan(self, plan: np.ndarray, n_models: int) -> np.ndarray:
        f = self.fleet
        out = np.zeros((n_models,) + plan.shape)
        for m in range(n_models):
            cols = f.rps_rm[:, m] > 0
            p = np.where(cols[None, :], plan, 0.0)
            s = p.sum(1, keepdims=True)
            near = np.eye(plan.shape[0])[np.maximum(f.near_rm[:, m], 0)]
            out[m] = np.where(s > 0, p / np.where(s > 0, s, 1.0), near)
        return out

    def params(self) -> dict:
        meta = getattr(self, "checkpoint_meta", {}) or {}
        return {**super().params(), "checkpoint": getattr(self, "checkpoint_path", ""),
                "checkpoint_git_commit": meta.get("git_commit", ""), "checkpoint_seed": meta.get("seed", -1),
                "allocator": "round-robin" if self.round_robin else "torta",
                "agent_ms_total": float(getattr(self, "agent_ms", 0.0))}


class TortaNoForecast(RLPolicy):
    name = "torta-no-forecast"
    description = "TORTA ablation: forecast features and OT demand replaced by the last observed slot."
    checkpoint_variant = "torta-no-forecast"


class TortaNoMicro(RLPolicy):
    name = "torta-no-micro"
    description = "TORTA ablation: round robin inside the serving region instead of the micro allocator."
    checkpoint_variant = "torta"
    round_robin = True


for _cls in (RLPolicy, TortaNoForecast, TortaNoMicro):
    register(_cls.name, _cls, _cls.description)
