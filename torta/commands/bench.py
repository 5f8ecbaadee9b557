"""`torta bench ...`: benchmarks. The measuring code lives beside what it measures (torta.ingest.bench,
torta.sim.bench, torta.forecast.bench, torta.planner.bench, imported when a subcommand runs); the click
commands are here."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click

SIM_CASES = ("normal", "overloaded", "large-fleet", "prefix-cache",
             "prefix-cache-off")  # torta.sim.bench.CASES (checked by tests/test_sim_bench.py)


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


@click.group()
def cli() -> None:
    """Benchmarks (throughput and peak memory). Quote medians; never timed unit tests."""


@cli.command("ingest")
@click.option("--rows", type=click.IntRange(min=1), default=27_000_000, show_default=True,
              help="Rows in the generated Azure 2024 format file.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the generated files (default: a temporary directory, removed after).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def bench_ingest(rows: int, seed: int, workdir: Path | None, as_json: bool) -> None:
    """Time ingest + Parquet write of a generated Azure 2024 file; report rows/s and peak RSS."""
    from torta.ingest.bench import TARGET_PEAK_MIB, TARGET_WALL_S, run_bench

    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        res = run_bench(rows, workdir, seed=seed)
    else:
        with tempfile.TemporaryDirectory(prefix="torta-bench-ingest-") as tmp:
            res = run_bench(rows, Path(tmp), seed=seed)
    if as_json:
        click.echo(json.dumps({"cases": [res]}))
    else:
        click.echo(f"ingest {res['rows']:,} rows ({res['input_bytes'] / 2**20:.0f} MiB CSV): {res['wall_s']:.1f} s "
                   f"({res['rows_per_s']:,.0f} rows/s; ingest {res['ingest_s']:.1f} s, write {res['write_s']:.1f} s), "
                   f"peak RSS {res['peak_rss_mib']:.0f} MiB; target <= {TARGET_WALL_S:.0f} s and "
                   f"<= {TARGET_PEAK_MIB:.0f} MiB: {'met' if res['meets_target'] else 'NOT met'}")


@cli.command("replay")
@click.option("--requests", "n_requests", default=1_000_000, show_default=True, type=click.IntRange(1))
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1))
@click.option("--case", "only", multiple=True, type=click.Choice(list(SIM_CASES)),
              help="Run only these cases (default: normal, overloaded, large-fleet; prefix-cache runs with "
                   "prefix-cache-off alternately and reports speed_ratio_vs_off).")
@click.option("--memory-check", is_flag=True, help="Also replay 10M requests once and report peak RSS.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def bench_replay(n_requests: int, repeats: int, only: tuple[str, ...], memory_check: bool, seed: int,
                 as_json: bool) -> None:
    """Replay throughput (requests/s, median of repeats) and peak RSS per case."""
    from torta.sim.bench import run_bench

    doc = run_bench(n_requests, repeats, only, memory_check, seed, log=_echo_err)
    if as_json:
        click.echo(json.dumps(doc))
        return
    for r in doc["cases"]:
        note = ""
        if "target_requests_per_s" in r:
            note = f"  goal {r['target_requests_per_s']:,} req/s: {'met' if r['meets_target'] else 'not met'}"
        elif "target_peak_rss_mib" in r:
            note = f"  goal {r['target_peak_rss_mib']:,} MiB: {'met' if r['meets_target'] else 'not met'}"
        if "speed_ratio_vs_off" in r:
            note = (f"  cache hit {r['cache_hit_rate']:.3f}; speed with/without the cache "
                    f"{r['speed_ratio_vs_off']:.2f} (median of alternating pairs)")
        click.echo(f"{r['case']:<16} {r['requests']:>10,} req  {r['requests_per_s']:>10,.0f} req/s  "
                   f"{r['peak_rss_mib']:>7.0f} MiB{note}")


@cli.command("forecast")
@click.option("--scenario", default="abilene", show_default=True)
@click.option("--regions", default=50, show_default=True, type=int,
              help="Synthetic origin regions instead of SCENARIO's (0: use SCENARIO).")
@click.option("--workloads", default="servegen-mid-14d,servegen-mix-14d", show_default=True)
@click.option("--horizon", default=96, show_default=True, type=int, help="Slots ahead (96 = 24 h).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--rolling/--no-rolling", default=False, show_default=True)
@click.option("--jobs", default=2, show_default=True, type=int, help="Processes over series.")
@click.option("--models", default=None,
              help="Comma-separated candidate models (default: the default candidates, "
                   "DEFAULT_MODELS); e.g. SeasonalNaive,Naive,PoolCombo for the opt-in combination.")
@click.option("--json", "as_json", is_flag=True)
def bench_forecast(scenario, regions, workloads, horizon, seed, rolling, jobs, models,
                   as_json) -> None:
    """Time forecasting every series of WORKLOADS (14 days of 15-min slots)."""
    from torta.forecast.bench import run_bench

    names = [x.strip() for x in workloads.split(",") if x.strip()]
    chosen = tuple(m.strip() for m in models.split(",") if m.strip()) if models else None
    doc = run_bench(scenario, names, horizon, seed, rolling, jobs, regions=regions, log=_echo_err,
                    models=chosen)
    if as_json:
        click.echo(json.dumps(doc))
        return
    for c in doc["cases"]:
        click.echo(f"{c['case']:<36} {c['series']:>3} series {c['wall_s']:7.1f} s wall {c['cpu_s']:7.1f} s cpu")


@cli.command("plan")
@click.option("--regions", default=50, show_default=True, help="regions for the planner benchmark")
@click.option("--slots", default=200, show_default=True)
@click.option("--method", type=click.Choice(["emd", "sinkhorn", "unbalanced"]), default="emd", show_default=True)
@click.option("--servers", default=50, show_default=True, hidden=True,
              help="no effect (the fleet-free numpy allocator it sized is now a test oracle)")
@click.option("--alloc-regions", default=12, show_default=True, hidden=True, help="no effect (see --servers)")
@click.option("--models", default=3, show_default=True)
@click.option("--requests", default=200_000, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--horizon", default=12, show_default=True, type=click.IntRange(1, 96),
              help="slots planned jointly by the horizon LP (torta-horizon)")
@click.option("--horizon-calls", default=40, show_default=True, type=click.IntRange(1, 10_000),
              help="planning calls timed for the horizon LP (at most --slots)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
def bench_plan(regions, slots, method, servers, alloc_regions, models, requests, seed, horizon, horizon_calls,
               as_json):
    """Planner ms per slot (OT, horizon LP) and micro allocator microseconds per request."""
    from torta.planner.bench import run_bench

    doc = run_bench(regions, slots, method, models, requests, seed, horizon, horizon_calls)
    if as_json:
        click.echo(json.dumps(doc))
        return
    for c in doc["cases"]:
        click.echo("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.items()))
    print("(target: <= 5 ms per slot at 50 regions with exact EMD; <= 20 ms per slot for the horizon LP at "
          "50 regions x 3 models x H = 12; <= 20 us per request)", file=sys.stderr)


@cli.command("policies")
@click.option("--scenario", default="abilene", show_default=True)
@click.option("--workload", default="servegen-mix-14d", show_default=True, help="A multi-day workload.")
@click.option("--day", default=None, type=int, help="Day replayed (default: the protocol's validation day, 11).")
@click.option("--hours", default=24.0, show_default=True, type=click.FloatRange(0, 24, min_open=True),
              help="Scored hours of the day (24: the whole day).")
@click.option("--warmup-hours", default=None, type=click.FloatRange(min=0),
              help="Unscored hours before the window (default: the protocol's, 2).")
@click.option("--state-refresh-s", default=None, type=click.FloatRange(min=0),
              help="Load-report interval of the information model (default: the protocol's, 5 s).")
@click.option("--policies", default=None,
              help="Comma-separated policies (default: least-loaded and every TORTA policy of the experiment).")
@click.option("--repeats", default=1, show_default=True, type=click.IntRange(1),
              help="Rounds over all policies, each in a rotated order; ratios are medians over rounds.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def bench_policies(scenario, workload, day, hours, warmup_hours, state_refresh_s, policies, repeats, seed,
                   as_json) -> None:
    """Each policy's replay speed on one day against least-loaded's (requests/s and per CPU-second)."""
    from torta.config import EVAL_PROTOCOL
    from torta.runs.speed import BASELINE, REQUIRED_RATIO, SpeedCase, default_policies, run_speed

    case = SpeedCase(scenario=scenario, workload=workload,
                     day=EVAL_PROTOCOL.validation_day if day is None else day, hours=hours,
                     warmup_h=EVAL_PROTOCOL.warmup_h if warmup_hours is None else warmup_hours,
                     state_refresh_s=EVAL_PROTOCOL.state_refresh_s if state_refresh_s is None else state_refresh_s,
                     seed=seed)
    names = [p.strip() for p in policies.split(",") if p.strip()] if policies else list(default_policies())
    names = list(dict.fromkeys([BASELINE, *names]))  # least-loaded first: every ratio is against it
    _echo_err(f"bench policies: {len(names)} policies x {repeats} repeats on {scenario} / {workload} day {case.day}, "
              f"{hours:g} h after {case.warmup_h:g} h warm-up, S = {case.state_refresh_s:g} s; the estimate "
              "follows the first run")
    doc = run_speed(case, names, repeats, log=_echo_err)
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(f"{'policy':<20} {'req/s':>9} {'req/CPU-s':>10} {'x LL wall':>10} {'x LL CPU':>9}  >= {REQUIRED_RATIO:g}")
    for r in doc["policies"]:
        click.echo(f"{r['policy']:<20} {r['requests_per_s']:>9,.0f} {r['requests_per_cpu_s']:>10,.0f} "
                   f"{r['ratio_wall']:>10.2f} {r['ratio_cpu']:>9.2f}  {'yes' if r['meets_half'] else 'NO'}")
