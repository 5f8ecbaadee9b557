"""`torta replay`: replay a trace through a scenario under one policy."""

from __future__ import annotations

from pathlib import Path

import click

from torta import strictjson
from torta.commands.options import progress_option, stage, want_progress


def _inputs(scenario: str, trace: str) -> dict:
    """The scenario and trace files behind the names, with their SHA-256 (for the run's manifest)."""
    from torta.fileio import sha256_file
    from torta.fleet.scenario import scenario_path
    from torta.traces import all_traces

    traces = all_traces()
    sfile = scenario_path(scenario)
    tfile = traces[trace].path if trace in traces else Path(trace)
    return {"scenario": scenario, "scenario_file": str(sfile), "scenario_file_sha256": sha256_file(sfile),
            "trace": trace, "trace_file": str(tfile),
            "trace_file_sha256": sha256_file(tfile) if tfile.is_file() else ""}


def _raw_trace_input(path: str, fmt: str, world, seed: int, hours: float | None, warmup_hours: float):
    """The input of a raw trace file of format `fmt` (`torta.ingest`), its first `hours` when given."""
    import polars as pl

    from torta.ingest import ingest
    from torta.runs.inputs import trace_input

    if warmup_hours:
        raise ValueError(f"a warm-up needs a multi-day workload (the hours before the window); {path!r} is a trace")
    df = ingest(fmt, Path(path), source=Path(path).name).frame
    if hours is not None:
        df = df.filter(pl.col("arrival_s") < float(hours) * 3600.0)
    return trace_input(path, world, seed, None, None, {"df": df})


@click.command()
@click.option("--scenario", required=True, help="Shipped scenario name or scenario TOML path.")
@click.option("--trace", required=True,
              help="Shipped trace name, canonical requests Parquet path, or multi-day workload name (its first "
                   "test day).")
@click.option("--policy", required=True, help="Policy name (see `torta policies`).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for origins, replication and routing draws.")
@click.option("--load-factor", default=1.0, show_default=True, type=float,
              help="Scale the offered load by F (> 0).")
@click.option("--load-mode", default="compress", show_default=True, type=click.Choice(["compress", "replicate"]),
              help="compress: arrival times / F; replicate: F seeded, jittered copies of the trace.")
@click.option("--hours", default=None, type=float, help="Replay only the first H hours of the trace or day.")
@click.option("--out", "out_dir", type=click.Path(), default=None,
              help="Write completions.parquet, slots.parquet, summary.json and manifest.json here, as one unit "
                   "(a new, empty or previous-run folder; a concurrent replay into the same folder exits 2).")
@click.option("--warmup-hours", default=0.0, show_default=True, type=float,
              help="Multi-day workloads: replay this many hours before the window unscored (the end of the "
                   "previous day) through the same policy; 0 = cold start.")
@click.option("--state-refresh-s", default=0.0, show_default=True, type=float,
              help="Control-plane information model: gateways see other regions as of load reports every S s "
                   "(plus the network delay); 0 = instant global state.")
@click.option("--trace-format", default=None, help="Read TRACE as a raw file of this format (a `torta ingest` "
              "format, e.g. mooncake) instead of a trace name or canonical Parquet.")
@click.option("--prefix-cache/--no-prefix-cache", default=None,
              help="Per-server prefix (KV) cache (default: on when the requests carry prefix block ids, "
                   "hash_ids; --prefix-cache on a trace without them is an error).")
@click.option("--block-tokens", default=512, show_default=True, type=int,
              help="Tokens per prefix block (Mooncake's hash_ids: 512).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as one JSON document.")
@progress_option
def cli(scenario: str, trace: str, policy: str, seed: int, load_factor: float, load_mode: str, hours: float | None,
        out_dir: str | None, warmup_hours: float, state_refresh_s: float, trace_format: str | None,
        prefix_cache: bool | None, block_tokens: int, as_json: bool, progress: bool | None) -> None:
    """Replay TRACE through SCENARIO under POLICY; prints TTFT, TPOT and end-to-end percentiles.

    Origins are assigned per request (seeded, by the scenario's region origin weights) unless the trace
    sets origin_region. --load-factor F with --load-mode compress divides arrival times by F; with
    replicate it lays F jittered copies of the trace over its own time span (fractions by a seeded
    subsample).

    The policy is prepared as `torta compare` prepares it: a multi-day workload gives it the demand
    history before the replayed day; a policy that plans on a forecast (torta-ot) and gets no history (a
    trace has none) is an error (exit 2) naming the missing input. The JSON's `demand_source` says what a
    planning policy planned on.

    Requests with prefix block ids (a `hash_ids` column: a Mooncake file with --trace-format mooncake, or
    `torta traces conversations`) are replayed with a per-server prefix cache; the JSON then reports
    `cache_hit_rate`, `prefill_tokens_saved` and `cache_evictions`."""
    from torta.errors import InputError
    from torta.fileio import refuse_output_over_inputs
    from torta.fleet.scenario import load_scenario
    from torta.policy import get_policy
    from torta.runs.execute import run_policy
    from torta.runs.inputs import workload_input
    from torta.sim.engine import EngineConfig

    provenance = _inputs(scenario, trace) if out_dir is not None else None
    if out_dir is not None:
        refuse_output_over_inputs(out_dir, [provenance["scenario_file"], provenance["trace_file"]])
    progress = want_progress(progress)
    stage(progress, f"[set-up] scenario {scenario}")
    world = load_scenario(scenario)
    get_policy(policy)  # fail fast on an unknown name before building the input
    if hours is not None and not hours > 0:
        raise ValueError(f"--hours must be > 0, got {hours}")
    if not (warmup_hours >= 0 and warmup_hours < float("inf")):
        raise InputError("--warmup-hours", f"{warmup_hours}; expected a finite number of hours >= 0",
                         field="warmup_hours")
    if not (isinstance(block_tokens, int) and block_tokens > 0):
        raise InputError("--block-tokens", f"{block_tokens}; expected a positive number of tokens",
                         field="block_tokens")
    stage(progress, f"[set-up] trace {trace}")
    try:
        inp = (_raw_trace_input(trace, trace_format, world, seed, hours, warmup_hours) if trace_format else
               workload_input(trace, scenario, world, seed, hours=hours, warmup_h=warmup_hours))
    except ValueError as exc:
        if not warmup_hours:
            raise
        raise InputError("--warmup-hours", str(exc), field="warmup_hours") from None
    window = f"first {hours:g} h, " if hours is not None else ""

    def announce(n: int) -> None:
        click.echo(f"replaying {n:,} requests ({window}x{load_factor} {load_mode}) through {world.name} "
                   f"({len(world.servers)} servers) with {policy}", err=True)

    try:
        run = run_policy(policy, inp, strict=True, out_dir=out_dir, progress=progress,
                         load_factor=load_factor, load_mode=load_mode, provenance=provenance, on_start=announce,
                         state_refresh_s=state_refresh_s,
                         config=EngineConfig(prefix_cache=prefix_cache, block_tokens=block_tokens))
    except InputError as exc:
        if exc.path != "requests":
            raise
        row = f" (row {exc.line} in arrival order)" if exc.line is not None else ""
        raise InputError(trace, exc.detail + row, field=exc.field) from None
    res = run.result
    if "demand_source" in run.params:
        res.summary["demand_source"] = run.params["demand_source"]
    s = res.summary
    if as_json:
        click.echo(strictjson.dumps(s))
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
    if s["prefix_cache"]:
        click.echo(f"prefix cache: token hit rate {s['cache_hit_rate']:.3f}  prefill tokens saved "
                   f"{s['prefill_tokens_saved']:,}  evictions {s['cache_evictions']:,} blocks")
    click.echo(f"wall {s['wall_s']:.2f} s  ({s['requests_per_s']:,.0f} requests/s)")
    if "demand_source" in s:
        click.echo(f"planned on: {s['demand_source']} demand")
    if res.completions_path is not None:
        click.echo(f"wrote {out_dir}/completions.parquet, slots.parquet, summary.json, manifest.json", err=True)
