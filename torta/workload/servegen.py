"""ServeGen 14-day per-client rate traces (language models m-large, m-mid, m-small).

Source: alibaba/ServeGen `data/language/<class>/chunk-<i>-trace.csv` (Apache-2.0; ServeGen,
arXiv 2505.09999). Each raw CSV has no header and six columns: window start (s from 00:00 of day 1),
rate (requests/s), inter-arrival CV, fitted family, family arg 1, family arg 2; one row per 600-s window.

The repository ships only what the workloads use, packed into one Parquet file
(`traces/servegen/servegen_language_rates.parquet`, made by `pack_raw`): the window start, rate and
inter-arrival CV of every raw row with rate > 0, values unchanged (rows with rate 0 say only "zero";
the fitted family and its two arguments are left out). `load_class` turns it into dense
(clients x windows) arrays.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from torta.errors import InputError, UnknownNameError

CLASSES: tuple[str, ...] = ("m-large", "m-mid", "m-small")
WINDOW_S = 600
N_WINDOWS = 2016  # 14 days of 10-min windows
WINDOWS_PER_DAY = 144
SPAN_S = WINDOW_S * N_WINDOWS

# A window whose class-wide rate is below this share of the class's median window rate is a
# collection gap (all-zero windows, and the near-zero windows at their edges: ../shared/notes/
# forecasting.md found ~18 such windows in m-mid at 0.2-1.3 % of the median; the lowest genuine
# window of any class is 26 % of its median), so 5 % separates them with margin.
GAP_SHARE_OF_MEDIAN = 0.05

PACKED_NAME = "servegen_language_rates.parquet"
PACKED_SCHEMA: dict[str, pl.DataType] = {
    "model_class": pl.String(),
    "client": pl.Int32(),
    "window_start_s": pl.Int32(),
    "rate_per_s": pl.Float64(),
    "iat_cv": pl.Float64(),
}


def default_trace_dir() -> Path:
    """`traces/servegen` of the repository (override with TORTA_SERVEGEN_DIR)."""
    env = os.environ.get("TORTA_SERVEGEN_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "traces" / "servegen"


_CHUNK = re.compile(r"^chunk-(\d+)-trace\.csv$")


def read_raw_csv(path: str | Path, model_class: str, client: int) -> pl.DataFrame:
    """Read one raw ServeGen `chunk-<i>-trace.csv` (no header) into PACKED_SCHEMA columns (all six
    fields are validated; the fitted family and its arguments are not kept).

    Raises InputError naming the file, line and field on malformed rows.
    """
    path = Path(path)
    rows = []
    with open(path, encoding="ascii", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(",")
            if len(parts) != 6:
                raise InputError(path, f"expected 6 comma-separated fields, got {len(parts)}",
                                 line=lineno)
            try:
                t = int(float(parts[0]))
            except ValueError:
                raise InputError(path, f"expected integer seconds, got {parts[0]!r}", line=lineno,
                                 field="window_start_s") from None
            vals = []
            for name, raw in zip(("rate_per_s", "iat_cv", "pat_arg1", "pat_arg2"),
                                 (parts[1], parts[2], parts[4], parts[5])):
                try:
                    v = float(raw)
                except ValueError:
                    raise InputError(path, f"expected a number, got {raw!r}", line=lineno,
                                     field=name) from None
                if not np.isfinite(v) or v < 0:
                    raise InputError(path, f"expected a finite number >= 0, got {raw!r}",
                                     line=lineno, field=name)
                vals.append(v)
            if t % WINDOW_S or not 0 <= t < SPAN_S:
                raise InputError(path, f"expected a multiple of {WINDOW_S} in [0, {SPAN_S}), got {t}",
                                 line=lineno, field="window_start_s")
            rows.append((model_class, client, t, vals[0], vals[1]))
    return pl.DataFrame(rows, schema=PACKED_SCHEMA, orient="row")


def pack_raw(src_dir: str | Path, out_dir: str | Path | None = None,
             classes: tuple[str, ...] = CLASSES) -> Path:
    """Pack the raw `data/language/<class>/chunk-<i>-trace.csv` files under `src_dir` into the
    shipped Parquet (rows with rate > 0) plus `SHA256SUMS.source` of the raw files. Atomic write."""
    src_dir = Path(src_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_trace_dir()
    frames, sums = [], []
    for cls in classes:
        cdir = src_dir / "data" / "language" / cls
        files = sorted((p for p in cdir.glob("chunk-*-trace.csv")),
                       key=lambda p: int(_CHUNK.match(p.name).group(1)))
        if not files:
            raise InputError(cdir, "no chunk-<i>-trace.csv files found")
        for p in files:
            client = int(_CHUNK.match(p.name).group(1))
            frames.append(read_raw_csv(p, cls, client).filter(pl.col("rate_per_s") > 0))
            sums.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  "
                        f"data/language/{cls}/{p.name}")
    df = pl.concat(frames).sort("model_class", "client", "window_start_s")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / PACKED_NAME
    tmp = out.with_suffix(".parquet.tmp")
    df.write_parquet(tmp, compression="zstd", compression_level=19)
    os.replace(tmp, out)
    tmp_sums = out_dir / "SHA256SUMS.source.tmp"
    tmp_sums.write_text("\n".join(sums) + "\n")
    os.replace(tmp_sums, out_dir / "SHA256SUMS.source")
    return out


@dataclass(frozen=True)
class ClassRates:
    """Dense per-client rates of one ServeGen class: arrays are (clients, N_WINDOWS)."""

    model_class: str
    rate_per_s: np.ndarray  # raw published rates (0 where the client was silent)
    iat_cv: np.ndarray  # raw inter-arrival CV (0 where silent)
    gap: np.ndarray  # (N_WINDOWS,) bool: collection gap (masked)
    filled_rate_per_s: np.ndarray  # gaps imputed from the same window on the nearest clean day
    filled_iat_cv: np.ndarray

    @property
    def n_clients(self) -> int:
        return self.rate_per_s.shape[0]

    def aggregate_rate_per_s(self, filled: bool = True) -> np.ndarray:
        return (self.filled_rate_per_s if filled else self.rate_per_s).sum(axis=0)


def gap_windows(aggregate_rate_per_s: np.ndarray, share: float = GAP_SHARE_OF_MEDIAN) -> np.ndarray:
    """Windows whose aggregate rate is below `share` x the median window: collection gaps."""
    med = float(np.median(aggregate_rate_per_s))
    return aggregate_rate_per_s < share * med


def impute_gaps(values: np.ndarray, gap: np.ndarray, period: int = WINDOWS_PER_DAY) -> np.ndarray:
    """Fill gap columns of `values` (rows x windows) from the same window of the nearest day that is
    not a gap (previous days first, then following days). Raises ValueError if none is clean."""
    out = values.copy()
    n = values.shape[-1]
    for w in np.flatnonzero(gap):
        src = None
        for k in range(1, n // period + 1):
            for cand in (w - k * period, w + k * period):
                if 0 <= cand < n and not gap[cand]:
                    src = cand
                    break
            if src is not None:
                break
        if src is None:
            raise ValueError(f"window {w}: no clean window at the same time of day to impute from")
        out[..., w] = values[..., src]
    return out


def load_packed(trace_dir: str | Path | None = None) -> pl.DataFrame:
    path = Path(trace_dir) if trace_dir is not None else default_trace_dir()
    path = path / PACKED_NAME if path.is_dir() or path.suffix != ".parquet" else path
    if not path.exists():
        raise InputError(path, "ServeGen packed rates not found; build it with "
                               "torta.workload.servegen.pack_raw(<ServeGen checkout>)")
    df = pl.read_parquet(path)
    missing = [c for c in PACKED_SCHEMA if c not in df.columns]
    if missing:
        raise InputError(path, f"missing columns {missing}; expected {list(PACKED_SCHEMA)}")
    return df


@lru_cache(maxsize=8)
def load_class(model_class: str, trace_dir: str | None = None) -> ClassRates:
    """Dense arrays for one class (cached; arrays are read-only)."""
    if model_class not in CLASSES:
        raise UnknownNameError("ServeGen class", model_class, CLASSES)
    df = load_packed(trace_dir).filter(pl.col("model_class") == model_class)
    if df.is_empty():
        raise InputError(trace_dir or default_trace_dir(), f"no rows for class {model_class!r}",
                         field="model_class")
    clients = df["client"].to_numpy()
    n_clients = int(clients.max()) + 1
    w = df["window_start_s"].to_numpy() // WINDOW_S
    rate = np.zeros((n_clients, N_WINDOWS))
    cv = np.zeros((n_clients, N_WINDOWS))
    rate[clients, w] = df["rate_per_s"].to_numpy()
    cv[clients, w] = df["iat_cv"].to_numpy()
    gap = gap_windows(rate.sum(axis=0))
    frate = impute_gaps(rate, gap)
    fcv = impute_gaps(cv, gap)
    for a in (rate, cv, gap, frate, fcv):
        a.setflags(write=False)
    return ClassRates(model_class, rate, cv, gap, frate, fcv)
