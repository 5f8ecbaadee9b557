"""The one way to run a policy on an input: `prepare_policy` builds a fresh instance and gives it the
input's context through its optional `prepare` hook; `run_policy` does that and replays. `torta replay`,
run specs (`torta run`, the Dagster replay assets), `torta compare` and the experiment's cells all go
through here, so a policy sees the same context whichever command runs it.

A policy that plans on an input the run lacks (torta-ot's forecast needs the demand history before the
replay; a trace has none) reports it through `missing_inputs()`. With `strict=True` (`torta replay`)
that is an `InputError` naming the input; otherwise the policy falls back (torta-ot: the last observed
slot) and says so in its `params()["demand_source"]`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torta.errors import InputError
from torta.runs.inputs import SeedInput


def make_policy(name: str, skylb_threshold: float | None = None):
    """A fresh instance of the registered policy `name` (skylb with `skylb_threshold` when given)."""
    from torta.policy import get_policy

    cls = get_policy(name)
    if name == "skylb" and skylb_threshold is not None:
        return cls(threshold=skylb_threshold)
    return cls()


def prepare_policy(name: str, inp: SeedInput, skylb_threshold: float | None = None, *, strict: bool = False):
    """A fresh policy instance given the context of `inp` (history, oracle, token means, model mix)."""
    pol = make_policy(name, skylb_threshold)
    if hasattr(pol, "prepare"):
        pol.prepare(history=inp.history, oracle_demand=inp.oracle,
                    mean_prompt_tokens=inp.mean_prompt_tokens or None,
                    mean_output_tokens=inp.mean_output_tokens or None, model_share=inp.model_share)
    missing = pol.missing_inputs() if hasattr(pol, "missing_inputs") else []
    if strict and missing:
        raise InputError(inp.workload or "<requests>",
                         f"policy {name!r} needs {' and '.join(missing)}, which this input does not have "
                         "(multi-day workloads have it, e.g. servegen-mix-14d; or use a policy that plans "
                         "on the last observed slot, e.g. torta-ot-last)")
    return pol


@dataclass
class PolicyRun:
    result: Any  # torta.sim.replay.ReplayResult
    policy: Any  # the prepared instance, after the replay (its params() hold what it used)
    wall_s: float

    @property
    def params(self) -> dict:
        return self.policy.params() if hasattr(self.policy, "params") else {}


def run_policy(name: str, inp: SeedInput, *, skylb_threshold: float | None = None, strict: bool = False,
               out_dir: str | Path | None = None, progress: bool = False, load_factor: float = 1.0,
               load_mode: str = "compress", record_plans: bool = False, **replay_kw) -> PolicyRun:
    """Prepare policy `name` for `inp` and replay `inp.requests` through `inp.world` with seed `inp.seed`.
    With `record_plans`, `result.plans` holds the macro plans made (torta.runs.planlog); `replay_kw`
    (e.g. `provenance`, `on_start`, `state_refresh_s`) go to `torta.sim.replay.replay`. The input's
    warm-up (`inp.warmup_s`) is replayed unscored."""
    from torta.sim.replay import replay

    pol = prepare_policy(name, inp, skylb_threshold, strict=strict)
    recorder = None
    if record_plans:
        from torta.runs.planlog import PlanRecorder

        recorder = PlanRecorder([r.name for r in inp.world.regions], list(inp.world.models), pol)
    t0 = time.perf_counter()
    result = replay(inp.world, inp.requests, pol, seed=inp.seed, out_dir=Path(out_dir) if out_dir else None,
                    progress=progress, load_factor=load_factor, load_mode=load_mode,
                    plan_sink=recorder.sink if recorder is not None else None,
                    **{"warmup_s": inp.warmup_s, **replay_kw})
    if recorder is not None:
        result.plans = recorder.frame()
    return PolicyRun(result, pol, time.perf_counter() - t0)


def tune_skylb(inp: SeedInput, candidates: tuple[float, ...], log: Callable[[str], None], **replay_kw
               ) -> tuple[float, list[list[float]]]:
    """SkyLB's threshold minimising mean response time on `inp` (the protocol's validation window), and
    the table [[threshold, response_mean_s], ...] it was chosen from; `replay_kw` as in `run_policy`."""
    from torta.planner.skylb import tune_threshold

    def evaluate(th: float) -> float:
        v = run_policy("skylb", inp, skylb_threshold=th, **replay_kw).result.summary["response_mean_s"]
        log(f"  skylb threshold {th:g}: response_mean_s {v:.3f}")
        return v

    res = tune_threshold(evaluate, tuple(candidates))
    return float(res.threshold), [[float(a), float(b)] for a, b in res.table]
