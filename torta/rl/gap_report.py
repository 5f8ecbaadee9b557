"""`python -m torta.rl.gap_report`: the warm surrogate's gap to the replay over one warm-started full day
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
def cli(scenario, workload, seed, day, hours, policy, csv_path, keep):
    from torta.config import EVAL_PROTOCOL
    from torta.rl.replay_env import warm_surrogate_gap

    if day in EVAL_PROTOCOL.test_days:
        raise click.BadParameter(f"day {day} is a test day {EVAL_PROTOCOL.test_days}; the gap is measured on "
                                 "the validation or training days", param_hint="--day")
    t0 = time.perf_counter()
    out = warm_surrogate_gap(scenario, workload, seed=seed, day=day, hours=hours, policy=policy, keep=keep)
    frame = out.pop("frame")
    summ = out.pop("replay_summary")
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        frame.write_csv(csv_path, float_precision=4)
    out.update({"wall_s": round(time.perf_counter() - t0, 1), "requests": summ.get("requests"),
                "replay_mean_response_s_summary": summ.get("response_mean_s"), "hours": hours})
    click.echo(json.dumps(out, indent=1))


if __name__ == "__main__":
    cli()
