"""PPO (clipped surrogate objective) with an optimal-transport KL term, readable top to bottom in the
style of cleanrl's ppo_continuous_action.py, but importable: `Agent` (actor and critic MLPs, a Gaussian
on per-origin plan logits with a state-independent log-std), `gae`, `kl_to_plan`, `ppo_update`.

Loss per minibatch:
    L = -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A)              (policy, advantages normalised)
        + c_v (V - R)^2 / 2 ... as 0.5 c_v mean squared error        (value)
        - c_e entropy                                                (exploration)
        + lambda_OT mean_rows KL(P_OT[i] || P_theta[i])              (OT supervision)
where P_theta = row softmax(base + mean action) is the plan of the policy's mean and P_OT the OT plan
of the same state (paper-torta.md §3.2, "OT supervision"; lambda_OT decays over training).
Hyperparameters: paper-torta.md §8 (Adam 3e-4, gamma 0.99, GAE lambda 0.95, clip 0.2, value coefficient
0.5, grad-norm clip 0.5); epochs and minibatch sizes are set for the 10-minute CPU budget (`PPOConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


LOG_RATIO_MAX = 20.0  # bound on the per-sample log probability ratio before exp (numerical guard)


@dataclass(frozen=True)
class PPOConfig:
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    epochs: int = 4
    minibatch: int = 256
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 0.5
    hidden: int = 128
    init_log_std: float = -1.0

    def __post_init__(self) -> None:
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1 and self.clip > 0 and self.lr > 0):
            raise ValueError(f"invalid PPOConfig {self}")
        if self.epochs < 1 or self.minibatch < 1 or self.hidden < 1:
            raise ValueError("epochs, minibatch and hidden must be >= 1")


def _layer(i: int, o: int, std: float = float(np.sqrt(2))) -> nn.Linear:
    lin = nn.Linear(i, o)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.constant_(lin.bias, 0.0)
    return lin


class Agent(nn.Module):
    """Actor-critic over flat observations. The action is the (R x R) logit offset `delta`; the observation
    is standardised with fixed statistics stored as buffers (`set_obs_stats`), so a checkpoint carries
    them and a state dict alone rebuilds the agent (`Agent.from_state_dict`)."""

    def __init__(self, obs_dim: int, n_regions: int, hidden: int = 128, init_log_std: float = -1.0) -> None:
        super().__init__()
        act = n_regions * n_regions
        self.n_regions = n_regions
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.critic = nn.Sequential(_layer(obs_dim, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(),
                                    _layer(hidden, 1, 1.0))
        self.actor = nn.Sequential(_layer(obs_dim, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(),
                                   _layer(hidden, act, 0.01))
        self.log_std = nn.Parameter(torch.full((act,), float(init_log_std)))

    @classmethod
    def from_state_dict(cls, sd: dict) -> "Agent":
        obs_dim = int(sd["obs_mean"].shape[0])
        act = int(sd["log_std"].shape[0])
        r = int(round(act ** 0.5))
        hidden = int(sd["actor.0.weight"].shape[0])
        agent = cls(obs_dim, r, hidden)
        agent.load_state_dict(sd)
        return agent

    def set_obs_stats(self, obs: np.ndarray) -> None:
        x = torch.as_tensor(obs, dtype=torch.float32)
        self.obs_mean.copy_(x.mean(0))
        self.obs_std.copy_(x.std(0).clamp_min(1e-3))

    def _norm(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs - self.obs_mean) / self.obs_std).clamp(-10.0, 10.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self._norm(obs)).squeeze(-1)

    def dist(self, obs: torch.Tensor) -> torch.distributions.Normal:
        mean = self.actor(self._norm(obs))
        return torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean))

    @torch.no_grad()
    def act_mean(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action (the mean), (B, R, R) float64."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        r = self.n_regions
        return self.actor(self._norm(x)).double().numpy().reshape(-1, r, r)


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_value: np.ndarray,
        gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over a (T, B) rollout.

    dones[t] = 1 when the episode ended with step t (no bootstrap from t + 1); last_value (B,) is V of the
    state after step T - 1 (ignored where dones[T - 1]). Returns (advantages, returns = advantages + values)."""
    T = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=float)
    last = np.zeros(rewards.shape[1:], dtype=float)
    for t in reversed(range(T)):
        next_v = last_value if t == T - 1 else values[t + 1]
        nonterm = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_v * nonterm - values[t]
        last = delta + gamma * lam * nonterm * last
        adv[t] = last
    return adv, adv + values


def kl_to_plan(target: torch.Tensor, base: torch.Tensor, mean: torch.Tensor, col_ok: torch.Tensor) -> torch.Tensor:
    """Mean over samples and origin rows of KL(target row || softmax(base + mean) row); (N, R, R) inputs."""
    z = (base + mean).masked_fill(~col_ok, float("-inf"))
    logp = torch.log_softmax(z, dim=-1)
    t = target.clamp_min(0.0)
    kl = torch.where(t > 0, t * (torch.log(t.clamp_min(1e-12)) - logp.clamp_min(-1e9)), torch.zeros_like(t))
    return kl.sum(-1).mean()


def ppo_update(agent: Agent, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor], cfg: PPOConfig,
               kl_coef: float, col_ok: torch.Tensor, gen: torch.Generator) -> dict[str, float]:
    """`cfg.epochs` passes of clipped PPO over the flat batch (obs, act, logp, adv, ret, val, ot, base)."""
    n = batch["obs"].shape[0]
    r = agent.n_regions
    stats = {"policy_loss": [], "value_loss": [], "entropy": [], "kl_to_ot": [], "approx_kl": [], "clipfrac": []}
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, cfg.minibatch):
            idx = perm[s:s + cfg.minibatch]
            d = agent.dist(batch["obs"][idx])
            logp = d.log_prob(batch["act"][idx]).sum(-1)
            # Bounded before exp: with ~1,400 action dimensions (chinanet, 38 regions) a small step of the
            # mean moves the summed log-probability by tens of nats, exp overflows to inf, and inf in the
            # pessimistic term made the gradient, then every weight, NaN (chinanet torta-no-forecast,
            # seed 0). |log ratio| > LOG_RATIO_MAX is far outside the clip range either way.
            log_ratio = (logp - batch["logp"][idx]).clamp(-LOG_RATIO_MAX, LOG_RATIO_MAX)
            ratio = log_ratio.exp()
            adv = batch["adv"][idx]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8) if adv.numel() > 1 else adv
            pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
            v = agent.value(batch["obs"][idx])
            v_loss = 0.5 * (v - batch["ret"][idx]).pow(2).mean()
            ent = d.entropy().sum(-1).mean()
            kl_ot = kl_to_plan(batch["ot"][idx], batch["base"][idx], d.mean.view(-1, r, r), col_ok)
            loss = pg + cfg.vf_coef * v_loss - cfg.ent_coef * ent + kl_coef * kl_ot
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            opt.step()
            with torch.no_grad():
                stats["policy_loss"].append(float(pg))
                stats["value_loss"].append(float(v_loss))
                stats["entropy"].append(float(ent))
                stats["kl_to_ot"].append(float(kl_ot))
                stats["approx_kl"].append(float(((ratio - 1) - log_ratio).mean()))
                stats["clipfrac"].append(float(((ratio - 1.0).abs() > cfg.clip).float().mean()))
    return {k: float(np.mean(v)) for k, v in stats.items()}
