"""`torta compare`: run policies on the same requests and seeds; mean and 95 % t-interval per metric."""

from __future__ import annotations


import click

from torta import strictjson
from torta.config import EVAL_PROTOCOL
from torta.commands.options import progress_option, want_progress


@click.command()
@click.option("--scenario", required=True, help="Shipped scenario name or scenario TOML path.")
@click.option("--workload", required=True,
              help="Multi-day workload name (e.g. servegen-mix-14d), shipped trace name, or canonical Parquet path.")
@click.option("--policies", required=True, help="Comma-separated policy names (see `torta policies`).")
@click.option("--seeds", default=3, show_default=True, type=int, help="Seeds 0..N-1.")
@click.option("--days", default=1, show_default=True, type=int,
              help="Days to replay (multi-day workloads: from the first test day, day 12).")
@click.option("--hours", default=None, type=float, help="Keep only the first H hours of the window.")
@click.option("--hours-per-day", default=None, type=float,
              help="Multi-day workloads: replay the first H hours of EACH day of the window (--days days "
                   "from --start-day), one paired unit per (seed, day); not with --hours.")
@click.option("--start-day", default=EVAL_PROTOCOL.first_test_day, show_default=True, type=int,
              help="First day of the window for multi-day workloads (days 12-14 are the test).")
@click.option("--tune-hours", default=1.0, show_default=True, type=float,
              help="Length of the skylb tuning window (day 11).")
@click.option("--skylb-threshold", default=None, type=float,
              help="Use this skylb threshold (pending requests per server) instead of tuning.")
@click.option("--baseline", default=None,
              help="Also report paired differences (per seed, or per (seed, day) with --hours-per-day) against "
                   "this policy, or each of a comma list of them (each one of --policies).")
@click.option("--warmup-hours", default=0.0, show_default=True, type=float,
              help="Multi-day workloads: replay this many hours before each window (the end of the previous "
                   f"day) unscored, through the same policy; 0 = cold start (quick looks; the experiment's "
                   f"protocol uses {EVAL_PROTOCOL.warmup_h:g} h).")
@click.option("--state-refresh-s", default=0.0, show_default=True, type=float,
              help="Control-plane information model: each origin's gateway sees other regions as of load "
                   "reports every S s (plus the network delay); 0 = instant global state (the oracle; the "
                   f"protocol's default is {EVAL_PROTOCOL.state_refresh_s:g} s).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array, one object per policy.")
@progress_option
def cli(scenario, workload, policies, seeds, days, hours, hours_per_day, start_day, tune_hours, skylb_threshold,
        baseline, warmup_hours, state_refresh_s, as_json, progress):
    """Compare POLICIES on WORKLOAD in SCENARIO over SEEDS: response time (mean, p95), load_std, cost
    (energy, transfer, switching), switches and planner time, each as a mean and 95 % t-interval over
    seeds. The request count and a run-time estimate go to stderr first."""
    from torta.runs.compare import METRICS, parse_baselines, run_compare

    names = [p.strip() for p in policies.split(",") if p.strip()]
    res = run_compare(scenario, workload, names, seeds, days=days, hours=hours, start_day=start_day,
                      tune_hours=tune_hours, skylb_threshold=skylb_threshold, baseline=baseline,
                      hours_per_day=hours_per_day, progress=want_progress(progress), warmup_h=warmup_hours,
                      state_refresh_s=state_refresh_s)
    if as_json:
        click.echo(strictjson.dumps(res.rows))
        return
    w = max(len(n) for n in names) + 2
    click.echo(f"{'policy':<{w}}" + "".join(f"{m:>24}" for m in METRICS))
    for row in res.rows:
        cells = "".join(f"{_fmt(row[m]) + ' ± ' + _fmt(row[m + '_ci95']):>24}" for m in METRICS)
        click.echo(f"{row['policy']:<{w}}{cells}")
    unit = "(seed, day) units" if hours_per_day is not None else "seeds"
    for b in parse_baselines(baseline):
        click.echo(f"\npaired differences vs {b} (mean ± 95 % t-interval over {unit}):")
        for row in res.rows:
            if row["policy"] == b:
                continue
            p = row["paired_vs"][b]
            cells = "".join(f"{_fmt(p[m + '_diff']) + ' ± ' + _fmt(p[m + '_diff_ci95']):>24}" for m in METRICS)
            click.echo(f"{row['policy']:<{w}}{cells}")
    click.echo(f"{seeds} seeds; requests per seed {res.requests_per_seed}; ± = 95 % t-interval half-width", err=True)


def _fmt(x: float) -> str:
    return f"{x:.4g}"
