"""`torta run`: the main job (what `make run` runs)."""

from __future__ import annotations

import click

from torta.config import EVAL_PROTOCOL

from pipelines import warehouse as wh
from torta.commands.options import progress_option, want_progress


@click.command()
@click.option("--scenario", default="abilene", show_default=True)
@click.option("--workload", default="servegen-mix-14d", show_default=True,
              help="Multi-day workload (first test day), shipped trace name or canonical Parquet path.")
@click.option("--policies", default="", help="Comma-separated policies (default: every registered policy but the ablation variants and "
                   "prefix-hash, which needs prefix block ids; `torta policies` lists them all).")
@click.option("--seeds", default=2, show_default=True, type=click.IntRange(1))
@click.option("--hours", default=1.0, show_default=True, type=float, help="Hours of the workload replayed.")
@click.option("--warmup-hours", default=1.0, show_default=True, type=click.FloatRange(0.0),
              help="Multi-day workloads: unscored warm-up hours before the window, through the same policy "
                   "(0 = cold start).")
@click.option("--state-refresh-s", default=EVAL_PROTOCOL.state_refresh_s, show_default=True,
              type=click.FloatRange(0.0),
              help="Control-plane information model: each gateway's load-report interval (s); 0 = instant "
                   "global state.")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@click.option("--workers", default=0, type=click.IntRange(0),
              help="Replays run at a time, one process each (default 0: one per core).")
@progress_option
@click.option("--warehouse", "database", default=None, help=f"Warehouse file. {wh.WAREHOUSE_HELP}")
def cli(scenario, workload, policies, seeds, hours, warmup_hours, state_refresh_s, no_report, workers, progress,
        database) -> None:
    """Run the main job on the local Dagster instance: ingest, fleet, forecast, replay every policy
    (in parallel, one process per core), print the comparison table and write the report.

    Every name (scenario, workload, policies) is checked before any work: a bad one exits 2 with one
    line and leaves nothing behind."""
    from pipelines.main import MainConfig, print_main, run_main, validate

    cfg = MainConfig(scenario=scenario, workload=workload,
                     policies=tuple(p.strip() for p in policies.split(",") if p.strip()),
                     seeds=seeds, hours=hours, report=not no_report, warmup_hours=warmup_hours,
                     state_refresh_s=state_refresh_s)
    names = validate(cfg)
    print_main(run_main(cfg, database, workers=workers or None, policies=names, progress=want_progress(progress)))
