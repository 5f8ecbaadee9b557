"""`python -m torta.commands.gap_report`: the warm surrogate's gap to the replay over one warm-started full day
(`torta.rl.replay_env.warm_surrogate_gap`), the per-slot table written as CSV and the summary as JSON on
stdout. Defaults: abilene, servegen-mix-14d, seed 0, validation day 11, torta-horizon's decisions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click


@click.command()
@click.option("--scenario", default="abilene", show_default=True)
@click.option("--workload", default="servegen-mix-14d", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--day", default=11, show_default=True, type=int, help="Never a test day (12-14).")
@click.option("--hours", default=None, type=float, help="Only the first HOURS of the day (default: all of it).")
@click.option("--policy", default="torta-horizon", show_default=True)
@click.option("--csv", "csv_path", default=None, type=click.Path(dir_okay=False), help="Per-slot table (CSV).")
@click.option("--keep", default=None, type=click.Path(file_okay=False),
              help="Also keep the replay's per-slot metrics and the recorded decisions in this folder.")
@click.option("--from-kept", "from_kept", default=None, type=click.Path(file_okay=False, exists=True),
              help="Rerun only the surrogate's side on a folder kept by --keep (no replay).")
@click.option("--uncalibrated", is_flag=True, help="The response model without WarmCalibration's fitted scales.")
def cli(scenario, workload, seed, day, hours, policy, csv_path, keep, from_kept, uncalibrated):
    from torta.config import EVAL_PROTOCOL
    from torta.rl.replay_env import warm_surrogate_gap

    if day in EVAL_PROTOCOL.test_days:
        raise click.BadParameter(f"day {day} is a test day {EVAL_PROTOCOL.test_days}; the gap is measured on "
                                 "the validation or training days", param_hint="--day")
    from torta.rl.warm import WarmCalibration

    cal = WarmCalibration.none() if uncalibrated else WarmCalibration()
    t0 = time.perf_counter()
    if from_kept:
        out, summ = _from_kept(from_kept, scenario, workload, seed, day, hours, policy, cal), {}
    else:
        out = warm_surrogate_gap(scenario, workload, seed=seed, day=day, hours=hours, policy=policy, keep=keep,
                                 calibration=cal)
        summ = out.pop("replay_summary")
    frame = out.pop("frame")
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        frame.write_csv(csv_path, float_precision=4)
    out.update({"wall_s": round(time.perf_counter() - t0, 1), "requests": summ.get("requests"),
                "replay_mean_response_s_summary": summ.get("response_mean_s"), "hours": hours})
    click.echo(json.dumps(out, indent=1))


def _from_kept(kept: str, scenario: str, workload: str, seed: int, day: int, hours, policy: str, cal) -> dict:
    from torta.config import EVAL_PROTOCOL
    from torta.fleet.scenario import load_scenario
    from torta.rl.replay_env import compare_sides, load_kept
    from torta.rl.warm import warm_fleet_from_world
    from torta.runs.inputs import multiday_input

    world = load_scenario(scenario)
    inp = multiday_input(workload, scenario, world, seed, 1, hours, day, warmup_h=EVAL_PROTOCOL.warmup_h)
    wf = warm_fleet_from_world(inp.world, inp.mean_prompt_tokens, inp.mean_output_tokens, inp.model_share)
    oracle, record, per, sl = load_kept(kept)
    out = compare_sides(wf, oracle, record, per, sl, int(round(inp.warmup_s / float(world.slot_s))), policy, cal)
    return {"scenario": scenario, "workload": workload, "day": day, "seed": seed, **out}


if __name__ == "__main__":
    cli()
