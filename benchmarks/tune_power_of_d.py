"""Choose least-loaded-d2's d on validation day 11 (issue 17: a herd-robust baseline, tuned on day 11).

`python -m benchmarks.tune_power_of_d [--scenario abilene] [--hours 24] [--warmup-hours 2] [--out PATH]`
replays day 11 of servegen-mix-14d (seed 0), warm-started, every gateway on load reports every 5 s
(the protocol's S), with power-of-d least-loaded for each candidate d, and writes the table of mean
response times and the winner as JSON (default docs/data/tune-least-loaded-d.json). The registered
policy's d (`torta.policy.baselines.LeastLoadedD2.d`) is the winner recorded there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

CANDIDATES = (1, 2, 3, 4, 8)


@click.command()
@click.option("--scenario", default="abilene", show_default=True)
@click.option("--workload", default="servegen-mix-14d", show_default=True)
@click.option("--hours", default=24.0, show_default=True, type=float)
@click.option("--warmup-hours", default=2.0, show_default=True, type=float)
@click.option("--state-refresh-s", default=5.0, show_default=True, type=float)
@click.option("--out", default="docs/data/tune-least-loaded-d.json", show_default=True)
def main(scenario, workload, hours, warmup_hours, state_refresh_s, out) -> None:
    from torta.config import EVAL_PROTOCOL
    from torta.fleet.scenario import load_scenario
    from torta.policy.base import PowerOfDLeastLoaded
    from torta.policy.baselines import LeastLoadedD2
    from torta.runs.inputs import multiday_input
    from torta.sim.replay import replay

    day = EVAL_PROTOCOL.validation_day
    world = load_scenario(scenario)
    inp = multiday_input(workload, scenario, world, 0, 1, hours, day, warmup_h=warmup_hours)
    table = []
    for d in CANDIDATES:
        pol = LeastLoadedD2()
        pol.allocator = PowerOfDLeastLoaded(latency_aware=True, d=d)
        t0 = time.perf_counter()
        res = replay(inp.world, inp.requests, pol, seed=0, warmup_s=inp.warmup_s, state_refresh_s=state_refresh_s)
        r = res.summary["response_mean_s"]
        table.append({"d": d, "response_mean_s": r, "switches": res.summary["switches"],
                      "wall_s": round(time.perf_counter() - t0, 1)})
        click.echo(f"d={d}: response_mean_s {r:.3f} ({table[-1]['wall_s']} s)", err=True)
    best = min(table, key=lambda x: (x["response_mean_s"], x["d"]))
    doc = {"what": "least-loaded-d2's d, tuned on validation day 11", "scenario": scenario, "workload": workload,
           "day": day, "seed": 0, "hours": hours, "warmup_hours": warmup_hours, "state_refresh_s": state_refresh_s,
           "requests": inp.requests.height, "table": table, "best_d": best["d"],
           "command": f"python -m benchmarks.tune_power_of_d --scenario {scenario} --hours {hours:g} "
                      f"--warmup-hours {warmup_hours:g}"}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    click.echo(json.dumps(doc))


if __name__ == "__main__":
    main()
