"""An environment over the real request-level replay, one step per macro slot, and the surrogate's gap.

`ReplayEnv(world, requests, seed=...)`: `reset()` opens the replay (`torta.sim.replay.ReplayRun`) and
advances it to the first slot boundary; the observation is the surrogate's `build_obs` of the
`SlotState` the policy is about to see there (`Engine.pending_slot_state`) and the OT plan on it.
`step(delta=...)` (the actor's logit offsets around the OT plan, as in the surrogate) or
`step(plan=...)` (one (R, R) plan for every model, masked to the regions able to serve it) hands the
action to a bridge policy, whose `plan` the engine calls at that boundary, and advances the replay to
the next boundary, in the same thread (`run(until_s=...)` resumes where it stopped; no thread, no
queues). The replay's per-request results exist only when it finishes: `step` returns reward 0.0 until
`done`, and the final step's info holds the per-slot metrics (`slot_metrics`: slot, requests, rt_s, util
per region, load_std) and the per-slot rewards (RT and load-imbalance terms normalised by the episode's
own means, for inspection; training never uses this environment).

`surrogate_gap(...)`: the same plans (the surrogate's myopic OT plans on that day) through the surrogate
and through the replay; per-slot mean response time and utilisation side by side.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from torta.planner.config import OTConfig
from torta.planner.ot_policy import OTPolicy
from torta.rl.env import EnvConfig
from torta.rl.learned import RLPolicy


class _BridgePolicy(RLPolicy):
    """Plans with the action the environment was given for the slot (`observe` ran OT on the same
    state first; `plan` applies the action around that OT plan)."""

    name = "replay-env"
    description = "bridge between ReplayEnv and the replay"

    def __init__(self, env: "ReplayEnv", ecfg: EnvConfig) -> None:
        OTPolicy.__init__(self, OTConfig(demand_source="last"), inner="torta")
        self.env = env
        self.ecfg = ecfg
        self.checkpoint = None
        self.action: tuple[str, np.ndarray] | None = None
        self._ot_models = None

    def _load_agent(self, world) -> None:  # the caller acts; no checkpoint
        self.checkpoint_path, self.checkpoint_meta = "", {}

    def observe_slot(self, state) -> np.ndarray:
        """The observation at the slot `state` starts: OT on it (kept for `plan`), then `observe`."""
        OTPolicy.plan(self, state)
        self._ot_models = self.last_plans
        return self.observe(state, self._ot_models)

    def plan(self, state) -> None:
        if self.action is None:
            raise RuntimeError("ReplayEnv: the engine planned a slot without an action")
        kind, payload = self.action
        self.action = None
        if kind == "plan":
            agg = self._set(self._ot_models, None, payload)
        else:
            agg = self._set(self._ot_models, payload)
        self.env.plans.append(agg)
        return None


class ReplayEnv:
    """See the module docstring. One episode = the whole request frame."""

    def __init__(self, world: Any, requests: pl.DataFrame, *, seed: int = 0, ecfg: EnvConfig = EnvConfig(),
                 history: pl.DataFrame | None = None, mean_prompt_tokens: float | None = None,
                 mean_output_tokens: float | None = None, model_share: np.ndarray | None = None) -> None:
        self.world, self.requests, self.seed, self.ecfg = world, requests, seed, ecfg
        self.ctx = dict(history=history, mean_prompt_tokens=mean_prompt_tokens, mean_output_tokens=mean_output_tokens,
                        model_share=model_share)
        self._run = None
        self._tmp = None

    def reset(self) -> np.ndarray:
        from torta.sim.replay import ReplayRun

        self.close()
        self.plans: list[np.ndarray] = []
        self.policy = _BridgePolicy(self, self.ecfg)
        self.policy.prepare(**self.ctx)
        self._tmp = tempfile.TemporaryDirectory(prefix="torta-replay-env-")
        self._dir = Path(self._tmp.name)
        self._run = ReplayRun(self.world, self.requests, self.policy, seed=self.seed, out_dir=self._dir)
        self._slot = 0
        return self._advance()[0]

    def _advance(self) -> tuple[np.ndarray, float, bool, dict]:
        """Replay up to the boundary of slot `_slot` (not including it): its observation, or the end."""
        run = self._run
        if not run.advance(until_s=self._slot * float(self.world.slot_s)):
            state = run.engine.pending_slot_state()
            self.state = state
            return self.policy.observe_slot(state), 0.0, False, {"slot": state.slot}
        self._run = None
        res = self.result = run.result()
        m = slot_metrics(self.world, res, self._dir)
        rt_ref = max(float(m["rt_s"].mean()), 1e-9)
        lb_ref = max(float(m["load_std"].mean()), 1e-3)
        rewards = -(self.ecfg.w_rt * m["rt_s"].to_numpy() / rt_ref + self.ecfg.w_lb * m["load_std"].to_numpy() / lb_ref)
        return np.zeros((1, 0), dtype=np.float32), 0.0, True, {"slot_metrics": m, "rewards": rewards,
                                                                 "summary": res.summary}

    def step(self, delta: np.ndarray | None = None, plan: np.ndarray | None = None):
        if self._run is None:
            raise RuntimeError("ReplayEnv.step before reset (or after the episode ended)")
        if (delta is None) == (plan is None):
            raise ValueError("give exactly one of delta (R, R) or plan (R, R)")
        if plan is not None:
            self.policy.action = ("plan", np.asarray(plan, dtype=float).reshape(self.world.n_regions, -1))
        else:
            self.policy.action = ("delta", np.asarray(delta, dtype=float).reshape(self.world.n_regions, -1))
        self._slot += 1
        return self._advance()

    def close(self) -> None:
        if self._run is not None:
            self._run.abort()
            self._run = None
        tmp = self._tmp
        if tmp is not None:
            tmp.cleanup()
            self._tmp = None


def slot_metrics(world: Any, result: Any, out_dir: Path) -> pl.DataFrame:
    """Per slot of arrival: requests, mean response (completed requests), server-utilisation mean per
    region (list) and the std of server utilisation (the run's load_std definition)."""
    slot_s = float(world.slot_s)
    comp = pl.read_parquet(out_dir / "completions.parquet", columns=["arrival_s", "response_s"])
    per = (comp.filter(pl.col("response_s").is_not_null())
           .group_by((pl.col("arrival_s") // slot_s).cast(pl.Int64).alias("slot"))
           .agg(pl.len().alias("requests"), pl.col("response_s").mean().alias("rt_s")))
    sl = result.slots
    names = [r.name for r in world.regions]
    util = (sl.group_by("slot", "region").agg(pl.col("utilisation").mean())
            .pivot(on="region", index="slot", values="utilisation"))
    for n in names:
        if n not in util.columns:
            util = util.with_columns(pl.lit(0.0).alias(n))
    util = util.select("slot", pl.concat_list([pl.col(n).fill_null(0.0) for n in names]).alias("util"))
    lb = sl.group_by("slot").agg(pl.col("utilisation").std(ddof=0).alias("load_std"))
    return (per.join(util, on="slot", how="inner").join(lb, on="slot", how="inner").sort("slot"))


def surrogate_gap(scenario: str, workload: str, seed: int = 0, day: int = 11, hours: float = 2.0) -> dict:
    """Feed the same per-slot plans (the surrogate's myopic-OT plans for `day`) to the surrogate and to the
    replay of the first `hours` of that day; returns per-slot frames and summary gaps."""
    from torta.fleet.scenario import load_scenario
    from torta.runs.inputs import multiday_input
    from torta.rl.env import SurrogateEnv, run_fixed
    from torta.rl.fleet import fleet_from_world, load_demand

    world = load_scenario(scenario)
    inp = multiday_input(workload, scenario, world, seed, 1, hours, day)
    demand = load_demand(workload, scenario, world, (seed,))
    fleet = fleet_from_world(world, inp.mean_prompt_tokens, inp.mean_output_tokens, inp.model_share)
    senv = SurrogateEnv(fleet, demand, [day], 1, EnvConfig(), seed=seed)
    sur = run_fixed(senv, [0], [day], "myopic-ot")
    # the plans the surrogate's myopic OT chose, replayed through both
    plans_env = SurrogateEnv(fleet, demand, [day], 1, dataclasses.replace(EnvConfig(), use_forecast=False))
    plans_env._with_refs = False
    plans_env.reset(series=np.array([0]), days=np.array([day]))
    plans = []
    for _ in range(plans_env.per_day):
        plans.append(plans_env.ot[0].copy())
        plans_env.step_plan(plans_env.ot)
    plans = np.asarray(plans)
    env = ReplayEnv(inp.world, inp.requests, seed=seed, history=inp.history, mean_prompt_tokens=inp.mean_prompt_tokens,
                    mean_output_tokens=inp.mean_output_tokens, model_share=inp.model_share)
    env.reset()
    done, t, info = False, 0, {}
    while not done:
        _, _, done, info = env.step(plan=plans[min(t, len(plans) - 1)])
        t += 1
    rep = info["slot_metrics"]
    n = int(round(hours * 3600 / world.slot_s))
    rep = rep.filter(pl.col("slot") < n)
    sur_rt, sur_util = sur["rt_s"][:n, 0], sur["util"][:n, 0, :]
    rep_rt = rep["rt_s"].to_numpy()
    rep_util = np.asarray(rep["util"].to_list())
    k = min(len(rep_rt), n)
    frame = pl.DataFrame({"slot": np.arange(k), "surrogate_rt_s": sur_rt[:k], "replay_rt_s": rep_rt[:k],
                          "surrogate_util": sur_util[:k].mean(1), "replay_util": rep_util[:k].mean(1),
                          "surrogate_load_std_regions": sur["lb"][:k, 0], "replay_load_std_servers": rep["load_std"].to_numpy()[:k]})
    w = fleet.servers / fleet.servers.sum()
    return {"frame": frame, "rt_gap_pct": float(100 * (sur_rt[:k].mean() - rep_rt[:k].mean()) / max(rep_rt[:k].mean(), 1e-9)),
            "util_mae": float(np.abs((sur_util[:k] - rep_util[:k]) @ w).mean()),
            "util_region_mae": float(np.abs(sur_util[:k] - rep_util[:k]).mean()),
            "replay_summary": info["summary"], "requests": inp.requests.height}


def _recording(cls):
    """A subclass of the planner policy `cls` that keeps, per planning call, the slot, the placement it saw
    (`SlotState.warm_servers`), the per-model shares it installed and its placement targets (if any)."""

    class Recording(cls):
        def reset(self, world, seed: int) -> None:
            super().reset(world, seed)
            self.record: list[dict] = []

        def plan(self, state):
            out = super().plan(state)
            inner = getattr(getattr(self, "allocator", None), "inner", None)
            tgt = getattr(inner, "_tgt", None)
            self.record.append({"slot": int(state.slot), "warm": np.asarray(state.warm_servers, dtype=float).copy(),
                                "backlog_s": np.asarray(state.backlog_s, dtype=float).copy(),
                                "shares": np.asarray(self.last_plans, dtype=float).copy(),
                                "targets": None if tgt is None else np.asarray(tgt, dtype=float)})
            return out

    Recording.__name__ = f"Recording{cls.__name__}"
    return Recording


RT_PARTS = ("network", "unloaded", "slowdown", "mmc_wait", "queue_wait")  # WarmDynamics info["rt_parts"]


def run_warm_surrogate(wf, demand: np.ndarray, record: list[dict], *, targets: bool = True,
                       planner: str = "horizon", calibration=None) -> dict[str, np.ndarray]:
    """The recorded decisions (`_recording`) through `torta.rl.warm.WarmDynamics` from the fleet's initial
    placement and empty queues: slot t gets record[t]'s shares and targets and demand[t] (R, M).
    Returns per-slot arrays: rt_s, util (slots, R), fleet_util (server-weighted), switches, requests."""
    from torta.rl.warm import WarmDynamics
    from torta.rl.warm_env import micro_settings

    dyn = WarmDynamics(wf, **micro_settings(planner), calibration=calibration)
    f = wf.base
    r, m = f.n_regions, f.n_models
    n = wf.initial_rm[None].astype(float).copy()
    W = np.zeros((1, r, m))
    out: dict[str, list] = {k: [] for k in ("rt_s", "util", "fleet_util", "switches", "requests", "backlog_s",
                                            "rt_parts")}
    w = np.where(f.servers > 0, f.servers, 0.0)
    for rec in record:
        t = rec["slot"]
        a = demand[t][None] if t < len(demand) else np.zeros((1, r, m))
        tg = rec["targets"][None] if targets and rec["targets"] is not None else None
        n, W, info = dyn.step(rec["shares"][None], a, n, W, f.price_at(t * f.slot_s)[None], tg)
        out["rt_s"].append(float(info["rt_s"][0]))
        out["util"].append(info["util"][0])
        out["fleet_util"].append(float(info["served_s"][0].sum() / (w.sum() * f.slot_s)))
        out["switches"].append(float(info["switches"][0]))
        out["requests"].append(float(info["requests"][0]))
        out["backlog_s"].append(float(info["backlog_s"][0].sum()))
        out["rt_parts"].append(info["rt_parts"][0])
    return {k: np.asarray(v) for k, v in out.items()}


def _plain_surrogate(wf, demand: np.ndarray, record: list[dict]) -> dict[str, np.ndarray]:
    """The same decisions through the plain surrogate (torta.rl.env.Dynamics: no warm-model state), each
    slot's shares folded into one plan per origin by that slot's model mix; for comparison."""
    from torta.rl.env import Dynamics

    dyn, f = Dynamics(wf.base), wf.base
    r, m = f.n_regions, f.n_models
    W = np.zeros((1, r))
    w = np.where(f.servers > 0, f.servers, 0.0)
    rt, util = [], []
    for rec in record:
        t = rec["slot"]
        a = demand[t] if t < len(demand) else np.zeros((r, m))
        tot = a.sum(1, keepdims=True)
        mix = np.where(tot > 0, a / np.maximum(tot, 1e-12), 1.0 / m)
        P = np.einsum("im,mij->ij", mix, rec["shares"])
        W, info = dyn.step(P[None], a[None], W, f.price_at(t * f.slot_s)[None])
        rt.append(float(info["rt_s"][0]))
        util.append(float((info["util"][0] * w).sum() / w.sum()))
    return {"rt_s": np.asarray(rt), "fleet_util": np.asarray(util)}


def warm_surrogate_gap(scenario: str, workload: str, seed: int = 0, day: int = 11, hours: float | None = None,
                       warmup_h: float | None = None, state_refresh_s: float | None = None,
                       policy: str = "torta-horizon", out_dir: str | Path | None = None,
                       keep: str | Path | None = None, calibration=None) -> dict:
    """The same decisions through the replay and through the surrogate with warm-model state, per slot.

    Replays `policy` (a planner policy: its per-model shares and, for torta-horizon, placement targets are
    recorded every slot) on `day` (the whole day unless `hours`), warm-started as the evaluation protocol
    does (`warmup_h`, default EVAL_PROTOCOL's 2 h; `state_refresh_s` default 5 s), then runs the recorded
    decisions through `run_warm_surrogate` over the same slots, warm-up included (the surrogate starts from
    the fleet's initial placement at the warm-up's start, as the replay does), on the replay's own demand per
    slot, origin and model. Scored: the slots after the warm-up. Returns {"frame": per-slot table, summary
    numbers}; the per-slot response is the mean over the requests arriving in the slot (completed ones for
    the replay), utilisation the server-weighted fleet mean of the simulator's definition. The surrogate runs
    the micro layer of the policy's kind (`torta.rl.warm_env.micro_settings`: torta-horizon*, myopic-ot,
    else the TORTA allocator's)."""
    from torta.config import EVAL_PROTOCOL
    from torta.fleet.scenario import load_scenario
    from torta.runs.inputs import multiday_input

    warmup_h = EVAL_PROTOCOL.warmup_h if warmup_h is None else float(warmup_h)
    refresh = EVAL_PROTOCOL.state_refresh_s if state_refresh_s is None else float(state_refresh_s)
    world = load_scenario(scenario)
    inp = multiday_input(workload, scenario, world, seed, 1, hours, day, warmup_h=warmup_h)
    out = gap_on_input(inp, policy, refresh, out_dir, keep, calibration)
    return {"scenario": scenario, "workload": workload, "day": day, "warmup_h": warmup_h, **out}


def gap_on_input(inp, policy: str = "torta-horizon", state_refresh_s: float = 0.0,
                 out_dir: str | Path | None = None, keep: str | Path | None = None, calibration=None) -> dict:
    """`warm_surrogate_gap` on a prepared `torta.runs.inputs.SeedInput` (its `oracle` is the per-slot demand
    the surrogate gets; its `warmup_s` the unscored slots)."""
    from torta.policy import get_policy
    from torta.rl.warm import warm_fleet_from_world
    from torta.sim.replay import replay

    refresh, seed, world = float(state_refresh_s), inp.seed, inp.world
    pol = _recording(get_policy(policy))()
    pol.prepare(history=inp.history, oracle_demand=inp.oracle, mean_prompt_tokens=inp.mean_prompt_tokens or None,
                mean_output_tokens=inp.mean_output_tokens or None, model_share=inp.model_share)
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="torta-warm-gap-")
        out_dir = tmp.name
    try:
        res = replay(inp.world, inp.requests, pol, seed=seed, out_dir=Path(out_dir), warmup_s=inp.warmup_s,
                     state_refresh_s=refresh)
        slot_s = float(world.slot_s)
        comp = pl.read_parquet(Path(out_dir) / "completions.parquet", columns=["arrival_s", "response_s"])
    finally:
        if tmp is not None:
            tmp.cleanup()
    per = (comp.filter(pl.col("response_s").is_not_null())
           .group_by((pl.col("arrival_s") // slot_s).cast(pl.Int64).alias("slot"))
           .agg(pl.len().alias("replay_requests"), pl.col("response_s").mean().alias("replay_rt_s")))
    sl = (res.slots.group_by("slot").agg(pl.col("utilisation").mean().alias("replay_util"),
                                         pl.col("switches").sum().alias("replay_switches")))
    if keep is not None:  # the replay's side, to rerun the surrogate's without replaying (`gap_from_kept`)
        keep = Path(keep)
        keep.mkdir(parents=True, exist_ok=True)
        per.write_parquet(keep / "replay_per_slot.parquet")
        sl.write_parquet(keep / "replay_slots.parquet")
        np.savez_compressed(keep / "record.npz", slot=np.array([r["slot"] for r in pol.record]),
                            shares=np.stack([r["shares"] for r in pol.record]),
                            targets=np.stack([r["targets"] if r["targets"] is not None else np.full_like(r["warm"], -1.0)
                                              for r in pol.record]),
                            warm=np.stack([r["warm"] for r in pol.record]), oracle=inp.oracle)
    wf = warm_fleet_from_world(inp.world, inp.mean_prompt_tokens, inp.mean_output_tokens, inp.model_share)
    warm_slots = int(round(inp.warmup_s / float(world.slot_s)))
    out = compare_sides(wf, inp.oracle, pol.record, per, sl, warm_slots, policy, calibration)
    return {**out, "seed": seed, "state_refresh_s": refresh, "replay_summary": res.summary}


def planner_kind(policy: str) -> str:
    return "horizon" if policy.startswith("torta-horizon") else ("myopic-ot" if policy == "myopic-ot" else "none")


def compare_sides(wf, oracle: np.ndarray, record: list[dict], per: pl.DataFrame, sl: pl.DataFrame, warm_slots: int,
                  policy: str = "torta-horizon", calibration=None) -> dict:
    """The surrogate's side of the gap on recorded decisions beside the replay's per-slot metrics (`per`: slot,
    replay_requests, replay_rt_s; `sl`: slot, replay_util, replay_switches): the per-slot frame and the
    summary numbers (see `warm_surrogate_gap`)."""
    sur = run_warm_surrogate(wf, oracle, record, planner=planner_kind(policy), calibration=calibration)
    plain = _plain_surrogate(wf, oracle, record)
    k = len(record)
    parts = sur["rt_parts"]
    frame = (pl.DataFrame({"slot": np.asarray([r["slot"] for r in record], dtype=np.int64),
                           "surrogate_requests": sur["requests"],
                           "surrogate_rt_s": sur["rt_s"], "surrogate_util": sur["fleet_util"],
                           "surrogate_switches": sur["switches"], "surrogate_backlog_s": sur["backlog_s"],
                           **{f"surrogate_rt_{n}_s": parts[:k, i] for i, n in enumerate(RT_PARTS)},
                           "plain_surrogate_rt_s": plain["rt_s"], "plain_surrogate_util": plain["fleet_util"]})
             .join(per, on="slot", how="inner").join(sl, on="slot", how="inner")
             .filter(pl.col("slot") >= warm_slots).sort("slot")
             .with_columns((pl.col("slot") - warm_slots).alias("scored_slot"),
                           ((pl.col("surrogate_rt_s") - pl.col("replay_rt_s")) / pl.col("replay_rt_s"))
                           .alias("rt_gap_rel"),
                           (pl.col("surrogate_util") - pl.col("replay_util")).alias("util_gap")))
    n_rep = frame["replay_requests"].to_numpy().astype(float)
    rep_mean = float((frame["replay_rt_s"].to_numpy() * n_rep).sum() / max(n_rep.sum(), 1.0))
    n_sur = frame["surrogate_requests"].to_numpy()
    sur_mean = float((frame["surrogate_rt_s"].to_numpy() * n_sur).sum() / max(n_sur.sum(), 1e-12))
    plain_mean = float((frame["plain_surrogate_rt_s"].to_numpy() * n_sur).sum() / max(n_sur.sum(), 1e-12))
    ug = np.abs(frame["util_gap"].to_numpy())
    return {"frame": frame, "policy": policy, "slots": frame.height,
            "replay_rt_mean_s": rep_mean, "surrogate_rt_mean_s": sur_mean,
            "rt_gap_pct": 100.0 * (sur_mean - rep_mean) / max(rep_mean, 1e-9),
            "plain_surrogate_rt_mean_s": plain_mean,
            "plain_rt_gap_pct": 100.0 * (plain_mean - rep_mean) / max(rep_mean, 1e-9),
            "plain_util_gap_mean_abs": float(np.abs(frame["plain_surrogate_util"] - frame["replay_util"]).mean()),
            "rt_gap_abs_pct_median_slot": float(100 * np.median(np.abs(frame["rt_gap_rel"].to_numpy()))),
            "util_gap_mean_abs": float(ug.mean()) if ug.size else float("nan"),
            "util_gap_max_abs": float(ug.max()) if ug.size else float("nan"),
            "slots_util_within_0.05": int((ug <= 0.05).sum()),
            "replay_switches": float(frame["replay_switches"].sum()),
            "surrogate_switches": float(frame["surrogate_switches"].sum())}


def load_kept(keep: str | Path) -> tuple[np.ndarray, list[dict], pl.DataFrame, pl.DataFrame]:
    """(oracle demand, recorded decisions, replay per-slot response, replay per-slot utilisation) kept by
    `warm_surrogate_gap(..., keep=...)`: the surrogate's side reruns on them without a replay."""
    keep = Path(keep)
    z = np.load(keep / "record.npz")
    record = [{"slot": int(sl_), "shares": z["shares"][i], "warm": z["warm"][i],
               "targets": None if (z["targets"][i] < 0).any() else z["targets"][i]} for i, sl_ in enumerate(z["slot"])]
    return z["oracle"], record, pl.read_parquet(keep / "replay_per_slot.parquet"), \
        pl.read_parquet(keep / "replay_slots.parquet")
