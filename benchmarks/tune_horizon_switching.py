"""Choose torta-horizon's switch charge on validation day 11 (issue 18: model switches per day at most
twice the strongest deployable baseline's, with the lowest mean response time that allows).

`python -m benchmarks.tune_horizon_switching [--scenario abilene] [--candidates 40,120,360] [--out PATH]`
replays day 11 of servegen-mix-14d (seed 0), whole, after 2 h of unscored warm-up, every gateway on load
reports every 5 s (the evaluation protocol, `torta.config.EVAL_PROTOCOL`), through the strongest
deployable baseline of the scenario (`--baseline`, picked on the same day by the paper experiment:
docs/RESULTS.md) and through `torta-horizon` with each candidate `HorizonConfig.switch_cost`. The winner
is the candidate with the lowest mean response time among those with at most `--max-ratio` times the
baseline's switches (the fewest switches when none qualifies). Writes the table and the winner as JSON
(default docs/data/tune-horizon-switching.json); `HorizonConfig.switch_cost`'s default is the winner
recorded there. Nothing here looks at the test days 12-14.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import click


def _row(res, wall_s: float, **extra) -> dict:
    s = res.summary
    return {**extra, "response_mean_s": s["response_mean_s"], "response_p95_s": s["response_p95_s"],
            "cost_usd": s["cost_usd"], "switches": int(s["switches"]), "wall_s": round(wall_s, 1)}


def pick(table: list[dict], baseline_switches: int, max_ratio: float) -> dict:
    """The candidate with the lowest mean response among those within `max_ratio` x the baseline's
    switches; the one with the fewest switches when none is."""
    ok = [r for r in table if r["switches"] <= max_ratio * baseline_switches]
    if ok:
        return min(ok, key=lambda r: (r["response_mean_s"], r["switch_cost"]))
    return min(table, key=lambda r: (r["switches"], r["response_mean_s"]))


@click.command()
@click.option("--scenario", default="abilene", show_default=True)
@click.option("--workload", default="servegen-mix-14d", show_default=True)
@click.option("--baseline", default="least-loaded-d4", show_default=True,
              help="The scenario's strongest deployable baseline (picked on day 11 by the paper experiment).")
@click.option("--candidates", default="40,120,360", show_default=True, help="Comma-separated switch_cost values.")
@click.option("--max-ratio", default=2.0, show_default=True, type=float)
@click.option("--hours", default=24.0, show_default=True, type=float)
@click.option("--out", default="docs/data/tune-horizon-switching.json", show_default=True)
def main(scenario, workload, baseline, candidates, max_ratio, hours, out) -> None:
    from torta.config import EVAL_PROTOCOL
    from torta.fleet.scenario import load_scenario
    from torta.runs.execute import prepare_policy, run_policy
    from torta.runs.inputs import multiday_input
    from torta.sim.replay import replay

    costs = [float(c) for c in candidates.split(",") if c.strip()]
    if not costs or any(c < 0 for c in costs):
        raise click.BadParameter(f"need switch_cost values >= 0, got {candidates!r}", param_hint="--candidates")
    day, s_s, warm_h = EVAL_PROTOCOL.validation_day, EVAL_PROTOCOL.state_refresh_s, EVAL_PROTOCOL.warmup_h
    world = load_scenario(scenario)
    inp = multiday_input(workload, scenario, world, 0, 1, hours, day, warmup_h=warm_h)
    click.echo(f"day {day} of {workload} on {scenario}: {inp.requests.height:,} requests (warm-up included); "
               f"{len(costs) + 1} replays", err=True)
    run = run_policy(baseline, inp, state_refresh_s=s_s)
    base = _row(run.result, run.wall_s, policy=baseline)
    click.echo(f"{baseline}: response_mean_s {base['response_mean_s']:.3f}, {base['switches']} switches "
               f"({base['wall_s']} s)", err=True)
    table = []
    for c in costs:
        pol = prepare_policy("torta-horizon", inp)
        pol.hconfig = replace(pol.hconfig, switch_cost=c)  # read by reset() when the replay starts
        t0 = time.perf_counter()
        res = replay(inp.world, inp.requests, pol, seed=inp.seed, warmup_s=inp.warmup_s, state_refresh_s=s_s)
        p = pol.params()
        table.append(_row(res, time.perf_counter() - t0, switch_cost=c, preloads=p.get("preloads"),
                          planned_switches=round(float(p.get("planned_switches", 0.0)), 1)))
        r = table[-1]
        click.echo(f"switch_cost {c:g}: response_mean_s {r['response_mean_s']:.3f}, {r['switches']} switches "
                   f"({r['switches'] / max(base['switches'], 1):.2f}x), cost ${r['cost_usd']:.2f} ({r['wall_s']} s)",
                   err=True)
    best = pick(table, base["switches"], max_ratio)
    doc = {"what": "torta-horizon's HorizonConfig.switch_cost, tuned on validation day 11: lowest mean response "
                   f"with at most {max_ratio:g}x the strongest baseline's switches",
           "scenario": scenario, "workload": workload, "day": day, "seed": 0, "hours": hours,
           "warmup_hours": warm_h, "state_refresh_s": s_s, "requests": inp.requests.height,
           "baseline": base, "table": table, "best_switch_cost": best["switch_cost"],
           "command": f"python -m benchmarks.tune_horizon_switching --scenario {scenario} --candidates {candidates}"}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    click.echo(json.dumps(doc))


if __name__ == "__main__":
    main()
