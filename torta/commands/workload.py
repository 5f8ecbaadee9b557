"""`torta workload ...`: list, build and inspect multi-day workloads."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from torta import strictjson


def _write_parquet(df, out: str) -> Path:
    from torta.fileio import atomic_file

    path = Path(out)
    with atomic_file(path) as tmp:
        df.write_parquet(tmp)
    return path


@click.group()
def cli() -> None:
    """Build and inspect multi-day workloads (ServeGen rates -> requests)."""


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def list_cmd(as_json: bool) -> None:
    """List the named workloads."""
    from torta.workload import list_workloads

    rows = [{"name": s.name, "classes": list(s.classes), "models": list(s.models),
             "days": s.days, "target_utilisation": s.target_utilisation, "scenario": s.scenario,
             "sources": list(s.sources), "description": s.description}
            for s in list_workloads()]
    if as_json:
        click.echo(strictjson.dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['name']:<20} {','.join(r['models']):<34} {r['description']}")


@cli.command("build")
@click.argument("name")
@click.option("--scenario", default=None, help="Scenario name (default: the workload's).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--days", default=None, help="Days to build, 1-based inclusive: 'a-b' or 'a' (default all 14).")
@click.option("--hours", default=None, type=float, help="Keep only the first HOURS hours of the days.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Parquet file to write.")
@click.option("--meta-out", default=None, type=click.Path(dir_okay=False),
              help="Write the metadata JSON here (default: <out>.meta.json).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (the metadata).")
def build_cmd(name, scenario, seed, days, hours, out, meta_out, as_json) -> None:
    """Build the requests of workload NAME (REQUEST_SCHEMA Parquet) and its metadata."""
    from torta.workload import iter_workload, prepare
    from torta.workload.build import metadata
    from torta.workload.build import _window_bounds

    plan = prepare(name, scenario, seed)
    start, end = _window_bounds(days, hours, plan.spec.days)
    est = plan.scale * sum(float(r.filled_rate_per_s.sum(axis=0).mean()) for r in plan.rates) \
        * (end - start)
    click.echo(f"building {name} on {plan.scenario}, seed {seed}, t = {start:.0f}-{end:.0f} s "
               f"(day {start / 86400 + 1:g} to {end / 86400 + 1:g}): about {est:,.0f} requests",
               err=True)
    from torta.fileio import atomic_file, atomic_write_text

    t0 = time.perf_counter()
    path = Path(out)
    n = 0
    writer = None
    with atomic_file(path) as tmp:
        try:
            import pyarrow.parquet as pq

            for df, _ in iter_workload(name, plan=plan, days=days, hours=hours, chunk_s=6 * 3600):
                table = df.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
                n += df.height
                click.echo(f"  {n:,} requests", err=True)
        finally:
            if writer is not None:
                writer.close()  # iter_workload yields at least one (maybe empty) frame
    meta = metadata(plan, start, end)
    meta["requests"] = n
    meta["out"] = str(path)
    meta["build_s"] = time.perf_counter() - t0
    mpath = Path(meta_out) if meta_out else path.with_name(path.name + ".meta.json")
    atomic_write_text(mpath, strictjson.dumps(meta, indent=1))
    click.echo(f"wrote {n:,} requests to {path} in {meta['build_s']:.1f} s", err=True)
    if as_json:
        click.echo(strictjson.dumps(meta))


@cli.command("rates")
@click.argument("name")
@click.option("--scenario", default=None)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def rates_cmd(name, scenario, seed, out, as_json) -> None:
    """Write the per-slot regional request counts of workload NAME (no requests materialised)."""
    from torta.workload import regional_rates

    df = regional_rates(name, scenario, seed)
    path = _write_parquet(df, out)
    doc = {"workload": name, "seed": seed, "rows": df.height, "out": str(path),
           "masked_rows": int(df["masked"].sum()), "requests": int(df["requests"].sum())}
    print(strictjson.dumps(doc) if as_json else f"wrote {df.height} rows to {path}",
          file=sys.stdout if as_json else sys.stderr)
