"""Public replay API: `replay(world, requests, policy, seed=...) -> ReplayResult`.

Origins. A request keeps a non-null `origin_region` (multi-day workloads set it; it must name a region
of the world). Requests without one are assigned an origin by a seeded draw (numpy PCG64 seeded with
`[seed, 1]`) over regions with probability `Region.origin_weight / sum(origin_weight)`.

Models. A null `model` means the world's first model (`World.models[0]`); a name not in `World.models`
is an input error naming the row.

Load scaling (`load_factor` f > 0):
- `compress`: arrival times divided by f (f = 2 doubles the rate over half the span; f < 1 stretches).
- `replicate`: the trace is laid over itself f times on its own time axis: floor(f) full copies plus,
  for the fraction, a seeded Bernoulli(f - floor(f)) subsample as one more copy. Copy 0 keeps its
  times; every other copy's times are jittered by Uniform(-g/2, g/2), g = the trace's mean
  inter-arrival gap (clipped at 0), so bursts keep their shape and scale by f. Copy c renumbers
  request ids as `c * (max_id + 1) + id`. Draws use `[seed, 2]`.

Requests are replayed in (arrival_s, request_id) order; the engine's own draws use `[seed, 3]`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from torta.errors import InputError
from torta.fleet.model import World
from torta.sim.accounting import CompletionSink, SlotRecorder, pct
from torta.sim.cluster import build_tables
from torta.sim.engine import DROP_REASONS, Engine, EngineConfig, RequestArrays

LOAD_MODES = ("compress", "replicate")


@dataclass
class ReplayResult:
    summary: dict[str, Any]
    completions_path: Path | None
    slots: pl.DataFrame
    cost: dict[str, float] = field(default_factory=dict)
    event_log: list = field(default_factory=list)  # filled in debug mode only


def scale_load(requests: pl.DataFrame, load_factor: float, load_mode: str, seed: int) -> pl.DataFrame:
    """Scale the offered load; see the module docstring."""
    f = float(load_factor)
    if not (math.isfinite(f) and f > 0):
        raise ValueError(f"load_factor must be a finite number > 0, got {load_factor}")
    if load_mode not in LOAD_MODES:
        raise ValueError(f"load_mode must be one of {LOAD_MODES}, got {load_mode!r}")
    if f == 1.0 or requests.height == 0:
        return requests
    if load_mode == "compress":
        return requests.with_columns(pl.col("arrival_s") / f)
    rng = np.random.default_rng([seed, 2])
    n = requests.height
    arr = requests["arrival_s"].to_numpy()
    gap = float((arr.max() - arr.min()) / (n - 1)) if n > 1 else 0.0
    max_id = int(requests["request_id"].max()) + 1
    full = int(math.floor(f))
    frac = f - full
    parts = []
    for c in range(full + (1 if frac > 1e-12 else 0)):
        part = requests
        if c == full:  # the fractional copy
            part = requests.filter(pl.Series(rng.random(n) < frac))
        if c > 0:
            jit = rng.uniform(-gap / 2, gap / 2, part.height)
            part = part.with_columns(
                pl.Series("arrival_s", np.maximum(part["arrival_s"].to_numpy() + jit, 0.0)),
                (pl.col("request_id") + c * max_id).alias("request_id"))
        parts.append(part)
    return pl.concat(parts).sort(["arrival_s", "request_id"])


def _origins(world: World, df: pl.DataFrame, seed: int) -> np.ndarray:
    names = {r.name: i for i, r in enumerate(world.regions)}
    n = df.height
    out = np.full(n, -1, dtype=np.int64)
    if "origin_region" in df.columns and df["origin_region"].null_count() < n:
        col = df["origin_region"].cast(pl.String)
        uniq = col.drop_nulls().unique().to_list()
        bad = [u for u in uniq if u not in names]
        if bad:
            row = int(col.is_in(bad).arg_true()[0])
            raise InputError("requests", f"origin_region {col[row]!r} is not a region of world "
                             f"{world.name!r}; expected one of {sorted(names)}", line=row, field="origin_region")
        mapped = col.replace_strict(names, default=-1, return_dtype=pl.Int64).fill_null(-1).to_numpy()
        out[:] = mapped
    missing = out < 0
    if missing.any():
        w = np.asarray([max(0.0, r.origin_weight) for r in world.regions], dtype=float)
        if not w.sum() > 0:
            raise ValueError(f"world {world.name!r}: all Region.origin_weight are 0; cannot assign origins")
        rng = np.random.default_rng([seed, 1])
        out[missing] = rng.choice(len(w), size=int(missing.sum()), p=w / w.sum())
    return out


def _models(world: World, df: pl.DataFrame) -> np.ndarray:
    n = df.height
    if "model" not in df.columns or df["model"].null_count() == n:
        return np.zeros(n, dtype=np.int64)
    names = {m: i for i, m in enumerate(world.models)}
    col = df["model"].cast(pl.String)
    bad = [u for u in col.drop_nulls().unique().to_list() if u not in names]
    if bad:
        row = int(col.is_in(bad).arg_true()[0])
        raise InputError("requests", f"model {col[row]!r} is not served by world {world.name!r}; "
                         f"expected one of {list(world.models)}", line=row, field="model")
    return col.replace_strict(names, default=0, return_dtype=pl.Int64).fill_null(0).to_numpy()


def to_arrays(world: World, df: pl.DataFrame, seed: int) -> RequestArrays:
    for c in ("request_id", "arrival_s", "prompt_tokens", "output_tokens"):
        if c not in df.columns:
            raise InputError("requests", f"missing column {c!r}; expected the canonical request schema",
                             field=c)
    for c in ("arrival_s", "prompt_tokens", "output_tokens", "request_id"):
        if df[c].null_count():
            row = int(df[c].is_null().arg_true()[0])
            raise InputError("requests", f"{c} is null", line=row, field=c)
    arr = df["arrival_s"].cast(pl.Float64).to_numpy()
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError("requests", f"arrival_s = {arr[row]}; expected a finite number >= 0", line=row,
                         field="arrival_s")
    toks = {}
    for c in ("prompt_tokens", "output_tokens"):
        x = df[c].cast(pl.Int64).to_numpy()
        if (x < 0).any():
            row = int(np.argmax(x < 0))
            raise InputError("requests", f"{c} = {x[row]}; expected an integer >= 0", line=row, field=c)
        toks[c] = x
    rid = df["request_id"].cast(pl.Int64).to_numpy()
    origin = _origins(world, df, seed).astype(np.int32)
    model = _models(world, df).astype(np.int32)
    order = np.lexsort((rid, arr))
    if not np.array_equal(order, np.arange(len(order))):
        arr, rid, origin, model = arr[order], rid[order], origin[order], model[order]
        toks = {k: v[order] for k, v in toks.items()}
    return RequestArrays(rid, arr, toks["prompt_tokens"], toks["output_tokens"], origin, model)


def _resolve_policy(policy):
    if isinstance(policy, str):
        from torta.policy import get_policy

        return get_policy(policy)()
    return policy


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def replay(world: World, requests: pl.DataFrame, policy, *, seed: int, out_dir: str | os.PathLike | None = None,
           progress: bool = False, load_factor: float = 1.0, load_mode: str = "compress",
           config: EngineConfig = EngineConfig()) -> ReplayResult:
    """Replay `requests` (canonical request frame) through `world` under `policy` (instance or
    registered name). With `out_dir`, writes `completions.parquet` (streamed in row groups),
    `slots.parquet` and `summary.json` there (each via a temporary file and rename)."""
    t0 = time.perf_counter()
    policy = _resolve_policy(policy)
    bar = None
    if progress:
        from dataclasses import replace as _replace

        from torta.sim.progress import ReplayProgress, chunk_for

        bar = ReplayProgress(requests.height, getattr(policy, "name", ""))
        bar.stage("fleet tables")
    tables = build_tables(world)
    if bar is not None:
        bar.stage("request arrays")
    requests = scale_load(requests, load_factor, load_mode, seed)
    arrays = to_arrays(world, requests, seed)
    del requests
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    sink = CompletionSink(world, tables, out / "completions.parquet" if out is not None else None, arrays)
    slots = SlotRecorder(world, tables)
    policy.reset(world, seed)
    engine_sink = sink
    if bar is not None:  # smaller hand-overs so the bar moves; outputs do not change (see progress.py)
        bar.total = len(arrays)
        config = _replace(config, chunk_requests=chunk_for(len(arrays), config.chunk_requests))
        engine_sink = bar.sink(sink)
        bar.start()
    engine = Engine(world, tables, policy, seed=[seed, 3], sink=engine_sink, slot_sink=slots, cfg=config)
    try:
        stats = engine.run(arrays)
        path = sink.close()
    except BaseException:
        sink.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    n = len(arrays)
    if sink.requests != n:  # conservation is structural; fail loudly if it ever breaks
        raise AssertionError(f"conservation broken: {n} requests in, {sink.requests} out")
    slot_df = slots.frame()
    transfer_usd = sink.transfer_bytes / 1e9 * float(world.transfer_usd_per_gb)
    cost = dict(energy_usd=slots.energy_usd, transfer_usd=transfer_usd, switching_usd=slots.switching_usd)
    cost["cost_usd"] = sum(cost.values())
    resp, ttft, tpot = sink.samples("response"), sink.samples("ttft"), sink.samples("tpot")
    wall = time.perf_counter() - t0
    if out is not None:
        slot_df.write_parquet(out / "slots.parquet.tmp")
        os.replace(out / "slots.parquet.tmp", out / "slots.parquet")
    dropped = sum(sink.dropped.values())

    def mean(x):
        return float(x.mean()) if len(x) else 0.0

    summary: dict[str, Any] = dict(
        scenario=world.name, policy=getattr(policy, "name", type(policy).__name__), seed=int(seed),
        load_factor=float(load_factor), load_mode=load_mode, servers=tables.n_servers,
        requests=n, completed=sink.completed, dropped=dropped,
        dropped_reasons={r: int(sink.dropped.get(r, 0)) for r in DROP_REASONS[1:]},
        response_mean_s=mean(resp), response_p50_s=pct(resp, 50), response_p95_s=pct(resp, 95),
        response_p99_s=pct(resp, 99), ttft_mean_s=mean(ttft), ttft_p50_s=pct(ttft, 50),
        ttft_p95_s=pct(ttft, 95), ttft_p99_s=pct(ttft, 99), tpot_mean_s=mean(tpot), tpot_p50_s=pct(tpot, 50),
        tpot_p99_s=pct(tpot, 99), load_std=slots.load_std, load_cv=slots.load_cv, load_jain=slots.load_jain,
        cost_usd=cost["cost_usd"], energy_usd=cost["energy_usd"], transfer_usd=cost["transfer_usd"],
        switching_usd=cost["switching_usd"], energy_kwh=slots.energy_kwh, co2_kg=slots.co2_kg,
        switches=slots.switches, cross_region_share=(sink.cross_region / sink.completed if sink.completed else 0.0),
        sim_end_s=stats.end_s, events=stats.events,
        planner_ms_per_slot=(1000.0 * stats.planner_s / stats.plan_calls
                             if stats.plan_calls and getattr(policy, "has_planner", True) else 0.0),
        wall_s=wall, requests_per_s=(n / wall if wall > 0 else 0.0))
    for k, v in summary.items():  # numbers never null / NaN
        if isinstance(v, float) and not math.isfinite(v):
            summary[k] = 0.0
    if out is not None:
        _atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
    return ReplayResult(summary=summary, completions_path=path, slots=slot_df, cost=cost,
                        event_log=stats.event_log)
