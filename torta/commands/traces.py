"""`torta traces list|fetch|conversations`: shipped traces and larger public downloads
(traces/manifest.toml); a seeded synthetic multi-turn conversation trace with prefix block ids."""

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


@cli.command(name="conversations")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Canonical requests Parquet to write (with a hash_ids column of prefix block ids).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--hours", default=1.0, show_default=True, type=float, help="Span of conversation starts.")
@click.option("--rate", "rate_per_s", default=0.5, show_default=True, type=float,
              help="Conversations started per second (Poisson).")
@click.option("--mean-turns", default=4.0, show_default=True, type=float)
@click.option("--system-tokens", default=2048, show_default=True, type=int,
              help="Length of each shared system prompt.")
@click.option("--max-context", "max_context_tokens", default=32768, show_default=True, type=int,
              help="A conversation ends before a prompt longer than this.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def conversations_cmd(out_path: Path, seed: int, hours: float, rate_per_s: float, mean_turns: float,
                      system_tokens: int, max_context_tokens: int, as_json: bool) -> None:
    """Write a seeded synthetic multi-turn conversation trace: each turn's prompt extends the previous
    turn's context; 512-token prefix block ids in `hash_ids` (torta.workload.conversations)."""
    from torta.errors import InputError
    from torta.workload.conversations import ConversationConfig, generate

    try:
        cfg = ConversationConfig(duration_s=hours * 3600.0, conversations_per_s=rate_per_s, mean_turns=mean_turns,
                                 system_tokens=system_tokens, max_context_tokens=max_context_tokens)
    except ValueError as exc:
        raise InputError("torta traces conversations", str(exc)) from None
    df = generate(cfg, seed=seed)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(out_path)
    doc = {"path": str(out_path), "requests": df.height, "conversations": int(df["conversation"].n_unique()),
           "prompt_tokens_mean": float(df["prompt_tokens"].mean() or 0.0), "seed": seed}
    if as_json:
        click.echo(strictjson.dumps(doc))
    else:
        click.echo(f"wrote {df.height:,} requests of {doc['conversations']:,} conversations to {out_path}")
