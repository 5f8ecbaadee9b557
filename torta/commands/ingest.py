"""`torta ingest FORMAT PATH [--out FILE.parquet]`: raw trace -> canonical Parquet + summary."""

from __future__ import annotations

from pathlib import Path

import click

from torta import strictjson

from torta.ingest.formats import FORMATS


def _mapping(mapping_file, timestamp_col, timestamp_unit, timestamp_format, prompt_col, output_col, model_col,
             epoch, file_format, separator, block_ids_col=None):
    from torta.ingest.mapping import ColumnMapping

    flags = {"timestamp": timestamp_col, "timestamp_unit": timestamp_unit, "timestamp_format": timestamp_format,
             "prompt_tokens": prompt_col, "output_tokens": output_col, "model": model_col,
             "epoch": True if epoch else None, "file_format": file_format, "separator": separator,
             "block_ids": block_ids_col}
    given = {k: v for k, v in flags.items() if v is not None}
    if mapping_file is not None:
        return ColumnMapping.from_toml(mapping_file).merged(**given)
    if not given:
        return None
    return ColumnMapping.from_dict(given, origin="mapping flags (--timestamp-col/--prompt-col/--output-col)")


def _human(summary: dict, result, out: Path | None, qpath: Path | None) -> str:
    lines = [f"{result.fmt}: {summary['rows']:,} rows from {result.path}"]
    if summary["kind"] == "rates":
        lines.append(f"  clients {summary['clients']}, classes {', '.join(summary['model_classes'])}, "
                     f"windows from {summary['first_arrival_s']:.0f} s to {summary['last_arrival_s']:.0f} s, "
                     f"mean rate {summary['mean_rate_per_s']:.3f} req/s per client-window")
    else:
        lines.append(f"  arrivals {summary['first_arrival']} -> {summary['last_arrival']} "
                     f"(span {summary['span_s']:.1f} s, {summary['mean_rate_per_s']:.2f} req/s)")
        for key in ("prompt_tokens", "output_tokens"):
            s = summary[key]
            lines.append(f"  {key:<14} mean {s['mean']:.1f}  p50 {s['p50']:.0f}  p90 {s['p90']:.0f}  "
                         f"p99 {s['p99']:.0f}  max {s['max']:.0f}")
    if result.dropped_rows:
        why = ", ".join(f"{k} {v}" for k, v in result.drop_reasons.items())
        lines.append(f"  dropped {result.dropped_rows:,} rows ({why})")
    if qpath is not None:
        lines.append(f"  quarantined {result.quarantined_rows:,} bad rows -> {qpath}")
    elif result.quarantined_rows:
        lines.append(f"  quarantined {result.quarantined_rows:,} bad rows (not written: no --out)")
    if out is not None:
        lines.append(f"  wrote {out}")
    return "\n".join(lines)


@click.command(name="ingest")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(sorted(FORMATS)))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write canonical Parquet here (temporary file, then rename).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--on-bad-rows", type=click.Choice(["error", "quarantine"]), default="error", show_default=True,
              help="error: stop at the first bad row; quarantine: set bad rows aside in <out>.quarantine.parquet.")
@click.option("--source", help="Value of the `source` column (default: the format name).")
@click.option("--mapping", "mapping_file", type=click.Path(dir_okay=False, path_type=Path),
              help="generic: TOML file with timestamp, prompt_tokens, output_tokens[, timestamp_unit | "
                   "timestamp_format, model, block_ids, epoch, file_format, separator].")
@click.option("--timestamp-col", help="generic: timestamp column.")
@click.option("--timestamp-unit", type=click.Choice(["s", "ms", "us"]), help="generic: numeric timestamp unit.")
@click.option("--timestamp-format", help="generic: strftime format, e.g. '%Y-%m-%d %H:%M:%S%.f' (no %z = UTC).")
@click.option("--prompt-col", help="generic: prompt (input) token column.")
@click.option("--output-col", help="generic: output (generated) token column.")
@click.option("--model-col", help="generic: model column (optional).")
@click.option("--block-ids-col", help="generic: column of prefix block ids per request, a list of integers "
              "such as [1, 2, 3] (optional; becomes hash_ids, read by the replay's prefix cache).")
@click.option("--epoch", is_flag=True, default=False, help="generic: numeric timestamps are Unix epoch times.")
@click.option("--file-format", type=click.Choice(["csv", "jsonl", "parquet"]),
              help="generic: file kind (default: from the suffix).")
@click.option("--separator", help="generic: CSV field separator (default ',').")
def cli(fmt, path, out, as_json, on_bad_rows, source, mapping_file, timestamp_col, timestamp_unit,
        timestamp_format, prompt_col, output_col, model_col, block_ids_col, epoch, file_format, separator):
    """Convert a raw trace into canonical requests (or rates, for servegen) and print a summary.

    FORMAT is one of: azure-2023, azure-2024, burstgpt, mooncake, servegen, generic. Bad input
    exits with status 2 naming the file, line and field, and writes nothing.
    """
    from torta.fileio import refuse_output_over_inputs
    from torta.ingest import ingest, quarantine_path, summarize, write_parquet_atomic

    if out is not None:
        refuse_output_over_inputs(out, [path, mapping_file])
        refuse_output_over_inputs(quarantine_path(out), [path, mapping_file], "--out (its quarantine file)")
    mapping = _mapping(mapping_file, timestamp_col, timestamp_unit, timestamp_format, prompt_col, output_col,
                       model_col, epoch, file_format, separator, block_ids_col)
    result = ingest(fmt, path, mapping=mapping, on_bad_rows=on_bad_rows, source=source)
    qpath = None
    if out is not None:
        write_parquet_atomic(result.frame, out)
        if result.quarantine is not None and result.quarantined_rows:
            try:
                qpath = write_parquet_atomic(result.quarantine, quarantine_path(out))
            except BaseException:
                out.unlink(missing_ok=True)  # all or nothing
                raise
    summary = summarize(result.frame)
    if as_json:
        doc = {"format": result.fmt, "path": str(result.path), "out": str(out) if out else "", **summary,
               "dropped_rows": result.dropped_rows, "drop_reasons": result.drop_reasons,
               "quarantined_rows": result.quarantined_rows, "quarantine_path": str(qpath) if qpath else ""}
        click.echo(strictjson.dumps(doc))
    else:
        click.echo(_human(summary, result, out, qpath))
