"""`torta traces list|fetch`: shipped traces and larger public downloads (traces/manifest.toml)."""

from __future__ import annotations

from pathlib import Path

import click

from torta import strictjson
from torta.commands.options import progress_option, want_progress


@click.group(name="traces")
def cli() -> None:
    """List shipped traces and fetch larger public ones."""


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def list_cmd(as_json: bool) -> None:
    """Every trace in traces/manifest.toml: shipped or fetchable, present or not."""
    from torta.traces import all_traces

    traces = [t.to_dict() for t in all_traces().values()]
    if as_json:
        click.echo(strictjson.dumps({"traces": traces}))
        return
    for t in traces:
        where = "shipped" if t["shipped"] else ("downloaded" if t["present"] else "fetchable")
        rows = f"{t['rows']:,} rows" if t["rows"] else "rows ?"
        click.echo(f"{t['name']:<18} {t['format']:<11} {where:<10} {rows:<18} {t['license']}  {t['file']}")


@cli.command(name="fetch")
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to download into (default traces/downloads/).")
@click.option("--url", help="Download from this URL instead of the manifest's (a mirror).")
@click.option("--retries", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Resume this many times after an interrupted transfer.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@progress_option
def fetch_cmd(name: str, dest: Path | None, url: str | None, retries: int, as_json: bool,
              progress: bool | None) -> None:
    """Download trace NAME (resumable; size and checksum verified before the final rename)."""
    from torta.traces import fetch_trace

    res = fetch_trace(name, dest=dest, url=url, retries=retries, progress=want_progress(progress))
    doc = {"name": name, "path": str(res.path), "size_bytes": res.size_bytes, "sha256": res.sha256,
           "attempts": res.attempts, "resumed": res.resumed, "already_present": res.already_present}
    if as_json:
        click.echo(strictjson.dumps(doc))
    else:
        state = "already present" if res.already_present else f"downloaded in {res.attempts} attempt(s)"
        click.echo(f"{name}: {res.path} ({res.size_bytes:,} bytes, sha256 {res.sha256}) {state}")
