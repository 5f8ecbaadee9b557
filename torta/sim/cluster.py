"""Per-server tables the event loop reads, derived once from a `World` and its `PerfModel`.

Everything the hot loop needs is resolved here into plain lists indexed by server id or by a dense
"type" id (one type per distinct (model, gpu, tp)), so the loop never calls the PerfModel with
strings except through the memoised `TypePerf` below.

Expected backlog (used by least-loaded allocators, reported to gateways and planners) is an estimate
of the server-seconds of work a request brings, `TypePerf.work_s(prompt, output)`:
`prompt_tokens * c_prefill_s + output_tokens * (one decode iteration / batch)`, where the batch is the
one the server really reaches with such requests: KV memory reserved per request at admission
(prompt + output tokens) bounds it at `kv_capacity / (prompt + output)`, capped by `max_batch`, and the
iteration is taken at the request's mean decode context. `c_prefill_s = prefill_ms(REF_CONTEXT) /
REF_CONTEXT / 1000`. A server's expected busy-until time is `max(busy_until, now) + work` at each
assignment (queued and travelling requests are counted from the moment they are assigned) and is reset
to `now` when the server drains (so the estimate never drifts upward past an idle server). On a KV-bound
server with hundreds queued it is within a few % of the next request's wait (tests/test_load_signal.py);
the reference-batch figure it replaced (`c_decode_s`: one iteration at `min(max_batch, kv_capacity //
REF_CONTEXT)` divided by that batch) said 23 % too little there, and stays the per-token cost of the
slot accounting's work figure and the planners' mean-work estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from torta.fleet.model import World

REF_CONTEXT_TOKENS = 1024  # typical prompt+output context used for backlog estimates
DECODE_CTX_BUCKET_SHIFT = 6  # decode iteration times memoised per 64-token mean-context bucket
BYTES_PER_TOKEN = 4.0  # ~4 characters of English text per token (OpenAI tokenizer rule of thumb)
MAX_BATCH_CONTEXT_TOKENS = 1  # context passed to PerfModel.max_batch: the scheduler's hard cap; KV is enforced per request


class TypePerf:
    """Memoised latency of one (model, gpu, tp) replica, in seconds."""

    __slots__ = ("model", "gpu", "tp", "perf", "pre_cache", "quant_cache", "dec_cache", "kv_cap", "max_batch",
                 "load_s", "c_prefill_s", "c_decode_s", "tok_cache")

    def __init__(self, perf, model: str, gpu: str, tp: int) -> None:
        self.model, self.gpu, self.tp, self.perf = model, gpu, tp, perf
        self.pre_cache: dict = {}
        self.quant_cache: dict = {}
        self.dec_cache: dict = {}
        self.tok_cache: dict = {}
        self.kv_cap = int(perf.kv_capacity_tokens(model, gpu, tp))
        self.max_batch = max(1, int(perf.max_batch(model, gpu, tp, MAX_BATCH_CONTEXT_TOKENS))) if self.kv_cap > 0 else 0
        if self.max_batch >= 1 << 16:
            raise ValueError(f"max_batch({model}, {gpu}, tp={tp}) = {self.max_batch}; expected < 65,536")
        self.load_s = float(perf.load_s(model, gpu, tp))
        if self.kv_cap > 0:
            self.c_prefill_s = self.prefill_s(REF_CONTEXT_TOKENS, float(REF_CONTEXT_TOKENS) ** 2) / REF_CONTEXT_TOKENS
            b_ref = max(1, min(self.max_batch, self.kv_cap // REF_CONTEXT_TOKENS))
            self.c_decode_s = float(perf.decode_ms_per_iter(model, gpu, tp, b_ref, REF_CONTEXT_TOKENS)) / 1000.0 / b_ref
        else:
            self.c_prefill_s = self.c_decode_s = math.inf

    def work_s(self, prompt_tokens: int, output_tokens: int) -> float:
        """Expected server-seconds a request brings (the backlog estimate's unit): its prompt at
        `c_prefill_s` a token, and each output token's share of a decode iteration at the batch the
        server really reaches with such requests, `kv_cap / (prompt + output)` (the KV reserved per
        request at admission, `torta.sim.servers`) capped by `max_batch`, at the request's mean
        decode context. Memoised per 64-token bucket of (prompt + output, prompt + output / 2)."""
        ctx = prompt_tokens + output_tokens
        key = ((ctx >> DECODE_CTX_BUCKET_SHIFT) << 16) | ((prompt_tokens + (output_tokens >> 1)) >> DECODE_CTX_BUCKET_SHIFT)
        c = self.tok_cache.get(key)
        if c is None:
            if self.kv_cap <= 0:
                return math.inf
            half = 1 << (DECODE_CTX_BUCKET_SHIFT - 1)
            reserved = ((ctx >> DECODE_CTX_BUCKET_SHIFT) << DECODE_CTX_BUCKET_SHIFT) + half
            batch = min(float(self.max_batch), max(1.0, self.kv_cap / min(reserved, self.kv_cap)))
            mean_ctx = ((key & 0xFFFF) << DECODE_CTX_BUCKET_SHIFT) + half
            b = max(1, int(batch))
            c = self.tok_cache[key] = float(self.perf.decode_ms_per_iter(self.model, self.gpu, self.tp, b, mean_ctx)) \
                / 1000.0 / batch
        return prompt_tokens * self.c_prefill_s + output_tokens * c

    def prefill_s(self, tokens: int, sum_sq: float) -> float:
        """Prefill time of a batch, memoised: batch tokens are rounded to 10 significant bits (exact
        below 1,024 tokens; <= 0.05 % above) and the sum of squared prompt lengths (the attention
        term) to 8 significant bits (<= 0.2 %), so batches share entries. Deterministic."""
        key = (tokens, sum_sq)
        v = self.pre_cache.get(key)
        if v is None:
            if len(self.pre_cache) > 500_000:
                self.pre_cache.clear()
            m, e = math.frexp(sum_sq)
            sq = math.ldexp(round(m * 256.0) / 256.0, e)
            tq = tokens
            if tokens >= 1024:
                m, e = math.frexp(tokens)
                tq = int(math.ldexp(round(m * 1024.0) / 1024.0, e))
            key2 = (tq, sq)
            v = self.quant_cache.get(key2)
            if v is None:
                v = max(0.0, float(self.perf.prefill_ms(self.model, self.gpu, self.tp, tq, sq))) / 1000.0
                self.quant_cache[key2] = v
            self.pre_cache[key] = v
        return v

    def decode_s(self, batch: int, context: float) -> float:
        """Decode iteration time, memoised under the int key `(context bucket << 16) | batch` (the
        engine's hot loop builds the same key inline; `max_batch` < 65,536 keeps keys distinct)."""
        bucket = int(context) >> DECODE_CTX_BUCKET_SHIFT
        key = (bucket << 16) | batch
        v = self.dec_cache.get(key)
        if v is None:
            ctx = (bucket << DECODE_CTX_BUCKET_SHIFT) + (1 << (DECODE_CTX_BUCKET_SHIFT - 1))
            v = float(self.perf.decode_ms_per_iter(self.model, self.gpu, self.tp, batch, ctx)) / 1000.0
            if not v > 0.0:
                raise ValueError(f"decode_ms_per_iter({self.model}, {self.gpu}, tp={self.tp}, batch={batch}) "
                                 f"= {v * 1000.0}; expected > 0")
            self.dec_cache[key] = v
        return v


@dataclass
class FleetTables:
    """Static per-server facts. `stype[s][m]` is the type id of server s running model m, or -1."""

    n_servers: int
    n_regions: int
    n_models: int
    region: list[int]
    gpu: list[str]
    tp: list[int]
    initial_model: list[int]
    stype: list[list[int]]
    types: list[TypePerf]
    servers_in_region: list[list[int]]
    capable: list[list[list[int]]]  # [r][m] -> servers in region r that may load m (kv_cap > 0)
    region_max_cap: list[list[int]]  # [r][m] -> largest KV capacity for model m in region r (0: none)
    fleet_max_cap: list[int]  # [m]
    latency_s: list[list[float]]
    near: list[list[list[int]]]  # [origin][m] -> regions able to serve m, nearest first
    idle_w: list[float]  # per server (all GPUs): W per GPU x tp x PUE
    prefill_w: list[float]
    decode_w: list[float]
    usd_per_hour: list[float]  # per server (all GPUs)


def build_tables(world: World) -> FleetTables:
    if world.perf is None:
        raise ValueError(f"world {world.name!r} has no PerfModel (World.perf is None)")
    perf = world.perf
    R, M, S = world.n_regions, len(world.models), len(world.servers)
    if M == 0:
        raise ValueError(f"world {world.name!r} lists no models")
    midx = {m: i for i, m in enumerate(world.models)}
    types: list[TypePerf] = []
    tkey: dict = {}
    region, gpu, tp, init, stype = [], [], [], [], []
    idle_w, prefill_w, decode_w, usd = [], [], [], []
    for k, sv in enumerate(world.servers):
        if sv.server_id != k:
            raise ValueError(f"server ids must be dense 0..n-1 in order; server {k} has id {sv.server_id}")
        if not 0 <= sv.region < R:
            raise ValueError(f"server {k} has region {sv.region}; expected 0..{R - 1}")
        if sv.initial_model not in midx:
            raise ValueError(f"server {k} initial_model {sv.initial_model!r} not in world.models {world.models}")
        row = [-1] * M
        for name in sv.models:
            if name not in midx:
                raise ValueError(f"server {k} may load {name!r}, not in world.models {world.models}")
            key = (name, sv.gpu, sv.tp)
            if key not in tkey:
                tkey[key] = len(types)
                types.append(TypePerf(perf, name, sv.gpu, sv.tp))
            if types[tkey[key]].kv_cap > 0:
                row[midx[name]] = tkey[key]
        region.append(sv.region)
        gpu.append(sv.gpu)
        tp.append(sv.tp)
        init.append(midx[sv.initial_model])
        stype.append(row)
        if sv.gpu not in world.power:
            raise ValueError(f"server {k}: no PowerSpec for gpu {sv.gpu!r}; have {sorted(world.power)}")
        pw = world.power[sv.gpu]
        pue = world.regions[sv.region].pue
        idle_w.append(pw.idle_w * sv.tp * pue)
        prefill_w.append(pw.prefill_w * sv.tp * pue)
        decode_w.append(pw.decode_w * sv.tp * pue)
        usd.append(float(world.gpu_usd_per_hour.get(sv.gpu, 0.0)) * sv.tp)
    servers_in_region = [[] for _ in range(R)]
    capable = [[[] for _ in range(M)] for _ in range(R)]
    rcap = [[0] * M for _ in range(R)]
    for s in range(S):
        r = region[s]
        servers_in_region[r].append(s)
        for m in range(M):
            t = stype[s][m]
            if t >= 0:
                capable[r][m].append(s)
                rcap[r][m] = max(rcap[r][m], types[t].kv_cap)
    fmax = [max((rcap[r][m] for r in range(R)), default=0) for m in range(M)]
    lat = np.asarray(world.latency_ms, dtype=float)
    if lat.shape != (R, R):
        raise ValueError(f"latency_ms has shape {lat.shape}; expected ({R}, {R})")
    latency_s = (lat / 1000.0).tolist()
    near = []
    for o in range(R):
        order = sorted(range(R), key=lambda j: (latency_s[o][j], j))
        near.append([[j for j in order if capable[j][m]] for m in range(M)])
    return FleetTables(S, R, M, region, gpu, tp, init, stype, types, servers_in_region, capable, rcap,
                       fmax, latency_s, near, idle_w, prefill_w, decode_w, usd)


def capacity_rps(tables: FleetTables, mean_prompt_tokens: float, mean_output_tokens: float,
                 model: int = 0) -> float:
    """Fleet service capacity in requests/s for requests of the given mean size: the sum over servers
    able to load `model` of 1 / expected work (the same estimate the least-loaded allocator uses)."""
    total = 0.0
    for s in range(tables.n_servers):
        t = tables.stype[s][model]
        if t < 0:
            continue
        ty = tables.types[t]
        work = mean_prompt_tokens * ty.c_prefill_s + mean_output_tokens * ty.c_decode_s
        if work > 0:
            total += 1.0 / work
    return total
