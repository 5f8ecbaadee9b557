"""The library behind `torta bench ingest` (torta/commands/bench.py): ingest + Parquet write of an N-row file in the Azure 2024 format.

The file is generated first (vectorised numpy/polars, seeded; not timed), then a child process
imports torta, times `ingest("azure-2024", ...)` + `write_parquet_atomic`, and reports; the peak
resident memory is the child's `ru_maxrss` (so generation memory is not counted). Target (issue #2):
27 M rows in at most 60 s and 4 GiB peak on 2 cores.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

TARGET_WALL_S = 60.0
TARGET_PEAK_MIB = 4096.0
WEEK_S = 7 * 24 * 3600


def generate_azure_2024(path: Path, rows: int, *, seed: int = 0) -> int:
    """Write `rows` requests over one week starting 2024-05-12 00:00 UTC, CRLF, timestamps with
    0-6 fractional digits and a +00:00 offset. Returns the file size in bytes."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(WEEK_S * 1e6 / rows, size=rows)
    micros = np.cumsum(gaps).astype(np.int64)
    del gaps
    start_us = 1715472000 * 1_000_000  # 2024-05-12T00:00:00Z
    prompt = np.clip(rng.lognormal(6.5, 1.0, size=rows), 1, 32000).astype(np.int64)
    output = np.clip(rng.lognormal(4.8, 1.0, size=rows), 1, 4000).astype(np.int64)
    frame = pl.DataFrame({
        "TIMESTAMP": pl.Series(micros + start_us).cast(pl.Datetime("us"))
        .dt.to_string("%Y-%m-%d %H:%M:%S%.f+00:00"),
        "ContextTokens": prompt,
        "GeneratedTokens": output,
    })
    frame.write_csv(path, line_terminator="\r\n")
    return path.stat().st_size


def _child(src: str, out: str) -> None:
    """Run inside the measured child: time ingest + write, print one JSON line."""
    from torta.ingest import ingest, write_parquet_atomic

    t0 = time.perf_counter()
    result = ingest("azure-2024", src)
    t1 = time.perf_counter()
    write_parquet_atomic(result.frame, out)
    t2 = time.perf_counter()
    print(json.dumps({"rows": result.frame.height, "ingest_s": t1 - t0, "write_s": t2 - t1, "wall_s": t2 - t0,
                      "dropped_rows": result.dropped_rows}))


def run_bench(rows: int, workdir: Path, *, seed: int = 0) -> dict:
    src = workdir / f"azure2024_{rows}.csv"
    out = workdir / f"azure2024_{rows}.parquet"
    t0 = time.perf_counter()
    size = generate_azure_2024(src, rows, seed=seed)
    gen_s = time.perf_counter() - t0
    code = "import sys; from torta.ingest.bench import _child; _child(sys.argv[1], sys.argv[2])"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(out)], capture_output=True, text=True)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_mib = max(peak_kib, before) / 1024.0  # ru_maxrss is KiB on Linux
    return {
        "case": "azure-2024-csv", "rows": child["rows"], "input_bytes": size,
        "output_bytes": out.stat().st_size, "generate_s": round(gen_s, 3),
        "wall_s": round(child["wall_s"], 3), "ingest_s": round(child["ingest_s"], 3),
        "write_s": round(child["write_s"], 3), "rows_per_s": round(child["rows"] / child["wall_s"], 1),
        "peak_rss_mib": round(peak_mib, 1), "cpu_count": os.cpu_count() or 0,
        "target_wall_s": TARGET_WALL_S, "target_peak_rss_mib": TARGET_PEAK_MIB,
        "meets_target": bool(child["wall_s"] <= TARGET_WALL_S and peak_mib <= TARGET_PEAK_MIB),
    }
