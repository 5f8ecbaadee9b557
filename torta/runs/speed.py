"""Each policy's replay speed on one whole day against `least-loaded`'s (the library behind
`torta bench policies`; issue 18 item 4: every TORTA policy at no less than half least-loaded's rate).

One case = a multi-day workload's day on a scenario under the evaluation protocol (its warm-up hours
before the window, the control-plane information model with load reports every S s). Every
(policy, repeat) runs in a fresh subprocess with one compute thread (`torta.sim.bench.spawn`), so one
policy's caches, threads or memory do not carry into the next. The timed section is
`torta.runs.execute.run_policy`: the policy's preparation (a forecaster fit once before the window, a
checkpoint load) and the replay, warm-up included; building the request frame is not timed (it is the
same for every policy). `requests_per_s` counts every replayed request (warm-up included), as the
experiment's `runs.requests_per_s` does.

Repeats rotate the order of the policies (repeat k starts at the k-th), and each policy's ratio is taken
against least-loaded's run of the same repeat, then the median over repeats: a slow spell of a shared
machine then hits both sides of some pairs. Both the wall-clock ratio and the CPU-seconds ratio
(requests per CPU-second: what one free core does) are reported; on a machine shared with other jobs
the CPU ratio is the steadier of the two.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

from torta.config import EVAL_PROTOCOL

BASELINE = "least-loaded"
REQUIRED_RATIO = 0.5  # issue 18 item 4: at least half least-loaded's requests/s


@dataclass(frozen=True)
class SpeedCase:
    scenario: str = "abilene"
    workload: str = "servegen-mix-14d"
    day: int = EVAL_PROTOCOL.validation_day
    hours: float = 24.0
    warmup_h: float = EVAL_PROTOCOL.warmup_h
    state_refresh_s: float = EVAL_PROTOCOL.state_refresh_s
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.hours <= 24:
            raise ValueError(f"hours must be in (0, 24], got {self.hours}")
        if self.warmup_h < 0:
            raise ValueError(f"warmup_h must be >= 0, got {self.warmup_h}")
        if self.state_refresh_s < 0:
            raise ValueError(f"state_refresh_s must be >= 0, got {self.state_refresh_s}")


def default_policies() -> tuple[str, ...]:
    """least-loaded and every policy of the experiment's TORTA family."""
    from torta.runs.experiment.definition import TORTA_FAMILY

    return (BASELINE, *TORTA_FAMILY)


def time_policy(case: dict, policy: str) -> dict:
    """In the subprocess: build the case's input, then time `run_policy(policy, ...)` (wall and CPU)."""
    from torta.fleet.scenario import load_scenario
    from torta.runs.execute import run_policy
    from torta.runs.inputs import multiday_input

    c = SpeedCase(**case)
    world = load_scenario(c.scenario)
    inp = multiday_input(c.workload, c.scenario, world, c.seed, 1, c.hours, c.day, warmup_h=c.warmup_h)
    t0, c0 = time.perf_counter(), time.process_time()
    run = run_policy(policy, inp, state_refresh_s=c.state_refresh_s)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = run.result.summary
    n = inp.requests.height
    return dict(policy=policy, requests=n, wall_s=wall, cpu_s=cpu, requests_per_s=n / wall,
                requests_per_cpu_s=n / cpu if cpu > 0 else 0.0, completed=s["completed"], dropped=s["dropped"],
                response_mean_s=s["response_mean_s"], switches=s["switches"], load_avg_1m=os.getloadavg()[0])


def _rotated(policies: list[str], k: int) -> list[str]:
    k %= len(policies)
    return policies[k:] + policies[:k]


def run_speed(case: SpeedCase, policies: list[str] | tuple[str, ...] | None = None, repeats: int = 1,
              log: Callable[[str], None] = lambda msg: None,
              runner: Callable[[dict, str], dict] | None = None) -> dict:
    """Every policy `repeats` times (order rotated per repeat) on `case`: {"case", "runs", "policies"},
    one row per policy with median rates and its median ratios to least-loaded (wall, CPU) and whether
    the CPU ratio reaches `REQUIRED_RATIO`. `runner(case_dict, policy)` replaces the subprocess (tests)."""
    from torta.policy import get_policy
    from torta.sim.bench import spawn

    names = list(dict.fromkeys(policies or default_policies()))
    for p in names:
        get_policy(p)  # unknown names fail before any work
    if BASELINE not in names:
        names.insert(0, BASELINE)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    cd = asdict(case)
    run = runner or (lambda c, p: spawn("torta.runs.speed", "time_policy", c, p))
    runs = []
    for k in range(repeats):
        for i, p in enumerate(_rotated(names, k), 1):
            r = dict(run(cd, p), repeat=k)
            runs.append(r)
            log(f"repeat {k + 1}/{repeats} [{i}/{len(names)}] {p}: {r['requests']:,} requests in {r['wall_s']:.1f} s "
                f"({r['requests_per_s']:,.0f} req/s, {r['requests_per_cpu_s']:,.0f} per CPU-s; load {r['load_avg_1m']:.1f})")
            if len(runs) == 1 and len(names) * repeats > 1:  # the first run stands for the others
                log(f"estimate: about {r['wall_s'] * (len(names) * repeats - 1) / 60:.0f} min for the "
                    f"{len(names) * repeats - 1} runs left (the policies' speeds differ; see the ratios)")
    base = {r["repeat"]: r for r in runs if r["policy"] == BASELINE}
    rows = []
    for p in names:
        mine = [r for r in runs if r["policy"] == p]
        wall = [r["requests_per_s"] / base[r["repeat"]]["requests_per_s"] for r in mine]
        cpu = [r["requests_per_cpu_s"] / base[r["repeat"]]["requests_per_cpu_s"] for r in mine]
        ratio_cpu = statistics.median(cpu)
        rows.append(dict(policy=p, requests=mine[0]["requests"],
                         requests_per_s=statistics.median(r["requests_per_s"] for r in mine),
                         requests_per_cpu_s=statistics.median(r["requests_per_cpu_s"] for r in mine),
                         ratio_wall=statistics.median(wall), ratio_cpu=ratio_cpu,
                         ratios_wall=wall, ratios_cpu=cpu, meets_half=ratio_cpu >= REQUIRED_RATIO))
    return {"case": cd, "repeats": repeats, "runs": runs, "policies": rows}
