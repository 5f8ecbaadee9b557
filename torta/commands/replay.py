"""`torta replay`: replay a trace through a scenario under one policy."""

from __future__ import annotations

import json

import click

from torta.commands.options import progress_option, stage, want_progress


@click.command()
@click.option("--scenario", required=True, help="Shipped scenario name or scenario TOML path.")
@click.option("--trace", required=True, help="Shipped trace name or canonical requests Parquet path.")
@click.option("--policy", required=True, help="Policy name (see `torta policies`).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for origins, replication and routing draws.")
@click.option("--load-factor", default=1.0, show_default=True, type=float,
              help="Scale the offered load by F (> 0).")
@click.option("--load-mode", default="compress", show_default=True, type=click.Choice(["compress", "replicate"]),
              help="compress: arrival times / F; replicate: F seeded, jittered copies of the trace.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write completions.parquet, slots.parquet and summary.json here.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as one JSON document.")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Replay only the first H hours of the trace (default: all of it).")
@progress_option
def cli(scenario: str, trace: str, policy: str, seed: int, load_factor: float, load_mode: str, out_dir: str | None,
        as_json: bool, hours: float | None, progress: bool | None) -> None:
    """Replay TRACE through SCENARIO under POLICY; prints TTFT, TPOT and end-to-end percentiles.

    Origins are assigned per request (seeded, by the scenario's region origin weights) unless the trace
    sets origin_region. --load-factor F with --load-mode compress divides arrival times by F; with
    replicate it lays F jittered copies of the trace over its own time span (fractions by a seeded
    subsample)."""
    from torta.fleet.scenario import load_scenario
    from torta.policy import get_policy
    from torta.sim.replay import replay
    from torta.traces import load_trace

    progress = want_progress(progress)
    stage(progress, f"[set-up] scenario {scenario}")
    world = load_scenario(scenario)
    stage(progress, f"[set-up] policy {policy}")
    pol = get_policy(policy)()
    stage(progress, f"[set-up] trace {trace}")
    requests = load_trace(trace)
    if hours is not None:
        import polars as pl

        requests = requests.filter(pl.col("arrival_s") < hours * 3600.0)
    window = f"first {hours:g} h, " if hours is not None else ""
    click.echo(f"replaying {requests.height:,} requests ({window}x{load_factor} {load_mode}) through {world.name} "
               f"({len(world.servers)} servers) with {policy}", err=True)
    res = replay(world, requests, pol, seed=seed, out_dir=out_dir, progress=progress,
                 load_factor=load_factor, load_mode=load_mode)
    s = res.summary
    if as_json:
        click.echo(json.dumps(s))
        return
    click.echo(f"requests {s['requests']:,}  completed {s['completed']:,}  dropped {s['dropped']:,} "
               f"{ {k: v for k, v in s['dropped_reasons'].items() if v} or ''}")
    for name in ("response", "ttft"):
        click.echo(f"{name:<9} mean {s[name + '_mean_s']:.3f} s  p50 {s[name + '_p50_s']:.3f}  "
                   f"p95 {s[name + '_p95_s']:.3f}  p99 {s[name + '_p99_s']:.3f}")
    click.echo(f"tpot      mean {s['tpot_mean_s'] * 1000:.1f} ms  p50 {s['tpot_p50_s'] * 1000:.1f}  "
               f"p99 {s['tpot_p99_s'] * 1000:.1f}")
    click.echo(f"load std {s['load_std']:.4f}  cv {s['load_cv']:.4f}  switches {s['switches']}")
    click.echo(f"cost ${s['cost_usd']:.4f} (energy {s['energy_usd']:.4f}, transfer {s['transfer_usd']:.4f}, "
               f"switching {s['switching_usd']:.4f})  {s['energy_kwh']:.2f} kWh  {s['co2_kg']:.2f} kg CO2")
    click.echo(f"wall {s['wall_s']:.2f} s  ({s['requests_per_s']:,.0f} requests/s)")
    if res.completions_path is not None:
        click.echo(f"wrote {out_dir}/completions.parquet, slots.parquet, summary.json", err=True)
