"""Accounting: per-request completions (streamed to Parquet), per-slot/per-server metrics, run totals.

Per request (`COMPLETION_COLUMNS`): times on the simulator clock (seconds from replay start). The user
sees the request at `arrival_s` at its origin; `ttft_s = first_token_s - arrival_s + return latency`,
`response_s = finish_s - arrival_s + return latency` (the forward latency is inside the server times,
the return latency `latency_ms[region, origin]` is added), `tpot_s = (finish_s - first_token_s) /
(output_tokens - 1)` (0.0 when output_tokens <= 1). Dropped requests carry `dropped_reason` and null
times.

Per slot and server: seconds in each state (idle / prefill / decode / loading); `utilisation` = the
expected work of the tokens the server processed in the slot (prompt tokens x c_prefill_s + decoded
tokens x c_decode_s, the same per-token costs as the backlog estimate in `torta.sim.cluster`, so a
fleet offered 60 % of `capacity_rps` shows utilisation near 0.6; it can exceed 1 when batches run
larger than the reference batch) / slot seconds; `busy_frac` = (prefill + decode + loading) seconds /
slot seconds (near 1 for any server with a running batch under continuous batching); `mean_batch` = time-averaged admitted requests,
`kv_util` = time-averaged KV reservation / capacity, energy by state = W per GPU x tp x PUE x seconds
(loading at idle power), priced at the region's electricity price and carbon intensity for the hour
holding the slot's midpoint, `switches` = model loads started, `switching_usd` = GPU-hours spent
loading x `gpu_usd_per_hour`. With the prefix cache on (torta.sim.prefix): `cache_prompt_tokens`
(prompt tokens admitted), `prefill_tokens_saved` (of them, cached), `cache_evictions` (blocks) and
`cache_hit_rate` (saved / admitted); the run's `cache_hit_rate` is the same ratio over the scored slots.

Warm-up (`warmup_s` > 0, a multiple of the slot length): requests arriving before it are replayed
like any other (queues, loaded models and backlog carry over into the scored window) but appear in no
metric: not in the completions file, the latency samples, transfer cost, nor the counts
(`CompletionSink.warmup_requests` counts them for conservation); slots starting before it are not
recorded (no slot row, energy, cost or switch).

Per run: `cost_usd = energy_usd + transfer_usd + switching_usd`; `transfer_usd` = (prompt + output
tokens x `BYTES_PER_TOKEN`) of requests served outside their origin region, in GB, x
`World.transfer_usd_per_gb`; `load_std` / `load_cv` / `load_jain` = standard deviation / coefficient of variation / Jain's index
of server utilisation across servers within each slot, averaged over slots weighted by slot duration.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from torta.fleet.model import World
from torta.sim.cluster import BYTES_PER_TOKEN, FleetTables
from torta.sim.engine import DROP_REASONS

COMPLETION_COLUMNS = ("request_id", "origin_region", "serving_region", "server_id", "model",
                      "prompt_tokens", "output_tokens", "arrival_s", "admitted_s", "first_token_s",
                      "finish_s", "ttft_s", "tpot_s", "response_s", "dropped_reason")


# Snappy (Parquet's default codec): writes the completions about twice as fast as zstd, for larger files
COMPRESSION = "snappy"
# Dictionary-encode only the columns with few distinct values: for the float columns the writer would
# build a dictionary per row group and give it up (measured on 1 M completions: 0.23 s instead of
# 0.52 s to write, and 54 MB instead of 65 MB)
DICTIONARY_COLUMNS = ["origin_region", "serving_region", "model", "dropped_reason", "server_id",
                      "prompt_tokens", "output_tokens"]


def _names(idx: np.ndarray, names: list[str]) -> pa.Array:
    """Index array -> string array (negative index -> null)."""
    mask = idx < 0
    ind = pa.array(np.where(mask, 0, idx).astype(np.int32), mask=mask if mask.any() else None)
    return pc.take(pa.array(names, pa.string()), ind)


ROW_GROUP_ROWS = 65536  # completions per Parquet row group, whatever the size of the engine's batches


class CompletionSink:
    """Receives finished/dropped request records from the engine in batches; writes them as Parquet
    row groups of ROW_GROUP_ROWS rows to `path + ".tmp"` (renamed on `close`), so the file's bytes do
    not depend on how the engine batches them (a progress bar asks for smaller batches), and keeps the
    run totals and the latency samples needed for percentiles (three float64 per completed request)."""

    def __init__(self, world: World, tables: FleetTables, path: str | os.PathLike | None, requests,
                 warmup_s: float = 0.0) -> None:
        self.world = world
        self.warmup_s = float(warmup_s)  # requests arriving before it are warm-up: counted, never scored
        self.warmup_requests = 0
        self.req = requests  # torta.sim.engine.RequestArrays
        self.lat_s = np.asarray(tables.latency_s, dtype=float).reshape(tables.n_regions, tables.n_regions)
        self.path = Path(path) if path is not None else None
        self.tmp = self.path.with_name(self.path.name + ".tmp") if self.path is not None else None
        self.writer: pq.ParquetWriter | None = None
        self.region_names = [r.name for r in world.regions]
        self.model_names = list(world.models)
        self.requests = 0
        self.completed = 0
        self.dropped: dict[str, int] = {}
        self.transfer_bytes = 0.0
        self.cross_region = 0
        self.ttft: list[np.ndarray] = []
        self.tpot: list[np.ndarray] = []
        self.resp: list[np.ndarray] = []
        self.slot_s = float(world.slot_s)
        self.slot_n = np.zeros(0, dtype=np.int64)  # scored requests completed per arrival slot of the window
        self.slot_resp_sum = np.zeros(0)  # and their summed response times, s
        self.last_finish_s = 0.0
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def __call__(self, batch: dict) -> None:
        """`batch`: flat arrays from the engine (index into the request arrays, region, server,
        admitted_s, first_token_s, finish_s, drop code)."""
        req = self.req
        if self.warmup_s > 0.0:
            keep = req.arrival_s[batch["index"]] >= self.warmup_s
            if not keep.all():
                self.warmup_requests += int((~keep).sum())
                batch = {k: v[keep] for k, v in batch.items()}
                if not len(batch["index"]):
                    return
        idx = batch["index"]
        rid, org, mod = req.request_id[idx], req.origin[idx], req.model[idx]
        pr, out, arr = req.prompt_tokens[idx], req.output_tokens[idx], req.arrival_s[idx]
        reg, srv = batch["region"], batch["server"]
        adm, ft, fn = batch["admitted_s"], batch["first_token_s"], batch["finish_s"]
        drop = batch["drop"]
        n = len(idx)
        ok = drop == 0
        nd = int((~ok).sum())
        back = self.lat_s[np.where(reg < 0, 0, reg), org]
        ttft = ft - arr + back
        resp = fn - arr + back
        tpot = np.where(out > 1, (fn - ft) / np.maximum(out - 1, 1), 0.0)
        self.requests += n
        self.completed += n - nd
        if nd:
            for code in np.unique(drop[~ok]):
                name = DROP_REASONS[int(code)]
                self.dropped[name] = self.dropped.get(name, 0) + int((drop == code).sum())
        cross = ok & (reg != org)
        self.cross_region += int(cross.sum())
        self.transfer_bytes += float(((pr + out)[cross]).sum()) * BYTES_PER_TOKEN
        if n - nd:
            sel = ok if nd else slice(None)
            self.ttft.append(ttft[sel])
            self.tpot.append(tpot[sel])
            self.resp.append(resp[sel])
            self._add_slots(arr[sel], resp[sel])
            self.last_finish_s = max(self.last_finish_s, float(np.nanmax(fn)))
        if self.path is None:
            return
        mask = ~ok if nd else None
        table = pa.table({
            "request_id": pa.array(rid),
            "origin_region": _names(org, self.region_names),
            "serving_region": _names(np.where(ok, reg, -1), self.region_names),
            "server_id": pa.array(srv.astype(np.int32), mask=mask),
            "model": _names(mod, self.model_names),
            "prompt_tokens": pa.array(pr),
            "output_tokens": pa.array(out),
            "arrival_s": pa.array(arr),
            "admitted_s": pa.array(adm, mask=mask),
            "first_token_s": pa.array(ft, mask=mask),
            "finish_s": pa.array(fn, mask=mask),
            "ttft_s": pa.array(ttft, mask=mask),
            "tpot_s": pa.array(tpot, mask=mask),
            "response_s": pa.array(resp, mask=mask),
            "dropped_reason": _names(np.where(ok, -1, drop), list(DROP_REASONS)),
        })
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= ROW_GROUP_ROWS:
            self._write_rows(ROW_GROUP_ROWS)

    def _add_slots(self, arrival_s: np.ndarray, response_s: np.ndarray) -> None:
        k = ((arrival_s - self.warmup_s) // self.slot_s).astype(np.int64)
        n = int(k.max()) + 1 if len(k) else 0
        if n > len(self.slot_n):
            self.slot_n = np.pad(self.slot_n, (0, n - len(self.slot_n)))
            self.slot_resp_sum = np.pad(self.slot_resp_sum, (0, n - len(self.slot_resp_sum)))
        self.slot_n += np.bincount(k, minlength=len(self.slot_n))
        self.slot_resp_sum += np.bincount(k, weights=response_s, minlength=len(self.slot_n))

    def response_by_slot(self):
        """Per slot of the scored window (by arrival; slot 0 starts at the window's start): completed
        requests and their mean response time, s (a polars frame)."""
        import polars as pl

        n = self.slot_n
        mean = np.divide(self.slot_resp_sum, n, out=np.full(len(n), np.nan), where=n > 0)
        return pl.DataFrame({"slot": np.arange(len(n), dtype=np.int64), "t_start_s": np.arange(len(n)) * self.slot_s,
                             "completed": n, "response_mean_s": mean})

    def _write_rows(self, k: int) -> None:
        """Write the first `k` pending rows as one row group."""
        table = pa.concat_tables(self.pending).combine_chunks()
        head, rest = table.slice(0, k), table.slice(k)
        if self.writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, head.schema, compression=COMPRESSION,
                                             use_dictionary=DICTIONARY_COLUMNS)
        self.writer.write_table(head, row_group_size=k)
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows = rest.num_rows

    def close(self) -> Path | None:
        if self.path is None:
            return None
        if self.pending_rows:
            self._write_rows(self.pending_rows)
        if self.writer is None:  # no requests: still write an empty, well-typed file
            schema = pa.schema([
                ("request_id", pa.int64()), ("origin_region", pa.string()),
                ("serving_region", pa.string()), ("server_id", pa.int32()), ("model", pa.string()), ("prompt_tokens", pa.int64()),
                ("output_tokens", pa.int64())] + [(c, pa.float64()) for c in COMPLETION_COLUMNS[7:14]]
                + [("dropped_reason", pa.string())])
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, schema, compression=COMPRESSION)
        self.writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.tmp is not None and self.tmp.exists():
            self.tmp.unlink()

    def samples(self, which: str) -> np.ndarray:
        parts = {"ttft": self.ttft, "tpot": self.tpot, "response": self.resp}[which]
        return np.concatenate(parts) if parts else np.zeros(0)


class SlotRecorder:
    """Receives per-slot, per-server state seconds from the engine; prices energy and carbon."""

    def __init__(self, world: World, tables: FleetTables, warmup_s: float = 0.0) -> None:
        self.world, self.tables = world, tables
        self.warmup_s = float(warmup_s)  # slots starting before it are the warm-up's: not recorded
        self.region = np.asarray(tables.region, dtype=np.int64)
        self.idle_w = np.asarray(tables.idle_w)
        self.prefill_w = np.asarray(tables.prefill_w)
        self.decode_w = np.asarray(tables.decode_w)
        self.usd_h = np.asarray(tables.usd_per_hour)
        self.frames: list[dict] = []
        self.energy_kwh = self.energy_usd = self.co2_kg = self.switching_usd = 0.0
        self.switches = 0
        self.cache_prompt_tokens = self.prefill_tokens_saved = self.cache_evictions = 0  # prefix cache on only
        self.std_w = self.cv_w = self.jain_w = self.dur_total = 0.0

    def __call__(self, slot: int, t0: float, dur: float, a: dict) -> None:
        if t0 < self.warmup_s:
            return
        w = self.world
        hours = w.price_usd_per_mwh.shape[1]
        hour = (w.start_hour_of_year + int((t0 + 0.5 * dur) // 3600)) % hours
        price = np.asarray(w.price_usd_per_mwh[:, hour], dtype=float)[self.region]
        carbon = np.asarray(w.carbon_g_per_kwh[:, hour], dtype=float)[self.region]
        idle_kwh = self.idle_w * (a["idle_s"] + a["loading_s"]) / 3.6e6
        pre_kwh = self.prefill_w * a["prefill_s"] / 3.6e6
        dec_kwh = self.decode_w * a["decode_s"] / 3.6e6
        kwh = idle_kwh + pre_kwh + dec_kwh
        usd = kwh / 1000.0 * price
        co2 = kwh * carbon / 1000.0
        sw_usd = a["loading_s"] / 3600.0 * self.usd_h
        busy = (a["prefill_s"] + a["decode_s"] + a["loading_s"]) / dur
        util = a["work_s"] / dur
        n = len(util)
        self.frames.append(dict(
            slot=np.full(n, slot, dtype=np.int64), t_start_s=np.full(n, t0), duration_s=np.full(n, dur),
            server_id=np.arange(n, dtype=np.int64), region=self.region, utilisation=util, busy_frac=busy,
            idle_s=a["idle_s"], prefill_s=a["prefill_s"], decode_s=a["decode_s"], loading_s=a["loading_s"],
            mean_batch=a["batch_int"] / dur, kv_util=a["kv_int"] / dur, energy_idle_kwh=idle_kwh,
            energy_prefill_kwh=pre_kwh, energy_decode_kwh=dec_kwh, energy_kwh=kwh, energy_usd=usd,
            co2_kg=co2, switches=a["switches"], switching_usd=sw_usd))
        if "prefill_tokens_saved" in a:  # the prefix cache's columns (torta.sim.prefix), only when it is on
            ptok, saved = a["cache_prompt_tokens"], a["prefill_tokens_saved"]
            self.frames[-1].update(
                cache_prompt_tokens=ptok, prefill_tokens_saved=saved, cache_evictions=a["cache_evictions"],
                cache_hit_rate=np.divide(saved, ptok, out=np.zeros(n), where=ptok > 0))
            self.cache_prompt_tokens += int(ptok.sum())
            self.prefill_tokens_saved += int(saved.sum())
            self.cache_evictions += int(a["cache_evictions"].sum())
        self.energy_kwh += float(kwh.sum())
        self.energy_usd += float(usd.sum())
        self.co2_kg += float(co2.sum())
        self.switching_usd += float(sw_usd.sum())
        self.switches += int(a["switches"].sum())
        if n:
            sd = float(util.std())
            mu = float(util.mean())
            self.std_w += sd * dur
            self.cv_w += (sd / mu if mu > 0 else 0.0) * dur
            sq = float((util * util).sum())
            self.jain_w += (float(util.sum()) ** 2 / (n * sq) if sq > 0 else 1.0) * dur
            self.dur_total += dur

    def frame(self) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(schema={"slot": pl.Int64, "server_id": pl.Int64, "region": pl.String,
                                        "utilisation": pl.Float64})
        cols = {k: np.concatenate([f[k] for f in self.frames]) for k in self.frames[0]}
        names = np.asarray([r.name for r in self.world.regions], dtype=object)
        cols["region"] = names[cols["region"]].tolist()
        return pl.DataFrame(cols)

    @property
    def cache_hit_rate(self) -> float:
        """Prefix-cache token hit rate of the scored slots: prefill tokens saved / prompt tokens admitted."""
        return self.prefill_tokens_saved / self.cache_prompt_tokens if self.cache_prompt_tokens else 0.0

    @property
    def load_std(self) -> float:
        return self.std_w / self.dur_total if self.dur_total > 0 else 0.0

    @property
    def load_jain(self) -> float:
        """Jain's fairness index of server utilisation per slot, duration-weighted (1 = even)."""
        return self.jain_w / self.dur_total if self.dur_total > 0 else 1.0

    @property
    def load_cv(self) -> float:
        return self.cv_w / self.dur_total if self.dur_total > 0 else 0.0


def pct(x: np.ndarray, q: float) -> float:
    if len(x) == 0:
        return 0.0
    return float(np.percentile(x, q))  # a NaN stays NaN: replay() refuses non-finite metrics
