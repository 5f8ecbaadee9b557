"""One replay run named by a key, `scenario|workload|policy|seed`: the unit that Dagster partitions,
the warehouse and `torta run` share.

`execute(spec)` resolves the scenario, the workload (a shipped trace, a canonical Parquet path or a
multi-day workload name, via `torta.runs.inputs`), and runs the policy through `torta.runs.execute`
(the same preparation every runner gives it). Same spec -> identical outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from torta.config import EVAL_PROTOCOL
from torta.errors import InputError

KEY_SEP = "|"


@dataclass(frozen=True)
class RunSpec:
    scenario: str
    workload: str
    policy: str
    seed: int = 0
    days: int = 1  # multi-day workloads: days replayed from `start_day`
    hours: float | None = None  # cap the replayed window (both kinds of workload)
    start_day: int = EVAL_PROTOCOL.first_test_day
    load_factor: float = 1.0
    load_mode: str = "compress"
    skylb_threshold: float | None = None  # None: the policy's default (see `torta compare` for tuning)
    warmup_h: float = 0.0  # multi-day workloads: unscored warm-up hours before the window (torta.runs.inputs)
    state_refresh_s: float = 0.0  # the control-plane information model (torta.sim.infomodel); 0 = oracle

    @property
    def key(self) -> str:
        return KEY_SEP.join([self.scenario, self.workload, self.policy, str(self.seed)])

    @classmethod
    def from_key(cls, key: str, **options) -> "RunSpec":
        parts = key.split(KEY_SEP)
        if len(parts) != 4 or not parts[3].lstrip("-").isdigit():
            raise InputError("run key", f"{key!r}: expected 'scenario|workload|policy|seed' with an integer seed")
        return cls(parts[0], parts[1], parts[2], int(parts[3]), **options)


def execute(spec: RunSpec, out_dir: str | os.PathLike | None = None, progress: bool = False):
    """Replay one run; returns torta.sim.replay.ReplayResult (summary gains `workload` and `key`;
    `result.plans` holds the macro plans made, see torta.runs.planlog)."""
    from torta.fleet.scenario import load_scenario
    from torta.policy import get_policy
    from torta.runs.execute import run_policy
    from torta.runs.inputs import workload_input

    world = load_scenario(spec.scenario)
    get_policy(spec.policy)  # fail fast on an unknown name (lists the valid ones) before building inputs
    inp = workload_input(spec.workload, spec.scenario, world, spec.seed, days=spec.days, hours=spec.hours,
                         start_day=spec.start_day, warmup_h=spec.warmup_h)
    run = run_policy(spec.policy, inp, skylb_threshold=spec.skylb_threshold, out_dir=out_dir, progress=progress,
                     load_factor=spec.load_factor, load_mode=spec.load_mode, record_plans=True,
                     state_refresh_s=spec.state_refresh_s)
    result = run.result
    result.summary.update(workload=spec.workload, key=spec.key, policy=spec.policy, policy_params=str(run.params))
    return result
