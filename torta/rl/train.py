"""Training of the learned macro policy on the surrogate: `train(scenario, workload, seed, ...) ->
(state_dict, curves)` and checkpoints (`save_checkpoint` / `load_checkpoint`, a plain state dict loaded
with `weights_only=True`, plus a JSON sidecar with the variant, the settings and the provenance).

Protocol (DESIGN.md, Evaluation protocol): episodes are days 2-10 of the workload (day 1 only feeds the
first day's history and forecast), drawn from the demand of `demand_seeds` workload seeds with a
per-episode, per-origin log-normal demand scale; day 11 (seed 0's demand) selects the checkpoint: the
deterministic policy (the Gaussian's mean) is evaluated there every `eval_every` updates and the best
validation return is kept (update 0, the untrained policy, included). Days 12-14 are never seen.

Variants: `torta` (plan around the OT plan, forecast features, KL to the OT plan with lambda_OT held at
`kl_start` for the first `kl_hold` of training, then decaying linearly to `kl_end`), `torta-no-forecast`
(the same with the forecast features and the OT plan's demand replaced by the last observed slot),
`ppo-only` (plan = softmax of the logits alone, no OT input, no KL term).

The critic is trained on rewards shifted by +(w_rt + w_lb + w_cost), so the reference policy scores about
0 per slot; a constant shift per step does not change the optimal policy in fixed-length episodes.
Deterministic on CPU: torch.manual_seed, torch.use_deterministic_algorithms(True), fixed thread count,
numpy generators seeded from `seed`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import torch

from torta.config import EVAL_PROTOCOL
from torta.rl.env import EnvConfig, SurrogateEnv, base_logits, run_fixed
from torta.rl.fleet import SurrogateFleet, fleet_from_world, load_demand
from torta.rl.ppo import Agent, PPOConfig, gae, ppo_update

VARIANTS: dict[str, dict[str, bool]] = {
    "torta": {"use_forecast": True, "ot_base": True, "ot_kl": True},
    "torta-no-forecast": {"use_forecast": False, "ot_base": True, "ot_kl": True},
    "ppo-only": {"use_forecast": True, "ot_base": False, "ot_kl": False},
    # on the surrogate with warm-model state (torta.rl.warm_env): offsets to torta-horizon's shares, and
    # ppo-only's plan (softmax of the logits alone) with reactive placement
    "torta-horizon-ppo": {"use_forecast": True, "ot_base": True, "ot_kl": True, "warm": "horizon"},
    "ppo-only-warm": {"use_forecast": True, "ot_base": False, "ot_kl": False, "warm": "none"},
}

# EnvConfig.base_eps for `torta-horizon-ppo` (plan = softmax(log(LP share + eps) + offsets)): each region the LP
# gives no share of a model still gets about eps / (1 + R eps) of it before any offset (abilene, 12 regions: 1.6 %
# each at the plain surrogate's 0.02), load the micro layer can only serve by loading the model there. Chosen on
# validation day 11 (abilene, servegen-mix-14d, whole day after 2 h of warm-up, S = 5 s; the rule of
# HorizonConfig's tuning: lowest mean response within 2x least-loaded-d4's 57 switches), retrained per value:
# 0.02 -> 6.540 s, 150 switches; 0.001 -> 6.739 s, 85 switches (torta-horizon alone: 6.740 s, 98).
HORIZON_BASE_EPS = 0.001


@dataclass(frozen=True)
class TrainConfig:
    variant: str = "torta"
    n_envs: int = 16
    updates: int = 250  # ~5-7 min on one shared core for abilene (the 10-minute budget)
    train_days: tuple[int, ...] = tuple(range(2, 11))
    val_day: int = EVAL_PROTOCOL.validation_day
    demand_seeds: tuple[int, ...] = (0, 1, 2)
    demand_noise: float = 0.1
    kl_start: float = 1.0
    kl_end: float = 0.05
    kl_hold: float = 0.1  # share of the updates at kl_start before the linear decay (paper-torta.md §8)
    eval_every: int = 10
    threads: int = 1  # 2 threads on the shared 2-core box ran the update 8x slower (contention)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    env: EnvConfig = field(default_factory=EnvConfig)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {self.variant!r}")
        if self.n_envs < 1 or self.updates < 0 or self.eval_every < 1 or self.threads < 1:
            raise ValueError("n_envs, eval_every and threads must be >= 1 and updates >= 0")

    def env_config(self) -> EnvConfig:
        v = VARIANTS[self.variant]
        return replace(self.env, use_forecast=v["use_forecast"], ot_base=v["ot_base"], demand_noise=self.demand_noise)

    def kl_coef(self, update: int) -> float:
        if not VARIANTS[self.variant]["ot_kl"]:
            return 0.0
        hold = int(self.kl_hold * self.updates)
        if update < hold:
            return self.kl_start
        frac = (update - hold) / max(self.updates - hold, 1)
        return self.kl_start + (self.kl_end - self.kl_start) * min(frac, 1.0)


def _seed_all(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)


def evaluate(agent: Agent | None, env: SurrogateEnv, series: list[int], days: list[int]) -> dict[str, float]:
    """Deterministic run of `agent` (None: the untouched base plan, delta = 0) over the given days, one
    env each. Returns mean per-slot reward (episode return / slots), mean RT, LB, cost, churn."""
    sub = SurrogateEnv(env.f, env.demand, sorted(set(days)), len(series), env.cfg, seed=0)
    sub._refs = env._refs
    obs = sub.reset(series=np.asarray(series), days=np.asarray(days))
    tot = {"return": 0.0, "rt_s": 0.0, "lb": 0.0, "cost_usd": 0.0, "churn": 0.0}
    for _ in range(sub.per_day):
        delta = agent.act_mean(obs) if agent is not None else np.zeros((sub.B, env.f.n_regions, env.f.n_regions))
        obs, r, _, info = sub.step(delta)
        tot["return"] += float(r.mean())
        for k in ("rt_s", "lb", "cost_usd", "churn"):
            tot[k] += float(np.mean(info[k])) / sub.per_day
    return tot


def train_on(fleet: SurrogateFleet, demand: np.ndarray, seed: int, config: TrainConfig = TrainConfig(), *,
             progress: bool = True, log: Callable[[str], None] | None = None,
             warm_fleet: Any = None) -> tuple[dict, pl.DataFrame]:
    """Train on given fleet facts and demand (S, slots, R, M); see the module docstring. The warm variants
    (VARIANTS[...]["warm"]) train on `torta.rl.warm_env.WarmEnv` over `warm_fleet` (a `WarmFleet` whose
    base is `fleet`), with its own evaluation and myopic-OT validation baseline."""
    cfg = config
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    _seed_all(seed, cfg.threads)
    ecfg = cfg.env_config()
    planner = VARIANTS[cfg.variant].get("warm")
    if planner is not None:
        from torta.rl.warm_env import WarmEnv

        if warm_fleet is None:
            raise ValueError(f"variant {cfg.variant!r} trains on the warm surrogate: give warm_fleet")
        # the horizon LP's decisions along its own days, solved once per (series, day): an LP solve per env
        # and slot (~7-40 ms on abilene) would make one update of 16 days take a minute (WarmEnv.cached_decisions)
        env = WarmEnv(warm_fleet, demand, cfg.train_days, cfg.n_envs, ecfg, planner=planner, seed=seed,
                      decision_cache=planner == "horizon")
    else:
        env = SurrogateEnv(fleet, demand, cfg.train_days, cfg.n_envs, ecfg, seed=seed)
    r_n = fleet.n_regions
    col_ok = torch.as_tensor(env.col_ok)
    agent = Agent(env.obs_dim, r_n, cfg.ppo.hidden, cfg.ppo.init_log_std)
    # observation statistics from one round of episodes under the base plan (fixed afterwards)
    obs = env.reset()
    seen = [obs]
    for _ in range(env.per_day - 1):
        obs, *_ = env.step(np.zeros((env.B, r_n, r_n)))
        seen.append(obs)
    agent.set_obs_stats(np.concatenate(seen))
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.ppo.lr, eps=1e-5)
    gen = torch.Generator().manual_seed(seed)
    shift = ecfg.w_rt + ecfg.w_lb + ecfg.w_cost
    val_series, val_days = [0], [cfg.val_day]
    if planner is not None:
        ref_val = env.reference_eval(val_series, val_days) if cfg.val_day else None
    else:
        ref_val = evaluate(None, replace_env(env, ecfg), val_series, val_days) if cfg.val_day else None
    rows: list[dict[str, Any]] = []
    best_sd, best_val = None, -np.inf
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.updates, desc=f"train {cfg.variant} {fleet.name}", unit="update", file=sys.stderr)
    T, B = env.per_day, env.B

    def validate(update: int) -> dict[str, float]:
        nonlocal best_sd, best_val
        v = env.evaluate(agent, val_series, val_days) if planner is not None else \
            evaluate(agent, env, val_series, val_days)
        if v["return"] > best_val:
            best_val = v["return"]
            best_sd = {k: t.detach().clone() for k, t in agent.state_dict().items()}
        return v

    v0 = validate(0)
    t0 = time.perf_counter()
    for u in range(cfg.updates):
        kl_coef = cfg.kl_coef(u)
        obs = env.reset()
        buf = {k: [] for k in ("obs", "act", "logp", "val", "rew", "done", "ot", "base")}
        ep_ret = np.zeros(B)
        info_sum = {"rt_s": 0.0, "lb": 0.0, "cost_usd": 0.0, "churn": 0.0}
        for t in range(T):
            if planner is not None:
                ot, base = env.kl_target()
            else:
                ot = env.ot.copy()
                base = base_logits(env.ot, env.ot.shape, ecfg)
            x = torch.as_tensor(obs)
            with torch.no_grad():
                d = agent.dist(x)
                a = d.sample()
                logp = d.log_prob(a).sum(-1)
                v = agent.value(x)
            obs2, rew, done, info = env.step(a.double().numpy().reshape(B, r_n, r_n))
            ep_ret += rew
            for k in info_sum:
                info_sum[k] += float(np.mean(info[k])) / T
            buf["obs"].append(x)
            buf["act"].append(a)
            buf["logp"].append(logp)
            buf["val"].append(v.numpy())
            buf["rew"].append(rew + shift)
            buf["done"].append(done.astype(float))
            buf["ot"].append(ot)
            buf["base"].append(base)
            obs = obs2
        adv, ret = gae(np.asarray(buf["rew"]), np.asarray(buf["val"]), np.asarray(buf["done"]), np.zeros(B),
                       cfg.ppo.gamma, cfg.ppo.gae_lambda)
        batch = {"obs": torch.cat(buf["obs"]), "act": torch.cat(buf["act"]), "logp": torch.cat(buf["logp"]),
                 "adv": torch.as_tensor(adv.reshape(-1), dtype=torch.float32),
                 "ret": torch.as_tensor(ret.reshape(-1), dtype=torch.float32),
                 "ot": torch.as_tensor(np.concatenate(buf["ot"]), dtype=torch.float32),
                 "base": torch.as_tensor(np.concatenate(buf["base"]), dtype=torch.float32)}
        st = ppo_update(agent, opt, batch, cfg.ppo, kl_coef, col_ok, gen)
        row = {"update": u + 1, "episodes": (u + 1) * B, "episode_return": float(ep_ret.mean()),
               "rt_s": info_sum["rt_s"], "load_std": info_sum["lb"], "cost_usd": info_sum["cost_usd"],
               "churn": info_sum["churn"], "kl_coef": kl_coef, **st,
               "std": float(agent.log_std.detach().exp().mean()), "val_return": float("nan"),
               "val_ref_return": float(ref_val["return"]) if ref_val else float("nan"),
               "val_base_return": float(v0["return"]),
               "wall_s": time.perf_counter() - t0}
        if (u + 1) % cfg.eval_every == 0 or u + 1 == cfg.updates:
            vv = validate(u + 1)
            row["val_return"] = vv["return"]
            row["val_rt_s"] = vv["rt_s"]
            if "switches" in vv:
                row["val_switches"] = vv["switches"]
        rows.append(row)
        if bar is not None:
            bar.set_postfix(ret=f"{ep_ret.mean():.1f}", kl=f"{st['kl_to_ot']:.3f}",
                            val=f"{row['val_return']:.1f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    if cfg.updates == 0:
        rows.append({"update": 0, "episodes": 0, "episode_return": float("nan"), "val_return": v0["return"]})
    curves = pl.DataFrame(rows, infer_schema_length=None).with_columns(pl.col(pl.Float64).fill_null(float("nan")))
    log(f"train {cfg.variant}: best validation return {best_val:.2f} (untrained {v0['return']:.2f}, "
        f"myopic-OT base {ref_val['return'] if ref_val else float('nan'):.2f})")
    return best_sd, curves


def replace_env(env: SurrogateEnv, ecfg: EnvConfig) -> SurrogateEnv:
    """The same env with the OT plan on the last observed slot (the myopic-OT reference for validation)."""
    sub = SurrogateEnv(env.f, env.demand, env.days, env.B, replace(ecfg, use_forecast=False, ot_base=True), seed=0)
    sub._refs = env._refs
    return sub


def train(scenario: str, workload: str, seed: int = 0, config: TrainConfig = TrainConfig(), *,
          progress: bool = True, log: Callable[[str], None] | None = None) -> tuple[dict, pl.DataFrame]:
    """Train the `config.variant` policy for `scenario` on `workload` (days 2-10 train, day 11 selects).
    Returns (state_dict, curves: one row per update: update, episodes, episode_return, rt_s, load_std,
    cost_usd, churn, kl_coef, policy_loss, value_loss, entropy, kl_to_ot, approx_kl, clipfrac, std,
    val_return, val_ref_return, wall_s)."""
    from torta.fleet.scenario import load_scenario

    world = load_scenario(scenario)
    demand = load_demand(workload, scenario, world, config.demand_seeds)
    if VARIANTS[config.variant].get("warm") is not None:
        from torta.rl.warm import warm_fleet_from_world

        wf = warm_fleet_from_world(world, *_lengths(workload, scenario), _model_share(demand, config))
        return train_on(wf.base, demand, seed, config, progress=progress, log=log, warm_fleet=wf)
    fleet = fleet_from_world(world, *_lengths(workload, scenario), _model_share(demand, config))
    return train_on(fleet, demand, seed, config, progress=progress, log=log)


def _lengths(workload: str, scenario: str) -> tuple[float, float]:
    """Mean prompt and output tokens of the workload's length pool (the same values `torta compare`
    gives the planners)."""
    try:
        from torta.workload.build import prepare

        plan = prepare(workload, scenario, 0)
        return float(plan.lengths.mean_prompt_tokens), float(plan.lengths.mean_output_tokens)
    except Exception:  # noqa: BLE001 - fall back to the planner layer's defaults
        from torta.planner.fleetcost import DEFAULT_MEAN_OUTPUT_TOKENS, DEFAULT_MEAN_PROMPT_TOKENS

        return DEFAULT_MEAN_PROMPT_TOKENS, DEFAULT_MEAN_OUTPUT_TOKENS


def _model_share(demand: np.ndarray, config: TrainConfig) -> np.ndarray | None:
    per_day = demand.shape[1] // 14 if demand.shape[1] >= 14 else demand.shape[1]
    s = demand[:, : max(config.train_days) * per_day].sum(axis=(0, 1, 2))
    return s if s.sum() > 0 else None


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def save_checkpoint(state_dict: dict, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """torch.save of the state dict (unique temporary file, then rename) + `<path>.json` with `meta`."""
    from torta.fileio import atomic_file, atomic_write_text

    p = Path(path)
    with atomic_file(p) as tmp:
        torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp)
    if meta is not None:
        atomic_write_text(p.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return p


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """(state_dict, meta) from `save_checkpoint`; the tensors are loaded with weights_only=True."""
    from torta.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(str(p), "checkpoint not found; train one with `torta train --scenario S --variant V`")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is an input error here
        raise InputError(str(p), f"not a state-dict checkpoint loadable with weights_only=True: {e}") from None
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise InputError(str(p), f"expected a state dict (names -> tensors), found {type(sd).__name__}")
    mp = p.with_suffix(".json")
    meta: object = {}
    if mp.is_file():
        try:
            meta = json.loads(mp.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError(str(mp), f"broken checkpoint sidecar: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("config", {}), dict) \
                or not isinstance(meta.get("config", {}).get("env") or {}, dict):
            raise InputError(str(mp), "broken checkpoint sidecar: expected a JSON object whose 'config' and "
                                      "'config.env' are objects", field="config")
    return sd, meta


def config_meta(config: TrainConfig) -> dict:
    d = asdict(config)
    d["train_days"] = list(config.train_days)
    d["demand_seeds"] = list(config.demand_seeds)
    return d


def checkpoint_dir() -> Path:
    """`TORTA_CHECKPOINTS`, else the repository's `checkpoints/` (beside the `torta` package)."""
    env = os.environ.get("TORTA_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "checkpoints"


def default_checkpoint(scenario: str, variant: str) -> Path:
    """Where the policies look for a checkpoint: <checkpoint_dir>/<scenario>-<variant>.pt."""
    return checkpoint_dir() / f"{scenario}-{variant}.pt"
