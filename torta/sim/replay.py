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

Limits (`torta.limits`, docs/LIMITS.md), checked before the engine starts: load factor, arrival times
(after scaling), token counts, and the number of slots up to the simulated-time horizon (last arrival +
max(7 days, 10 x the trace's span)). While it runs, a slot boundary past the horizon stops the replay with
`LimitError` (the engine reports every slot boundary; the check costs one comparison per slot).

Outputs (`out_dir`): `completions.parquet`, `slots.parquet`, `summary.json` and `manifest.json` are
written into a unique temporary folder beside `out_dir` and swapped in as one unit (`torta.fileio.run_dir`);
a second replay into the same `out_dir` at the same time refuses (`OutputBusyError`). The manifest
records the seed, scenario and input hashes, policy parameters, git commit, warm-up, the information
model's refresh interval, finish time and each file's size, rows and SHA-256.

Warm-up (`warmup_s`, seconds on the replay clock, a multiple of `World.slot_s`): the requests arriving
before it are an unscored warm-up through the same policy in the same replay (`torta.sim.accounting`);
the summary's `requests`, `completed`, `dropped` and every metric are the scored window's, and
`warmup_requests` counts the others (conservation: requests + warmup_requests = replayed).
`state_refresh_s`: the control-plane information model (`torta.sim.infomodel`; 0 = instant global
state). Both are recorded in the summary and the manifest.

Non-finite summary values are an error (`NonFiniteError`, naming the metric), never a zero.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from torta import limits
from torta.errors import InputError, LimitError, NonFiniteError
from torta.fileio import file_mode, git_commit, run_dir, sha256_file
from torta.fleet.model import World
from torta.sim.accounting import CompletionSink, SlotRecorder, pct
from torta.sim.cluster import build_tables
from torta.sim.engine import DROP_REASONS, Engine, EngineConfig, RequestArrays

LOAD_MODES = ("compress", "replicate")
BLOCK_COLUMN = "hash_ids"  # the requests' prefix block ids (Mooncake's column; torta.sim.prefix)
OUTPUT_FILES = ("completions.parquet", "slots.parquet", "summary.json", "manifest.json")


@dataclass
class ReplayResult:
    summary: dict[str, Any]
    completions_path: Path | None
    slots: pl.DataFrame
    cost: dict[str, float] = field(default_factory=dict)
    event_log: list = field(default_factory=list)  # filled in debug mode only
    response_slots: pl.DataFrame | None = None  # per slot of the scored window: completed, response_mean_s


def scale_load(requests: pl.DataFrame, load_factor: float, load_mode: str, seed: int) -> pl.DataFrame:
    """Scale the offered load; see the module docstring."""
    f = float(load_factor)
    if load_mode not in LOAD_MODES:
        raise ValueError(f"load_mode must be one of {LOAD_MODES}, got {load_mode!r}")
    hi = limits.MAX_LOAD_FACTOR if load_mode == "compress" else limits.MAX_REPLICATE_FACTOR
    if not (math.isfinite(f) and limits.MIN_LOAD_FACTOR <= f <= hi):
        raise InputError("--load-factor", f"load_factor = {load_factor}; expected a finite number in "
                         f"[{limits.MIN_LOAD_FACTOR:g}, {hi:g}] for load mode {load_mode!r}", field="load_factor")
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
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > limits.MAX_ARRIVAL_S)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError("requests", f"arrival_s = {arr[row]} (after load scaling); expected a finite number in "
                         f"[0, {limits.MAX_ARRIVAL_S:g}] s (400 days)", line=row, field="arrival_s")
    toks = {}
    for c in ("prompt_tokens", "output_tokens"):
        x = df[c].cast(pl.Int64).to_numpy()
        bad = (x < 0) | (x > limits.MAX_TOKENS)
        if bad.any():
            row = int(np.argmax(bad))
            raise InputError("requests", f"{c} = {x[row]}; expected an integer in [0, {limits.MAX_TOKENS}]",
                             line=row, field=c)
        toks[c] = x
    rid = df["request_id"].cast(pl.Int64).to_numpy()
    origin = _origins(world, df, seed).astype(np.int32)
    model = _models(world, df).astype(np.int32)
    order = np.lexsort((rid, arr))
    blocks = _blocks(df)
    if not np.array_equal(order, np.arange(len(order))):
        arr, rid, origin, model = arr[order], rid[order], origin[order], model[order]
        toks = {k: v[order] for k, v in toks.items()}
        if blocks is not None:
            blocks = _permute_blocks(*blocks, order)
    return RequestArrays(rid, arr, toks["prompt_tokens"], toks["output_tokens"], origin, model,
                         *(blocks if blocks is not None else (None, None)))


def _blocks(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """The requests' prefix block ids (`hash_ids`, a list of integers per request; torta.sim.prefix) as
    (flat ids, offsets), or None when the frame has none."""
    if BLOCK_COLUMN not in df.columns or df[BLOCK_COLUMN].null_count() == df.height:
        return None
    col = df[BLOCK_COLUMN]
    if not isinstance(col.dtype, pl.List) or not col.dtype.inner.is_integer():
        raise InputError("requests", f"column {BLOCK_COLUMN!r} has type {col.dtype}; expected a list of integer "
                         "block ids per request", field=BLOCK_COLUMN)
    col = col.cast(pl.List(pl.Int64)).fill_null([])
    repeated = (col.list.n_unique() != col.list.len()).arg_true()
    if len(repeated):  # an id names its whole prefix: it cannot occur twice in one prompt
        row = int(repeated[0])
        raise InputError("requests", f"column {BLOCK_COLUMN!r} of request {row} repeats a block id "
                         f"({col[row].to_list()[:8]}...); expected distinct ids, each naming a 512-token "
                         f"prefix block ({len(repeated)} request(s) affected)", line=row, field=BLOCK_COLUMN)
    lens = col.list.len().cast(pl.Int64).to_numpy()
    if not lens.any():
        return None
    off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    flat = col.explode().drop_nulls().to_numpy().astype(np.int64, copy=False) if off[-1] else np.zeros(0, np.int64)
    if len(flat) != off[-1]:
        raise InputError("requests", f"column {BLOCK_COLUMN!r} holds null block ids; expected integers",
                         field=BLOCK_COLUMN)
    return flat, off


def _permute_blocks(flat: np.ndarray, off: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat ids, offsets) of the requests taken in `order`."""
    lens = np.diff(off)[order]
    new_off = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(lens, out=new_off[1:])
    idx = np.repeat(off[:-1][order] - new_off[:-1], lens) + np.arange(int(new_off[-1]), dtype=np.int64)
    return flat[idx], new_off


def _resolve_policy(policy):
    if isinstance(policy, str):
        from torta.policy import get_policy

        return get_policy(policy)()
    return policy


def _check_slot_s(world: World) -> None:
    slot_s = float(world.slot_s)
    if not (math.isfinite(slot_s) and slot_s > 0):
        raise ValueError(f"World.slot_s must be a finite number of seconds > 0, got {world.slot_s}")


def _horizon(world: World, arrays: RequestArrays) -> float:
    """The simulated-time horizon; LimitError up front when its slots exceed the slot budget."""
    _check_slot_s(world)
    if len(arrays) == 0:
        return limits.DRAIN_MIN_S
    first, last = float(arrays.arrival_s[0]), float(arrays.arrival_s[-1])
    h = limits.horizon_s(first, last)
    n_slots = h / float(world.slot_s)
    if n_slots > limits.MAX_SLOTS:
        raise LimitError(f"replay of world {world.name!r}: the simulated-time horizon {h:,.0f} s (last arrival "
                         f"{last:,.0f} s + drain time) spans {n_slots:,.0f} slots of {world.slot_s:g} s, more than "
                         f"the budget of {limits.MAX_SLOTS:,}; use a longer slot_s, a shorter trace or a "
                         "larger load factor")
    return h


def _check_warmup(warmup_s: float, world: World) -> float:
    """The warm-up in seconds, checked: finite, >= 0 and a whole number of slots."""
    w = float(warmup_s)
    if w == 0.0:
        return 0.0
    slot_s = float(world.slot_s)
    k = w / slot_s if slot_s > 0 and math.isfinite(slot_s) else math.nan
    if not (math.isfinite(w) and w >= 0.0 and math.isfinite(k) and abs(k - round(k)) <= 1e-9 * max(1.0, k)):
        raise InputError("--warmup-hours", f"warmup_s = {warmup_s}; expected a finite number of seconds >= 0 "
                         f"that is a whole number of slots of {slot_s:g} s", field="warmup_s")
    return w


class _HorizonGuard:
    """The engine's slot sink, wrapped: a slot boundary past the horizon stops the replay."""

    def __init__(self, inner: SlotRecorder, horizon_s: float, world: World) -> None:
        self.inner, self.horizon_s, self.world = inner, horizon_s, world

    def __call__(self, slot, t0, dur, arrays) -> None:
        if t0 > self.horizon_s:
            raise LimitError(f"replay of world {self.world.name!r} stopped at simulated time {t0:,.0f} s: past the "
                             f"horizon {self.horizon_s:,.0f} s (last arrival + max(7 days, 10 x span)); the fleet "
                             "cannot drain its queues; lower the load factor or add servers")
        self.inner(slot, t0, dur, arrays)


def world_hash(world: World) -> str:
    """SHA-256 over everything of a World that a replay reads (names, regions, servers, matrices, prices)."""
    h = hashlib.sha256()
    h.update(repr((world.name, world.regions, world.servers, world.models, float(world.slot_s),
                   int(world.start_hour_of_year), float(world.transfer_usd_per_gb),
                   sorted(world.power.items()), sorted(world.gpu_usd_per_hour.items()))).encode())
    for a in (world.latency_ms, world.price_usd_per_mwh, world.carbon_g_per_kwh):
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()


def requests_hash(arrays: RequestArrays) -> str:
    """SHA-256 of the replayed requests (after load scaling and origin assignment)."""
    h = hashlib.sha256()
    for a in (arrays.request_id, arrays.arrival_s, arrays.prompt_tokens, arrays.output_tokens, arrays.origin,
              arrays.model):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _jsonable(v):
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    return repr(v)


def _policy_params(policy) -> dict:
    params = policy.params() if hasattr(policy, "params") else {}
    return _jsonable(dict(params)) if isinstance(params, dict) else {"params": _jsonable(params)}


# the input a non-finite metric most likely comes from (checked first, so the message names it)
_ORIGINS = {"transfer_usd": "World.transfer_usd_per_gb", "energy_usd": "Region.pue / World.price_usd_per_mwh",
            "switching_usd": "World.gpu_usd_per_hour", "co2_kg": "World.carbon_g_per_kwh",
            "response_mean_s": "World.latency_ms", "ttft_mean_s": "World.latency_ms"}


def check_finite(summary: dict[str, Any], where: str) -> None:
    """NonFiniteError naming the first non-finite number of the summary (nested dicts included)."""
    keys = [k for k in _ORIGINS if k in summary] + [k for k in summary if k not in _ORIGINS]
    for k in keys:
        v = summary[k]
        if isinstance(v, dict):
            check_finite(v, f"{where}.{k}")
        elif isinstance(v, float) and not math.isfinite(v):
            origin = f" (from {_ORIGINS[k]}?)" if k in _ORIGINS else ""
            raise NonFiniteError(f"{where} metric {k!r}{origin}", v, "a finite number (an input of the scenario "
                                 "or trace is NaN or infinite, or a metric overflowed)")


def _write_outputs(tmp: Path, slot_df: pl.DataFrame, summary: dict, manifest: dict) -> None:
    slot_df.write_parquet(tmp / "slots.parquet")
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, allow_nan=False))
    files = {}
    for name in OUTPUT_FILES[:3]:
        f = tmp / name
        rows = (pl.scan_parquet(f).select(pl.len()).collect().item() if name.endswith(".parquet") else None)
        files[name] = {"bytes": f.stat().st_size, "sha256": sha256_file(f), **({"rows": rows} if rows is not None
                                                                                else {})}
    manifest = dict(manifest, files=files, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False))
    mode = file_mode()
    for name in OUTPUT_FILES:
        os.chmod(tmp / name, mode)


class ReplayRun:
    """One replay that can be advanced in steps: `advance(until_s)` replays every event before
    `until_s` (`torta.sim.engine.Engine.run`) and returns whether the replay finished; `result()`
    closes the outputs and gives the `ReplayResult` once it has. `replay(...)` is `ReplayRun(...)`
    advanced to the end; same arguments (see there). `engine` is the running engine (its
    `pending_slot_state()` is what the policy will see at the next slot boundary).

    With `out_dir`, the outputs are written into the run's temporary folder (`torta.fileio.run_dir`),
    which `result()` swaps into place as one unit; `abort()` (or any error) removes it."""

    def __init__(self, world: World, requests: pl.DataFrame, policy, *, seed: int,
                 out_dir: str | os.PathLike | None = None, progress: bool = False, load_factor: float = 1.0,
                 load_mode: str = "compress", config: EngineConfig = EngineConfig(),
                 plan_sink: Callable | None = None, provenance: dict | None = None,
                 on_start: Callable[[int], None] | None = None, warmup_s: float = 0.0,
                 state_refresh_s: float = 0.0) -> None:
        self._t0 = time.perf_counter()
        _check_slot_s(world)  # before anything divides by it
        self.warmup_s = _check_warmup(warmup_s, world)
        refresh = float(state_refresh_s)
        if not (math.isfinite(refresh) and refresh >= 0.0):
            raise InputError("--state-refresh-s", f"state_refresh_s = {state_refresh_s}; expected a finite "
                             "number of seconds >= 0", field="state_refresh_s")
        if refresh > 0.0:
            config = dataclasses.replace(config, state_refresh_s=refresh)
        self.state_refresh_s = float(config.state_refresh_s)
        self.world, self.seed, self.load_factor, self.load_mode = world, seed, load_factor, load_mode
        self.out_dir, self.provenance = out_dir, provenance
        self.policy = policy = _resolve_policy(policy)
        self._bar = bar = None
        if progress:
            from torta.sim.progress import ReplayProgress

            self._bar = bar = ReplayProgress(requests.height, getattr(policy, "name", ""))
            bar.stage("fleet tables")
        self.tables = tables = build_tables(world)
        if bar is not None:
            bar.stage("request arrays")
        requests = scale_load(requests, load_factor, load_mode, seed)
        self.arrays = arrays = to_arrays(world, requests, seed)
        del requests
        self.horizon_s = _horizon(world, arrays)
        policy.reset(world, seed)  # loads checkpoints: bad ones fail here, before any output exists
        self._unit = run_dir(out_dir, OUTPUT_FILES) if out_dir is not None else nullcontext(None)
        self.out = out = self._unit.__enter__()
        self._closed = False
        try:
            if on_start is not None:
                on_start(len(arrays))
            self.sink = CompletionSink(world, tables, out / "completions.parquet" if out is not None else None,
                                       arrays, self.warmup_s)
            self.slots = SlotRecorder(world, tables, self.warmup_s)
            engine_sink = self.sink
            if bar is not None:  # smaller hand-overs so the bar moves; outputs do not change (see progress.py)
                from torta.sim.progress import chunk_for

                bar.total = len(arrays)
                config = replace(config, chunk_requests=chunk_for(len(arrays), config.chunk_requests))
                engine_sink = bar.sink(self.sink)
                bar.start()
            self.engine = Engine(world, tables, policy, seed=[seed, 3], sink=engine_sink,
                                 slot_sink=_HorizonGuard(self.slots, self.horizon_s, world), cfg=config,
                                 plan_sink=plan_sink)
            self.engine.start(arrays)
        except BaseException as exc:
            self._fail(exc)
            raise

    def advance(self, until_s: float = math.inf) -> bool:
        """Replay every event before `until_s`; True once the replay finished (completions then closed)."""
        if self._closed or self.engine.finished:
            return True
        try:
            self.engine.run(until_s=until_s)
            if self.engine.finished:
                self.sink.close()
                if self._bar is not None:
                    self._bar.close()
        except BaseException as exc:
            self._fail(exc)
            raise
        return self.engine.finished

    def _fail(self, exc: BaseException) -> None:
        if self._closed:
            return
        self._closed = True
        sink = getattr(self, "sink", None)
        if sink is not None:
            sink.abort()
        if self._bar is not None:
            self._bar.close()
        self._unit.__exit__(type(exc), exc, exc.__traceback__)  # removes the temporary folder

    def abort(self) -> None:
        """Stop without results: the partial outputs are removed, whatever was in place stays."""
        self._fail(RuntimeError("replay aborted"))

    def result(self) -> ReplayResult:
        """The finished replay's summary, slot table and costs (its outputs swapped into place)."""
        if self._closed:
            raise RuntimeError("ReplayRun.result after the replay was aborted or its result taken")
        if not self.engine.finished:
            raise RuntimeError("ReplayRun.result before the replay finished (advance it to the end)")
        try:
            res = _result(self, self.engine.stats)
        except BaseException as exc:
            self._fail(exc)
            raise
        self._closed = True
        self._unit.__exit__(None, None, None)  # publishes the unit
        return res


def _result(run: ReplayRun, stats) -> ReplayResult:
    world, tables, policy, sink, slots, out = run.world, run.tables, run.policy, run.sink, run.slots, run.out
    seed, arrays = run.seed, run.arrays
    n = len(arrays)
    if sink.requests + sink.warmup_requests != n:  # conservation is structural; fail loudly if it ever breaks
        raise AssertionError(f"conservation broken: {n} requests in, {sink.requests} scored + "
                             f"{sink.warmup_requests} warm-up out")
    slot_df = slots.frame()
    transfer_usd = sink.transfer_bytes / 1e9 * float(world.transfer_usd_per_gb)
    cost = dict(energy_usd=slots.energy_usd, transfer_usd=transfer_usd, switching_usd=slots.switching_usd)
    cost["cost_usd"] = sum(cost.values())
    resp, ttft, tpot = sink.samples("response"), sink.samples("ttft"), sink.samples("tpot")
    wall = time.perf_counter() - run._t0
    dropped = sum(sink.dropped.values())

    def mean(x):
        return float(x.mean()) if len(x) else 0.0

    summary: dict[str, Any] = dict(
        scenario=world.name, policy=getattr(policy, "name", type(policy).__name__), seed=int(seed),
        load_factor=float(run.load_factor), load_mode=run.load_mode, servers=tables.n_servers,
        requests=sink.requests, completed=sink.completed, dropped=dropped,
        warmup_s=run.warmup_s, warmup_requests=sink.warmup_requests, state_refresh_s=run.state_refresh_s,
        dropped_reasons={r: int(sink.dropped.get(r, 0)) for r in DROP_REASONS[1:]},
        response_mean_s=mean(resp), response_p50_s=pct(resp, 50), response_p95_s=pct(resp, 95),
        response_p99_s=pct(resp, 99), ttft_mean_s=mean(ttft), ttft_p50_s=pct(ttft, 50),
        ttft_p95_s=pct(ttft, 95), ttft_p99_s=pct(ttft, 99), tpot_mean_s=mean(tpot), tpot_p50_s=pct(tpot, 50),
        tpot_p99_s=pct(tpot, 99), load_std=slots.load_std, load_cv=slots.load_cv, load_jain=slots.load_jain,
        cost_usd=cost["cost_usd"], energy_usd=cost["energy_usd"], transfer_usd=cost["transfer_usd"],
        switching_usd=cost["switching_usd"], energy_kwh=slots.energy_kwh, co2_kg=slots.co2_kg,
        switches=slots.switches, prefix_cache=run.engine.prefix is not None,
        cache_hit_rate=slots.cache_hit_rate, prefill_tokens_saved=slots.prefill_tokens_saved,
        cache_evictions=slots.cache_evictions, cross_region_share=(sink.cross_region / sink.completed if sink.completed else 0.0),
        sim_end_s=stats.end_s, events=stats.events,
        planner_ms_per_slot=(1000.0 * stats.planner_s / stats.plan_calls
                             if stats.plan_calls and getattr(policy, "has_planner", True) else 0.0),
        wall_s=wall, requests_per_s=(n / wall if wall > 0 else 0.0))
    check_finite(summary, f"replay of {summary['policy']} on {world.name!r}")
    path = None
    if out is not None:
        manifest = dict(seed=int(seed), scenario=world.name, scenario_sha256=world_hash(world),
                        requests=n, requests_sha256=requests_hash(arrays), policy=summary["policy"],
                        policy_params=_policy_params(policy), load_factor=float(run.load_factor),
                        load_mode=run.load_mode, git_commit=git_commit(), warmup_s=run.warmup_s,
                        state_refresh_s=run.state_refresh_s,
                        horizon_s=float(run.horizon_s), inputs=_jsonable(run.provenance or {}))
        _write_outputs(out, slot_df, summary, manifest)
        path = Path(run.out_dir).absolute() / "completions.parquet"
    return ReplayResult(summary=summary, completions_path=path, slots=slot_df, cost=cost,
                        event_log=stats.event_log, response_slots=run.sink.response_by_slot())


def replay(world: World, requests: pl.DataFrame, policy, *, seed: int, out_dir: str | os.PathLike | None = None,
           progress: bool = False, load_factor: float = 1.0, load_mode: str = "compress",
           config: EngineConfig = EngineConfig(), plan_sink: Callable | None = None, provenance: dict | None = None,
           on_start: Callable[[int], None] | None = None, warmup_s: float = 0.0,
           state_refresh_s: float = 0.0) -> ReplayResult:
    """Replay `requests` (canonical request frame) through `world` under `policy` (instance or
    registered name). With `out_dir`, writes `completions.parquet` (streamed in row groups),
    `slots.parquet`, `summary.json` and `manifest.json` there as one unit (see the module docstring);
    `provenance` (e.g. the scenario and trace files' hashes) is added to the manifest. `on_start(n)` is
    called once the inputs passed their checks, before the engine starts (the CLI's "replaying" line).
    `plan_sink(state, plan)`, if given, receives every slot's `SlotState` and the plan the engine applied
    (see `torta.sim.engine.Engine`; `torta.runs.planlog.PlanRecorder.sink` records them). `ReplayRun` is
    the same replay in steps. `warmup_s` and `state_refresh_s`: see the module docstring."""
    run = ReplayRun(world, requests, policy, seed=seed, out_dir=out_dir, progress=progress,
                    load_factor=load_factor, load_mode=load_mode, config=config, plan_sink=plan_sink,
                    provenance=provenance, on_start=on_start, warmup_s=warmup_s,
                    state_refresh_s=state_refresh_s)
    run.advance()
    return run.result()
