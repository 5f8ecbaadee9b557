"""`torta-horizon-ppo`: `torta-horizon` (the receding-horizon LP + the target-following micro layer) with a PPO
actor trained on the surrogate with warm-model state (torta.rl.warm_env, planner "horizon") moving the LP's
routing shares: each slot the LP decides shares S_m and placement targets as torta-horizon does, then
P_m[i] = softmax(log(S_m[i] + eps) + delta[i]) over the regions able to serve m, delta = the actor's mean
action on the observation the surrogate builds (`torta.rl.env.build_obs` + the placement); the targets go
to the micro layer unchanged. Checkpoint `<scenario>-torta-horizon-ppo.pt` (`torta train --variant
torta-horizon-ppo`)."""

from __future__ import annotations

import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from torta.planner.horizon_policy import TortaHorizon
from torta.policy.base import SlotState
from torta.policy.registry import register
from torta.rl.env import EnvConfig, build_obs
from torta.rl.learned import RLPolicy, check_state_dict
from torta.rl.warm_env import apply_offsets, placement_feature, warm_obs_dim

VARIANT = "torta-horizon-ppo"


class TortaHorizonPPO(TortaHorizon):
    name = VARIANT
    description = ("torta-horizon with a PPO actor (trained on the surrogate with warm-model state) offsetting "
                   "the horizon LP's routing shares; checkpoint checkpoints/<scenario>-torta-horizon-ppo.pt.")

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        super().__init__()
        self.checkpoint = checkpoint

    def reset(self, world, seed: int) -> None:
        from torta.rl.warm import warm_fleet_from_world

        super().reset(world, seed)
        self._load_agent(world)
        self.wf = warm_fleet_from_world(world, self.mean_prompt_tokens, self.mean_output_tokens, self.model_share)
        f = self.wf.base
        self.per_day = int(round(86400.0 / float(world.slot_s)))
        r, m = world.n_regions, len(world.models)
        need = self.per_day + max(4, self.ecfg.history_slots)
        h = RLPolicy._history_array(self)
        if h is None or h.shape[0] < need:
            pad = np.zeros((need - (0 if h is None else h.shape[0]), r, m))
            h = pad if h is None else np.concatenate([pad, h])
        self._hist = list(h[-need:])
        self._need = need
        self._observed = np.zeros((r, m))
        self._prev_models = None
        self._prev_agg = None
        self._w_prev = np.zeros(r)
        ok = f.rps_rm > 0
        self._work = np.where(ok, 1.0 / np.where(ok, f.rps_rm, 1.0), 0.0)
        self.agent_ms = 0.0

    def _load_agent(self, world) -> None:
        from torta.errors import InputError
        from torta.rl.ppo import Agent
        from torta.rl.train import default_checkpoint, load_checkpoint

        path = Path(self.checkpoint) if self.checkpoint else default_checkpoint(world.name, VARIANT)
        sd, meta = load_checkpoint(path)
        env_kw = {k: v for k, v in (meta.get("config", {}).get("env") or {}).items()
                  if k in {f.name for f in fields(EnvConfig)}}
        try:
            self.ecfg = replace(EnvConfig(**env_kw), use_forecast=True, ot_base=True)
        except (TypeError, ValueError) as exc:
            raise InputError(str(path.with_suffix(".json")), f"checkpoint sidecar config.env does not fit EnvConfig: "
                             f"{exc}", field="config.env") from None
        check_state_dict(sd, path, warm_obs_dim(world.n_regions, len(world.models), self.ecfg), world)
        self.agent = Agent.from_state_dict(sd)
        self.checkpoint_path = str(path)
        self.checkpoint_meta = meta

    def demand(self, state: SlotState, observed: np.ndarray) -> np.ndarray:
        if state.slot > 0:
            self._hist.append(np.asarray(observed, dtype=float))
            self._hist = self._hist[-self._need:]
        self._observed = np.asarray(observed, dtype=float)
        return super().demand(state, observed)

    def observe(self, state: SlotState, shares: np.ndarray) -> np.ndarray:
        """The surrogate's observation (torta.rl.warm_env.WarmEnv._observe) of the live state; utilisation
        per region estimated from the observed demand, the plans in force and the backlog change."""
        f = self.wf.base
        hist = np.asarray(self._hist)
        last = hist[-1]
        tot = last.sum(1, keepdims=True)
        self._mix = np.where(tot > 0, last / np.maximum(tot, 1e-12), 1.0 / last.shape[1])
        agg = np.einsum("im,mij->ij", self._mix, shares)
        cap = f.servers * f.slot_s * f.capacity_derate
        arrived = (np.einsum("im,mij,jm->j", self._observed, self._prev_models, self._work)
                   if self._prev_models is not None else np.zeros(f.n_regions))
        w_now = np.asarray(state.backlog_s, dtype=float)
        served = np.clip(arrived + self._w_prev - w_now, 0.0, cap)
        util = np.where(f.servers > 0, served / (np.maximum(f.servers, 1.0) * f.slot_s), 0.0)
        self._w_prev = w_now
        price_now = np.asarray(state.price_usd_per_mwh, dtype=float)
        price_next = np.asarray(f.price_at(state.t_start_s + state.slot_s), dtype=float)
        prev = self._prev_agg if self._prev_agg is not None else agg
        obs = build_obs(f, self.ecfg, hist.sum(-1)[None], util[None], w_now[None], price_now[None], price_next[None],
                        prev[None], agg[None], np.array([state.slot % self.per_day]), self.per_day)
        n = np.minimum(np.asarray(state.warm_servers, dtype=float), self.wf.capable_rm)
        return np.concatenate([obs, placement_feature(self.wf, n[None])], axis=1)

    def plan(self, state: SlotState) -> None:
        super().plan(state)  # the LP's shares (self.last_plans) and targets (set on the micro layer)
        shares = self._shares_seen = self.last_plans
        t0 = time.perf_counter()
        delta = self.agent.act_mean(self.observe(state, shares))[0]
        plans = apply_offsets(self.wf, shares[None], delta[None], self.ecfg, True)[0]
        self.agent_ms += (time.perf_counter() - t0) * 1000.0
        self.allocator.set_plan(plans)
        self.last_plans = plans
        self._prev_models = plans
        self._prev_agg = np.einsum("im,mij->ij", self._mix, plans)
        return None

    def params(self) -> dict:
        meta = getattr(self, "checkpoint_meta", {}) or {}
        return {**super().params(), "checkpoint": getattr(self, "checkpoint_path", ""),
                "checkpoint_git_commit": meta.get("git_commit", ""), "checkpoint_seed": meta.get("seed", -1),
                "agent_ms_total": float(getattr(self, "agent_ms", 0.0))}


register(TortaHorizonPPO.name, TortaHorizonPPO, TortaHorizonPPO.description)
