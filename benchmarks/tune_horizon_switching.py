"""Choose torta-horizon's switch charge (or another `HorizonConfig` number, `--param`) on validation day
11 (issue 18: model switches per day at most twice the strongest deployable baseline's, with the lowest
mean response time that allows).

`python -m benchmarks.tune_horizon_switching [--scenario abilene] [--param switch_cost] [--candidates 40,120,360]
[--set PARAM=VALUE ...] [--reuse-baseline PATH] [--out PATH]`
replays day 11 of servegen-mix-14d (seed 0), whole, after 2 h of unscored warm-up, every gateway on load
reports every 5 s (the evaluation protocol, `torta.config.EVAL_PROTOCOL`), through the strongest
deployable baseline of the scenario (`--baseline`, picked on the same day by the paper experiment:
docs/RESULTS.md) and through `torta-horizon` with each candidate `HorizonConfig.switch_cost`. The winner
is the candidate with the lowest mean response time among those with at most `--max-ratio` times the
baseline's switches (the fewest switches when none qualifies). `--reuse-baseline` takes the baseline's row
from an earlier output of the same day and protocol instead of replaying it again. Writes the table and the winner as JSON
(default docs/data/tune-horizon-switching.json); `HorizonConfig.switch_cost`'s default is the winner
recorded there; `--param max_utilisation --out docs/data/tune-horizon-utilisation.json` tuned the
planned utilisation. Nothing here looks at the test days 12-14.
"""

from __future__ import annotations

import json
import time
from dataclasses import fields, replace
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
        return min(ok, key=lambda r: (r["response_mean_s"], r["value"]))
    return min(table, key=lambda r: (r["switches"], r["response_mean_s"]))


@click.command()
@click.option("--scenario", default="abilene", show_default=True)
@click.option("--workload", default="servegen-mix-14d", show_default=True)
@click.option("--baseline", default="least-loaded-d4", show_default=True,
              help="The scenario's strongest deployable baseline (picked on day 11 by the paper experiment).")
@click.option("--param", default="switch_cost", show_default=True,
              help="The number tuned: a HorizonConfig field (switch_cost, max_utilisation, ...), or micro.FIELD "
                   "(MicroConfig: micro.spread_s_per_request, ...) or targets.FIELD (TargetConfig).")
@click.option("--candidates", default="40,120,360", show_default=True, help="Comma-separated values of --param.")
@click.option("--max-ratio", default=2.0, show_default=True, type=float)
@click.option("--hours", default=24.0, show_default=True, type=float)
@click.option("--set", "fixed", multiple=True, metavar="PARAM=VALUE",
              help="Hold another number at VALUE in every candidate (as --param names it; repeatable).")
@click.option("--reuse-baseline", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An earlier output of this command: take its baseline row (same day, hours and protocol).")
@click.option("--out", default="docs/data/tune-horizon-switching.json", show_default=True)
def main(scenario, workload, baseline, param, candidates, max_ratio, hours, fixed, reuse_baseline, out) -> None:
    from torta.config import EVAL_PROTOCOL
    from torta.fleet.scenario import load_scenario
    from torta.runs.execute import prepare_policy, run_policy
    from torta.runs.inputs import multiday_input
    from torta.allocator.config import MicroConfig, TargetConfig
    from torta.planner.config import HorizonConfig
    from torta.sim.replay import replay

    configs = {"": HorizonConfig, "micro": MicroConfig, "targets": TargetConfig}
    attrs = {"": "hconfig", "micro": "micro", "targets": "tconfig"}

    def parse(name: str, text: str, hint: str) -> tuple[str, str, list]:
        owner, _, field = name.rpartition(".")
        cls = configs.get(owner)
        if cls is None or field not in {f.name for f in fields(cls)} or isinstance(getattr(cls(), field), bool) \
                or not isinstance(getattr(cls(), field), (int, float)):
            raise click.BadParameter(f"not a number field of HorizonConfig, micro.(MicroConfig) or "
                                     f"targets.(TargetConfig): {name!r}", param_hint=hint)
        try:
            vals = [float(c) for c in text.split(",") if c.strip()]
        except ValueError as e:
            raise click.BadParameter(f"need comma-separated numbers, got {text!r}", param_hint=hint) from e
        if isinstance(getattr(cls(), field), int):
            if any(v != int(v) for v in vals):
                raise click.BadParameter(f"{name} takes whole numbers, got {text!r}", param_hint=hint)
            vals = [int(v) for v in vals]
        if not vals:
            raise click.BadParameter(f"no value in {text!r}", param_hint=hint)
        return owner, field, vals

    held: dict[str, dict] = {k: {} for k in configs}
    for item in fixed:
        name, eq, text = item.partition("=")
        if not eq:
            raise click.BadParameter(f"need PARAM=VALUE, got {item!r}", param_hint="--set")
        o, f, vals = parse(name.strip(), text, "--set")
        held[o][f] = vals[0]
    owner, field, values = parse(param, candidates, "--candidates")
    for v in values:  # the configs' own checks, before any replay
        for o, cls in configs.items():
            try:
                replace(cls(), **held[o], **({field: v} if o == owner else {}))
            except ValueError as e:
                raise click.BadParameter(str(e), param_hint="--candidates / --set") from e
    day, s_s, warm_h = EVAL_PROTOCOL.validation_day, EVAL_PROTOCOL.state_refresh_s, EVAL_PROTOCOL.warmup_h
    key = {"scenario": scenario, "workload": workload, "day": day, "seed": 0, "hours": hours,
           "warmup_hours": warm_h, "state_refresh_s": s_s}
    base = None
    if reuse_baseline:
        old = json.loads(Path(reuse_baseline).read_text())
        differ = {k: (old.get(k), v) for k, v in key.items() if old.get(k) != v}
        if differ or old.get("baseline", {}).get("policy") != baseline:
            raise click.BadParameter(f"{reuse_baseline}: another case ({differ or old.get('baseline')}); "
                                     f"need {key} and baseline {baseline}", param_hint="--reuse-baseline")
        base = old["baseline"]
    world = load_scenario(scenario)
    inp = multiday_input(workload, scenario, world, 0, 1, hours, day, warmup_h=warm_h)
    click.echo(f"day {day} of {workload} on {scenario}: {inp.requests.height:,} requests (warm-up included); "
               f"{len(values) + (base is None)} replays", err=True)
    if base is None:
        run = run_policy(baseline, inp, state_refresh_s=s_s)
        base = _row(run.result, run.wall_s, policy=baseline)
    click.echo(f"{baseline}: response_mean_s {base['response_mean_s']:.3f}, {base['switches']} switches "
               f"({base['wall_s']} s)", err=True)
    table = []
    for v in values:
        pol = prepare_policy("torta-horizon", inp)
        for o, attr in attrs.items():  # read by reset() when the replay starts
            setattr(pol, attr, replace(getattr(pol, attr), **held[o], **({field: v} if o == owner else {})))
        t0 = time.perf_counter()
        res = replay(inp.world, inp.requests, pol, seed=inp.seed, warmup_s=inp.warmup_s, state_refresh_s=s_s)
        p = pol.params()
        table.append(_row(res, time.perf_counter() - t0, value=v, **{param: v}, preloads=p.get("preloads"),
                          planned_switches=round(float(p.get("planned_switches", 0.0)), 1),
                          deferred_requests=round(float(getattr(pol, "deferred_requests", 0.0)), 1)))
        r = table[-1]
        click.echo(f"{param} {v:g}: response_mean_s {r['response_mean_s']:.3f}, {r['switches']} switches "
                   f"({r['switches'] / max(base['switches'], 1):.2f}x), cost ${r['cost_usd']:.2f} ({r['wall_s']} s)",
                   err=True)
    best = pick(table, base["switches"], max_ratio)
    doc = {"what": f"torta-horizon's {param}, tuned on validation day 11: lowest mean response "
                   f"with at most {max_ratio:g}x the strongest baseline's switches",
           **key, "requests": inp.requests.height, "param": param,
           "held": {(f"{o}." if o else "") + f: v for o, d in held.items() for f, v in d.items()},
           "baseline": base, "table": table, f"best_{param}": best["value"],
           "command": f"python -m benchmarks.tune_horizon_switching --scenario {scenario} --param {param} "
                      f"--candidates {candidates}" + "".join(f" --set {x}" for x in fixed)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    click.echo(json.dumps(doc))


if __name__ == "__main__":
    main()
