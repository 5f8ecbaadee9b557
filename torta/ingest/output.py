"""Writing canonical Parquet atomically and summarising a canonical frame."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from torta.fileio import atomic_file


def write_parquet_atomic(frame: pl.DataFrame, out_path: str | Path) -> Path:
    """Write `frame` to a temporary file beside `out_path`, then rename it into place.

    A failure leaves no file under `out_path` (and removes the temporary file); the mode follows the umask.
    """
    out = Path(out_path)
    with atomic_file(out) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
    return out


def quarantine_path(out_path: str | Path) -> Path:
    """`x.parquet` -> `x.quarantine.parquet` (beside the output)."""
    out = Path(out_path)
    stem = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(f"{stem}.quarantine.parquet")


def _stats(col: pl.Series) -> dict[str, float]:
    if col.len() == 0:
        return {k: 0.0 for k in ("min", "mean", "p50", "p90", "p99", "max", "total")}
    return {
        "min": float(col.min()), "mean": round(float(col.mean()), 3),
        "p50": float(col.quantile(0.5, "nearest")), "p90": float(col.quantile(0.9, "nearest")),
        "p99": float(col.quantile(0.99, "nearest")), "max": float(col.max()), "total": float(col.sum()),
    }


def summarize(frame: pl.DataFrame) -> dict:
    """Rows, first/last arrival, span and token statistics of a canonical frame (JSON-ready, no nulls).

    `first_arrival` / `last_arrival` are ISO-8601 UTC strings where the trace has absolute times,
    else seconds from the trace start (floats). Rate frames (RATES_SCHEMA) get window statistics.
    """
    n = frame.height
    if "client_id" in frame.columns and "rate_per_s" in frame.columns:
        starts = frame["window_start_s"]
        first = float(starts.min()) if n else 0.0
        last = float((starts + frame["window_s"]).max()) if n else 0.0
        return {
            "kind": "rates", "rows": n, "clients": frame["client_id"].n_unique(),
            "model_classes": sorted(frame["model_class"].drop_nulls().unique().to_list()),
            "first_arrival": first, "last_arrival": last, "first_arrival_s": first, "last_arrival_s": last,
            "span_s": last - first,
            "mean_rate_per_s": round(float(frame["rate_per_s"].mean()), 6) if n else 0.0,
        }
    arrival = frame["arrival_s"]
    first_s = float(arrival.min()) if n else 0.0
    last_s = float(arrival.max()) if n else 0.0
    ts = frame["timestamp_utc"] if "timestamp_utc" in frame.columns else None
    first: str | float = first_s
    last: str | float = last_s
    if ts is not None and n and ts.null_count() == 0:
        first = ts.min().isoformat()
        last = ts.max().isoformat()
    models = frame["model"].drop_nulls().value_counts(sort=True) if n else None
    return {
        "kind": "requests", "rows": n,
        "first_arrival": first, "last_arrival": last, "first_arrival_s": first_s, "last_arrival_s": last_s,
        "span_s": last_s - first_s,
        "mean_rate_per_s": round(n / (last_s - first_s), 6) if last_s > first_s else 0.0,
        "prompt_tokens": _stats(frame["prompt_tokens"]), "output_tokens": _stats(frame["output_tokens"]),
        "models": {str(m): int(c) for m, c in models.iter_rows()} if models is not None else {},
    }
