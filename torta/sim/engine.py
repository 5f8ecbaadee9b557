"""The discrete-event engine and cluster model (the hot loop).

One heap of `(time_s, seq, kind, x, v)` tuples with a per-engine sequence counter (`seq` breaks time
ties in push order, so runs are deterministic); no module-level state. The sorted arrival stream is
*merged* with the heap (a cursor over arrays, converted to Python lists a chunk at a time) instead of
pushing every arrival, and slot boundaries are a third merged stream. Ties at one instant: slot
boundary first, then heap events in push order, then arrivals.

Life of a request: it arrives at its origin region; its serving region comes from the policy's macro
plan (or, without a plan, the micro allocator picks a server anywhere); it travels
`World.latency_ms[origin, region]` (a heap event when > 0); the micro allocator picks a server in the
region; it waits in the server's FIFO queue; it is admitted into the running batch when its KV
reservation fits (`min(prompt + output, kv_capacity)` tokens, reserved for its lifetime, so no
preemption is needed) and the batch has fewer than `max_batch` requests; admitted requests are
prefilled together (one prefill of their summed prompt tokens, capped at `max_prefill_tokens` per
batch unless a single prompt is larger), during which the server's decodes pause (prefill-priority
scheduling as in vLLM); the prefill's end is every member's first token; then each needs
`output_tokens - 1` decode iterations. Decoding is a fluid: the server holds a virtual iteration
counter V advancing at 1 / decode_s(batch, mean context) while not prefilling; a request that joined
at V0 finishes when V reaches V0 + output_tokens - 1. So the loop handles one event per batch change,
not per token. Requests with 0 or 1 output tokens finish at their first token. The response pays the
return latency `latency_ms[region, origin]` (added in accounting).

Model switch: a server serves its queue in FIFO order; when the head request needs a model other than
the loaded one, the server stops admitting, lets its batch drain, then loads the model for
`PerfModel.load_s` seconds (state `loading`, serves nothing) and continues.

Server states for energy: idle, prefill, decode, loading (loading is charged at idle power). The
per-slot integrals (seconds per state, batch size, KV occupancy, work) are kept by difference: a change
at time t adds (new rate - old rate) x (slot end - t), so events that change nothing cost nothing
(`flush_slot` removes the projection past the run's end and carries running decodes' work over).
"""

from __future__ import annotations

from bisect import bisect_right
from array import array
import gc
import itertools
import math
import struct
import time
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush, heapreplace
from typing import Callable

import numpy as np

from torta.policy.base import RequestInfo, RoundRobinAllocator, SlotState, WarmLeastLoaded, validate_plan
from torta.sim.cluster import DECODE_CTX_BUCKET_SHIFT as DSHIFT
from torta.sim.cluster import FleetTables

INF = math.inf
NAN = math.nan

# request record fields (a Python list per request between its arrival and joining a server's queue, where
# it becomes a row of doubles; RID holds the request's position in the arrival-ordered RequestArrays, REG
# its serving region once routed)
RID, ORG, MOD, PR, OUT, ARR, REG = range(7)
# a queued request is a row of QW doubles in its server's queue array (integers are exact as doubles)
Q_RID, Q_MOD, Q_PR, Q_OUT, Q_RDY, Q_RES = range(6)
QW = 6
Q_COMPACT = 6 * 4096  # drop a queue array's consumed head rows once they take this many doubles
ROW6 = struct.Struct("6d")  # packs/unpacks a queue or running row in one call (cheaper than six item accesses)
DONE = struct.Struct("7d")  # a completion: position, region, server, admitted_s, first_token_s, finish_s, drop code
FW = 6  # doubles per running request in the engine's fd[s] rows: position, KV, prompt, join counter, adm, first token
DROP_REASONS = ("", "prompt_exceeds_kv", "no_server_for_model")
IDLE, PREFILL, DECODE, LOADING = 0, 1, 2, 3
EV_NET, EV_PREFILL, EV_DECODE, EV_LOAD, EV_WAKE = 0, 1, 2, 3, 4
EV_HOLD, EV_BATCH = 5, 6  # batch-window allocators only: reach the region's window / the window closes
EV_ARRIVAL, EV_SLOT = 10, 11  # only in the debug event log


def queue_array() -> array:
    """A server's empty queue array (a function so tests can inject faults into queue bookkeeping)."""
    return array("d")


@dataclass(frozen=True)
class EngineConfig:
    max_prefill_tokens: int = 8192  # vLLM's default max_num_batched_tokens without chunking is similar
    chunk_requests: int = 65536  # arrivals converted to Python lists this many at a time
    debug: bool = False  # assert invariants after every event and keep an event log


@dataclass
class RequestArrays:
    """Requests as numpy arrays sorted by arrival_s (models and origins as dense indices)."""

    request_id: np.ndarray  # int64
    arrival_s: np.ndarray  # float64, non-decreasing
    prompt_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64
    origin: np.ndarray  # int, index into World.regions
    model: np.ndarray  # int, index into World.models

    def __len__(self) -> int:
        return len(self.arrival_s)


@dataclass
class EngineStats:
    end_s: float = 0.0
    events: int = 0
    plan_calls: int = 0
    planner_s: float = 0.0
    event_log: list = field(default_factory=list)  # debug only: (time_s, kind, server)


class _QueueLengths:
    """Read-only sequence of the servers' queue lengths (requests waiting, not yet admitted)."""

    __slots__ = ("_queues", "_heads")

    def __init__(self, queues: list, heads: list) -> None:
        self._queues, self._heads = queues, heads

    def __len__(self) -> int:
        return len(self._queues)

    def __getitem__(self, server: int) -> int:
        return (len(self._queues[server]) - self._heads[server]) // QW


class FleetView:
    """Read-only view of the live cluster for custom micro allocators (`MicroAllocator.choose`).

    Live per-server state, indexed by server id (`tables.servers_in_region`, `tables.region`), as
    attributes that always show the current values (the engine's own lists: bind them once, read them
    per request, never modify them; a write corrupts the replay):

    - `busy_until_s`: expected busy-until time (seconds) of each server: `max(busy_until, now) + work`
      per assigned request, pulled back to `now` when the server drains (`torta.sim.cluster`);
    - `loaded_models`: the model each server has loaded (-1: none);
    - `tail_models`: the model each server will hold once its queue drains;
    - `batch_sizes`: requests admitted (prefilling or decoding) on each server;
    - `kv_reserved_tokens`: KV cache tokens reserved by the admitted requests;
    - `queue_lengths`: requests waiting in each server's queue (a read-only sequence);
    - `now_s`: the current simulated time.

    The methods below give the same per server, plus table facts (capacities, work, latencies)."""

    def __init__(self, tables: FleetTables, *, busy_until_s: list, loaded_models: list, tail_models: list,
                 batch_sizes: list, kv_reserved_tokens: list, queues: list, queue_heads: list) -> None:
        self.tables = tables
        self._busy_until_s, self._loaded, self._tail = busy_until_s, loaded_models, tail_models
        self._batch, self._kv = batch_sizes, kv_reserved_tokens
        self._qlen = _QueueLengths(queues, queue_heads)
        self.now_s = 0.0

    busy_until_s = property(lambda self: self._busy_until_s, doc="Expected busy-until time per server (s).")
    loaded_models = property(lambda self: self._loaded, doc="Loaded model per server (-1: none).")
    tail_models = property(lambda self: self._tail, doc="Model per server once its queue drains.")
    batch_sizes = property(lambda self: self._batch, doc="Admitted requests per server.")
    kv_reserved_tokens = property(lambda self: self._kv, doc="Reserved KV tokens per server.")
    queue_lengths = property(lambda self: self._qlen, doc="Waiting requests per server (read-only sequence).")

    @property
    def n_servers(self) -> int:
        return self.tables.n_servers

    def servers_in_region(self, region: int) -> list[int]:
        return self.tables.servers_in_region[region]

    def can_serve(self, server: int, model: int) -> bool:
        return self.tables.stype[server][model] >= 0

    def region_of(self, server: int) -> int:
        return self.tables.region[server]

    def loaded_model(self, server: int) -> int:
        return self._loaded[server]

    def tail_model(self, server: int) -> int:
        """The model the server will hold once its queue drains."""
        return self._tail[server]

    def backlog_s(self, server: int) -> float:
        return max(0.0, self._busy_until_s[server] - self.now_s)

    def queue_len(self, server: int) -> int:
        return self._qlen[server]

    def batch(self, server: int) -> int:
        return self._batch[server]

    def kv_used_tokens(self, server: int) -> int:
        return int(self._kv[server])

    def kv_capacity_tokens(self, server: int, model: int) -> int:
        t = self.tables.stype[server][model]
        return self.tables.types[t].kv_cap if t >= 0 else 0

    def work_s(self, server: int, model: int, prompt_tokens: int, output_tokens: int) -> float:
        """Expected server-seconds of work for a request (the backlog estimate's unit)."""
        ty = self.tables.types[self.tables.stype[server][model]]
        return prompt_tokens * ty.c_prefill_s + output_tokens * ty.c_decode_s

    def load_s(self, server: int, model: int) -> float:
        return self.tables.types[self.tables.stype[server][model]].load_s

    def latency_s(self, origin: int, region: int) -> float:
        return self.tables.latency_s[origin][region]


class Engine:
    """Runs one replay. `sink(batch)` receives finished/dropped requests in chunks (a dict of flat
    numpy arrays: index into `req`, region, server, admitted_s, first_token_s, finish_s, drop code);
    `slot_sink(slot, t0, dur, arrays)` receives per-slot, per-server accounting; `plan_sink(state,
    plan)` (optional) receives every slot's `SlotState` and the plan applied to it: the validated
    (R, R) or (M, R, R) array, or None for a slot without a plan."""

    def __init__(self, world, tables: FleetTables, policy, *, seed: int, sink: Callable,
                 slot_sink: Callable, cfg: EngineConfig = EngineConfig(),
                 progress: Callable[[int], None] | None = None, plan_sink: Callable | None = None) -> None:
        self.world, self.tables, self.policy, self.seed = world, tables, policy, seed
        self.sink, self.slot_sink, self.cfg, self.progress = sink, slot_sink, cfg, progress
        self.plan_sink = plan_sink
        self.stats = EngineStats()

    # ------------------------------------------------------------------------------------------
    def run(self, req: RequestArrays) -> EngineStats:
        # The loop allocates millions of small acyclic lists/tuples; the cyclic GC would rescan every
        # in-flight request over and over (quadratic under overload). Nothing here forms cycles.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run(req)
        finally:
            if enabled:
                gc.enable()

    def _run(self, req: RequestArrays) -> EngineStats:  # noqa: C901 - the hot loop, kept in one frame
        T = self.tables
        world, policy, cfg, stats = self.world, self.policy, self.cfg, self.stats
        S, R, M = T.n_servers, T.n_regions, T.n_models
        debug = cfg.debug
        log = stats.event_log
        rng = np.random.default_rng(self.seed)
        nxt = itertools.count().__next__
        heap: list = [(INF, -1, -1, -1, 0)]  # a sentinel that is never popped: heap[0] always exists
        region = T.region
        stype = T.stype
        types = T.types
        lat = T.latency_s
        near = T.near
        fmax = T.fleet_max_cap
        rcap = T.region_max_cap
        maxT = cfg.max_prefill_tokens
        slot_s = float(world.slot_s)
        if not (slot_s > 0 and math.isfinite(slot_s)):  # the slot integrals are kept relative to slot ends
            raise ValueError(f"World.slot_s must be a finite number of seconds > 0, got {slot_s}")

        # per-server live state
        loaded = [m if stype[s][m] >= 0 else -1 for s, m in enumerate(T.initial_model)]
        tailm = list(loaded)
        ty_cur = [types[stype[s][loaded[s]]] if loaded[s] >= 0 else None for s in range(S)]
        cap_cur = [ty.kv_cap if ty else 0 for ty in ty_cur]
        mb_cur = [ty.max_batch if ty else 0 for ty in ty_cur]
        st = [IDLE] * S
        # FIFO queue per server: qd[s] holds one row of QW doubles per request (position, model, prompt
        # and output tokens, time it reaches s, KV reservation) from offset qh[s] on; consumed rows are
        # dropped in bulk, and an emptied queue is cleared at once, so `qd[s]` is truthy iff requests
        # wait. Rows rather than the request records: the head a server admits queued long ago, and its
        # record (a list of boxed fields) would be out of cache; a row is one or two cache lines, and
        # the next rows admitted with it are adjacent
        qd = [queue_array() for _ in range(S)]
        qh = [0] * S
        qlast = [0.0] * S  # RDY of the last request in qd[s] (read only while it is not empty)
        # running (decoding) requests per server, ordered by finish counter: fk[s] holds the negated keys
        # V0 + output - 1 ascending (so the next to finish is last: pop() is O(1) and the keys sit in one
        # contiguous array); equal keys: smaller request position finishes first. What a completion needs
        # of each sits in fd[s], FW doubles per request in the same order (position, KV reservation,
        # prompt tokens, join counter, admitted and first-token times; integers are exact as doubles):
        # a finishing request's fields are unboxed and on one cache line, so a completion does not
        # chase a request record gone cold while it queued (with thousands of servers that record and
        # its boxed fields are in main memory, not in cache)
        fk = [array("d") for _ in range(S)]
        fd = [array("d") for _ in range(S)]
        fw = array("d", bytes(8 * FW))  # scratch row for inserting into fd[s]
        pre: list = [None] * S  # the running prefill's batch: its queue rows, sliced out of qd[s]
        padm = [0.0] * S  # when the running prefill's batch was admitted
        # the position of the queue head a prefill's admission stopped at for want of KV or batch room
        # (None: it stopped for another reason); unless that head changed or the prefill freed room, it
        # cannot start next
        full: list = [None] * S
        V = [0.0] * S
        vt = [0.0] * S
        itv = [1.0] * S
        sp = [0] * S  # sum of prompt tokens of decoding requests
        svj = [0.0] * S  # sum of join counters of decoding requests
        kv = [0] * S
        nact = [0] * S
        dver = [0] * S  # version of the server's outstanding decode event (older ones are stale)
        dnx = [INF] * S  # time of the outstanding decode event (INF: none)
        wk = [INF] * S  # time of the outstanding wake-up for a request still travelling to s (INF: none)
        bu = [0.0] * S  # expected busy-until time
        hv = [0] * S  # heap entry version
        # accounting accumulators (per slot), kept *by difference*: each holds its integral from the slot's
        # start to the slot's end as if nothing changed after the last event, so a change at `now` of a
        # state, a batch size or a KV occupancy adds (new - old) * (slot end - now), and events that
        # change none of them (a decode event that wakes early, a wake-up that admits nothing) cost
        # nothing; flush_slot removes the part beyond the run's end. span = [slot start, slot end]
        span = [0.0, slot_s]
        a_idle, a_pre, a_dec, a_load = [slot_s] * S, [0.0] * S, [0.0] * S, [0.0] * S  # all idle at 0
        accs = [a_idle, a_pre, a_dec, a_load]
        bint = [0.0] * S
        kint = [0.0] * S
        sw = [0] * S
        # expected-work seconds of tokens processed (utilisation numerator), also kept by difference: a
        # request's whole decode is added when it starts decoding, and flush_slot moves what is left of
        # it at the slot's end to the next slot
        work = [0.0] * S
        # completions, in completion order, buffered in flat arrays and handed to the sink per chunk
        chunk = cfg.chunk_requests
        # (one DONE row of doubles per request, appended in one call; integers are exact as doubles)
        done = array("d")
        put_done = DONE.pack
        add_done = done.frombytes
        pack_row = ROW6.pack
        pack_row_into = ROW6.pack_into
        unpack_row = ROW6.unpack_from
        nd = 0

        def flush_done(k):
            a = np.frombuffer(done, np.float64, 7 * k).reshape(k, 7)
            self.sink(dict(index=a[:, 0].astype(np.int64), region=a[:, 1].astype(np.int64),
                           server=a[:, 2].astype(np.int64), admitted_s=a[:, 3].copy(),
                           first_token_s=a[:, 4].copy(), finish_s=a[:, 5].copy(), drop=a[:, 6].astype(np.int64)))
            del a
            del done[:]
        dem_from = [0]  # position of the first arrival not yet counted in a slot's demand
        view = FleetView(T, busy_until_s=bu, loaded_models=loaded, tail_models=tailm, batch_sizes=nact,
                         kv_reserved_tokens=kv, queues=qd, queue_heads=qh)

        # allocator set-up
        alloc = policy.allocator
        kind_ll = isinstance(alloc, WarmLeastLoaded)
        kind_rr = isinstance(alloc, RoundRobinAllocator)
        latency_aware = bool(getattr(alloc, "latency_aware", True))
        # batch-window allocators (torta.policy.base.BatchAllocator): a request reaching its serving region
        # waits in pend[r] until the window its region's first held request opened closes (EV_BATCH, or
        # at once when batch_max_requests are held), then alloc.assign_batch places the whole batch
        win = 0.0 if kind_ll or kind_rr else float(getattr(alloc, "batch_window_s", 0.0) or 0.0)
        if not (math.isfinite(win) and win >= 0.0):
            raise ValueError(f"allocator {type(alloc).__name__}: batch_window_s must be finite and >= 0, got {win}")
        wmax = int(getattr(alloc, "batch_max_requests", 0) or 0) if win else 0
        wmax = wmax if wmax > 0 else 1 << 62
        pend = [[] for _ in range(R)]
        wver = [0] * R  # window version per region (an EV_BATCH of a window closed early is stale)
        # Built-in allocators choosing a server at the origin (no plan) put the request in its queue at
        # once instead of scheduling a network event (custom allocators see queues through FleetView,
        # which must hold only requests that arrived, so they keep the event).
        prejoin = kind_ll or kind_rr
        multi = M > 1
        # Heaps of (busy_until, server, version), lazily invalidated by version, per scope k (regions
        # 0..R-1; the whole fleet is k = G = R) and model m: wheap[k][m] holds servers whose tail model
        # is m (warm); cheap[k][m] (multi-model worlds) holds servers able to load m whose tail is
        # another model (cold). Fleet-wide heaps are kept once a slot runs without a plan (global
        # scope), region heaps once a slot runs with one. idle[r][m]: servers that drained (nothing
        # queued or running) since their last assignment, for the nearest-idle tie-break.
        G = R
        wheap = [[[] for _ in range(M)] for _ in range(R + 1)]
        cheap = [[[] for _ in range(M)] for _ in range(R + 1)]
        idle = [[[] for _ in range(M)] for _ in range(R)]
        on = [False, False]  # [fleet-wide heaps, region heaps]
        cold_on = [False] * M  # cold heaps of a model are kept once a request for it looks for a server
        min_load = [min((ty.load_s for ty in types if ty.model == world.models[m] and ty.kv_cap > 0), default=0.0)
                    for m in range(M)]
        rr_ptr: dict = {}
        glob_capable = [[s for s in range(S) if stype[s][m] >= 0] for m in range(M)]
        others = [[m for m in range(M) if stype[s][m] >= 0 and m != tailm[s]] for s in range(S)]
        ocold = [[] for _ in range(S)]  # others[s] whose cold heaps are kept (cold_on)
        nocold = [0]  # servers whose ocold is not empty (while 0, no server needs its cold entries pushed)

        def set_ocold(s, lst):
            nocold[0] += (1 if lst else 0) - (1 if ocold[s] else 0)
            ocold[s] = lst
        tyof = [[types[t] if t >= 0 else None for t in row] for row in stype]
        capm = [[types[t].kv_cap if t >= 0 else 0 for t in row] for row in stype]
        fmin = [min((capm[s][m] for s in glob_capable[m]), default=0) for m in range(M)]  # smallest KV capacity for m
        wG = wheap[G]

        def build(glob):
            """Fill the fleet-wide (glob) or the region heaps from the current state."""
            if not kind_ll:
                return
            for s in range(S):
                e = (bu[s], s, hv[s])
                k = G if glob else region[s]
                if tailm[s] >= 0:
                    wheap[k][tailm[s]].append(e)
                if multi:
                    for m in ocold[s]:
                        cheap[k][m].append(e)
            for k in ([G] if glob else range(R)):
                for m in range(M):
                    wheap[k][m].sort()
                    cheap[k][m].sort()
            on[0 if glob else 1] = True

        def build_cold(m):
            """Start keeping the cold heaps of model m (at the enabled levels)."""
            cold_on[m] = True
            g, rg = on
            for s in range(S):
                if m in others[s]:
                    set_ocold(s, [mm for mm in others[s] if cold_on[mm]])
                    e = (bu[s], s, hv[s])
                    if g:
                        cheap[G][m].append(e)
                    if rg:
                        cheap[region[s]][m].append(e)
            for k in range(R + 1):
                cheap[k][m].sort()

        nent = [0] * M  # entries (valid or stale) in idle[.][m]: while 0 the nearest-idle scan can skip
        if kind_ll:
            for s in range(S):
                if tailm[s] >= 0:
                    idle[region[s]][tailm[s]].append((0.0, s, 0))
                    nent[tailm[s]] += 1
            for r in range(R):
                for m in range(M):
                    idle[r][m].sort()

        compact_at = 2 * S + 64

        def compact(h):
            """Drop stale entries of a heap nobody pops (e.g. the cold heap of a model never requested)."""
            h[:] = [e for e in h if e[2] == hv[e[1]]]
            heapify(h)

        def push(h, e, s):
            if h and h[0][1] == s:  # s was the top (it usually is: it was just chosen)
                heapreplace(h, e)
            else:
                heappush(h, e)
                if len(h) > compact_at:
                    compact(h)

        def repush(s):
            v = hv[s] + 1
            hv[s] = v
            e = (bu[s], s, v)
            t = tailm[s]
            g, rg = on
            if g:
                h = wheap[G][t]
                if h and h[0][1] == s:  # s was the top: it usually is, it was just chosen
                    heapreplace(h, e)
                else:
                    push(h, e, s)
                if nocold[0]:
                    for m in ocold[s]:
                        push(cheap[G][m], e, s)
            if rg:
                r = region[s]
                push(wheap[r][t], e, s)
                if nocold[0]:
                    for m in ocold[s]:
                        push(cheap[r][m], e, s)

        def ll_scope(k, m, now):
            """Least expected wait in scope k (a region or G) for model m: (wait_s, server)."""
            h = wheap[k][m]
            s = -1
            best = INF
            while h:
                e = h[0]
                if e[2] == hv[e[1]]:
                    s = e[1]
                    best = e[0] - now
                    if best < 0.0:
                        best = 0.0
                    break
                heappop(h)
            if multi and best > min_load[m]:  # a cold server could only win if the warm wait exceeds a load
                if not cold_on[m]:
                    build_cold(m)
                h = cheap[k][m]
                while h:
                    e = h[0]
                    c = e[1]
                    if e[2] == hv[c]:
                        w = e[0] - now
                        if w < 0.0:
                            w = 0.0
                        w += types[stype[c][m]].load_s
                        if w < best:
                            return w, c
                        break
                    heappop(h)
            return best, s

        def fit_scan(cands, m, p, now):
            best, bs = INF, -1
            for s in cands:
                t = stype[s][m]
                if t >= 0 and types[t].kv_cap >= p:
                    w = bu[s] - now
                    if tailm[s] != m:
                        w += types[t].load_s
                    if w < best:
                        best, bs = w, s
            return bs

        def choose(rec, scope, now):
            """Server for rec within region `scope` (or anywhere if None)."""
            m = rec[MOD]
            p = rec[PR]
            if kind_ll:
                if scope is None:
                    w, s = ll_scope(G, m, now)
                    if w <= 0.0 and latency_aware and nent[m]:  # idle servers may exist: the nearest drained one
                        for r in near[rec[ORG]][m]:
                            h = idle[r][m]
                            while h:
                                e = h[0]
                                if e[2] == hv[e[1]]:
                                    break
                                heappop(h)
                                nent[m] -= 1
                            if h:
                                s = h[0][1]
                                break
                    if s < 0 or types[stype[s][m]].kv_cap < p:
                        s = fit_scan(glob_capable[m], m, p, now)
                else:
                    w, s = ll_scope(scope, m, now)
                    if s < 0 or types[stype[s][m]].kv_cap < p:
                        s = fit_scan(T.capable[scope][m], m, p, now)
            elif kind_rr:
                cands = glob_capable[m] if scope is None else T.capable[scope][m]
                key = (scope, m)
                k = rr_ptr.get(key, 0)
                n = len(cands)
                for _ in range(n):
                    s = cands[k % n]
                    k += 1
                    if types[stype[s][m]].kv_cap >= p:
                        break
                rr_ptr[key] = k % n
            else:
                view.now_s = now
                info = RequestInfo(int(req.request_id[rec[RID]]), rec[ORG], m, p, rec[OUT], rec[ARR])
                s = int(alloc.choose(view, info, scope))
                if not 0 <= s < S or stype[s][m] < 0 or types[stype[s][m]].kv_cap < p or (
                        scope is not None and region[s] != scope):
                    raise ValueError(f"allocator {type(alloc).__name__} chose server {s} for request "
                                     f"{rec[RID]} (model {m}, prompt {p} tokens, region {scope}); "
                                     "expected a server in the region able to hold it")
            book(s, rec, now)
            return s

        def book(s, rec, now):
            """Book the request's expected work on s (busy-until estimate, heaps)."""
            m = rec[MOD]
            p = rec[PR]
            ty = types[stype[s][m]]
            b = bu[s]
            if b < now:
                b = now
            b += p * ty.c_prefill_s + rec[OUT] * ty.c_decode_s
            if tailm[s] != m:
                b += ty.load_s
                tailm[s] = m
                if multi:
                    others[s] = oth = [mm for mm in range(M) if stype[s][mm] >= 0 and mm != m]
                    set_ocold(s, [mm for mm in oth if cold_on[mm]])
            bu[s] = b
            if kind_ll:
                repush(s)

        def drained(s, now):
            """Server went idle with nothing queued: pull its busy-until estimate back to now."""
            if bu[s] > now:
                bu[s] = now
                if kind_ll:
                    repush(s)
            t = tailm[s]
            if kind_ll and t >= 0:
                h = idle[region[s]][t]
                heappush(h, (now, s, hv[s]))
                nent[t] += 1
                if len(h) > compact_at:
                    k = len(h)
                    compact(h)
                    nent[t] -= k - len(h)

        def sched_decode(s, now):
            b = len(fk[s])
            Vs = V[s]
            it = ty_cur[s].decode_s(b, (sp[s] + b * Vs - svj[s]) / b)
            itv[s] = it
            t = now + (-fk[s][-1] - Vs) * it
            if t < dnx[s]:  # an earlier outstanding event stays: it wakes up early and reschedules
                dv = dver[s] + 1
                dver[s] = dv
                dnx[s] = t
                heappush(heap, (t, nxt(), EV_DECODE, s, dv))

        def kick(s, now):
            """Start a prefill (or a model load) on s if its queue head allows. True if started."""
            qs = qd[s]
            if not qs:
                return False
            h = qh[s]
            _, m, tok, _, t, used = unpack_row(qs, 8 * h)  # the head's row
            if t > now:  # still travelling to s (joined at routing time): wake s when it lands
                if t < wk[s]:
                    wk[s] = t
                    heappush(heap, (t, nxt(), EV_WAKE, s, 0))
                return False
            if m != loaded[s]:
                if nact[s]:
                    return False
                m = int(m)
                t = stype[s][m]
                ty = types[t]
                loaded[s] = m
                ty_cur[s] = ty
                cap_cur[s] = ty.kv_cap
                mb_cur[s] = ty.max_batch
                left = span[1] - now
                accs[st[s]][s] -= left
                a_load[s] += left
                st[s] = LOADING
                sw[s] += 1
                heappush(heap, (now + ty.load_s, nxt(), EV_LOAD, s, 0))
                return True
            capv = cap_cur[s]
            kv0 = kv[s]
            used += kv0  # KV with the head admitted
            n0 = nact[s]
            n = n0 + 1
            mbs = mb_cur[s]
            if used > capv or n > mbs:
                return False
            sq = tok * tok
            blocked = None
            j = h + QW
            end = len(qs)
            while j < end:  # more of the queue joins this prefill while it fits
                pos, mj, p, _, t, res = unpack_row(qs, 8 * j)
                if mj != m or t > now:
                    break
                if used + res > capv or n >= mbs:
                    blocked = pos
                    break
                if tok + p > maxT:
                    break
                used += res
                n += 1
                tok += p
                sq += p * p
                j += QW
            batch = qs[h:j]
            if j == end:
                del qs[:]
                qh[s] = 0
            elif j >= Q_COMPACT:
                del qs[:j]
                qh[s] = 0
            else:
                qh[s] = j
            ty = ty_cur[s]
            left = span[1] - now  # time to the slot's end (the accumulators are kept by difference)
            if st[s] == DECODE:  # pause the fluid decode
                dV = (now - vt[s]) / itv[s]
                V[s] += dV
                vt[s] = now  # the outstanding decode event stays; it finds the server paused or early
                a_dec[s] -= left
            else:  # idle: kick runs only on idle or decoding servers
                a_idle[s] -= left
            a_pre[s] += left
            work[s] += tok * ty.c_prefill_s
            bint[s] += (n - n0) * left
            kint[s] += (used - kv0) / capv * left
            kv[s] = used
            nact[s] = n
            st[s] = PREFILL
            pre[s] = batch
            padm[s] = now
            full[s] = blocked
            d = ty.pre_cache.get((tok, sq))
            if d is None:
                d = ty.prefill_s(tok, sq)
            heappush(heap, (now + d, nxt(), EV_PREFILL, s, 0))
            return True

        def settle(s, now):
            """After an event on s: start work if possible, else resume decoding or go idle."""
            if kick(s, now):
                return
            if fk[s]:
                left = span[1] - now
                accs[st[s]][s] -= left
                a_dec[s] += left
                st[s] = DECODE
                vt[s] = now
                sched_decode(s, now)
            else:
                st[s] = IDLE
                if not qd[s]:
                    drained(s, now)

        def join(rec, s, now, t_ready):
            """Put rec in s's queue; it reaches s at t_ready (now for a request that has arrived; later
            for one the built-in allocators place at routing time, without a network event). The queue
            stays ordered by time of reaching the server (FIFO as if each had joined on landing, so an
            arrived request never waits behind one still travelling), and a request that is not there
            yet is never admitted (`kick`). A request joining behind the head cannot make the head
            admissible (work conservation holds before it joins): only a new head needs a kick. The
            arrival path inlines the append case for the built-in allocators: keep the two in step
            (tests/test_sim_invariants.py checks both through the debug invariants)."""
            m = rec[MOD]
            if debug:  # completions report the server's region as the serving region
                assert rec[REG] == region[s], (rec[RID], rec[REG], s, region[s])
            res = rec[PR] + rec[OUT]
            c = capm[s][m]
            row = pack_row(rec[RID], m, rec[PR], rec[OUT], t_ready, res if res <= c else c)
            qs = qd[s]
            if not qs or qlast[s] <= t_ready:
                head = not qs
                qs.frombytes(row)
                qlast[s] = t_ready
                if not head:
                    return
            else:  # an earlier-landing request from a nearer origin overtakes those still travelling
                h = qh[s]
                k = len(qs) - QW
                while k > h and qs[k - QW + Q_RDY] > t_ready:
                    k -= QW
                qs[k:k] = array("d", row)
                if k > h:
                    return
            x = st[s]
            if x == IDLE or x == DECODE:
                if t_ready <= now:
                    kick(s, now)
                elif t_ready < wk[s]:
                    wk[s] = t_ready
                    heappush(heap, (t_ready, nxt(), EV_WAKE, s, 0))

        def check(s, now):
            """Debug: work conservation and state consistency of server s."""
            x = st[s]
            if x == PREFILL or x == LOADING:
                return
            assert (x == DECODE) == bool(fk[s]), (now, s, x, len(fk[s]))
            assert len(fd[s]) == FW * len(fk[s]), f"server {s}: running rows"
            assert kv[s] == sum(fd[s][1::FW]) + sum((pre[s] or ())[Q_RES::QW]), f"server {s}: KV"
            assert all(a <= b for a, b in zip(fk[s], fk[s][1:])), f"server {s}: finish keys out of order"
            length = span[1] - span[0]
            assert abs(a_idle[s] + a_pre[s] + a_dec[s] + a_load[s] - length) <= 1e-9 * max(1.0, length), \
                f"server {s}: state times do not add up to the slot"
            assert nent == [sum(len(idle[r][m]) for r in range(R)) for m in range(M)], "idle entry counts"
            qs = qd[s]
            h = qh[s]
            waiting = len(qs) > h  # from the length, not from the truthiness the hot paths use
            assert (len(qs) - h) % QW == 0 and (waiting or h == 0), f"server {s}: queue rows"
            assert all(qs[k + Q_RDY] <= qs[k + QW + Q_RDY] for k in range(h, len(qs) - QW, QW)), \
                f"server {s}: queue not ordered by time of reaching the server"
            if waiting and qs[h + Q_RDY] > now:
                assert wk[s] <= qs[h + Q_RDY], f"server {s} forgot the request travelling to it"
            elif waiting:
                if qs[h + Q_MOD] == loaded[s]:
                    assert kv[s] + qs[h + Q_RES] > cap_cur[s] or nact[s] >= mb_cur[s], \
                        f"work conservation: server {s} idles at {now} with an admissible request"
                else:
                    assert nact[s] > 0, f"server {s} idles at {now} instead of loading a model"

        def route(rec, cum, u, now):
            """Batch-window allocators: the serving region (the plan's draw, or the allocator's `route`
            without a plan), re-routed like the per-request path when it cannot hold the request; the
            request travels there and joins the region's window."""
            o, m, p = rec[ORG], rec[MOD], rec[PR]
            if cum is None:
                fn = getattr(alloc, "route", None)
                if fn is None:
                    raise ValueError(f"allocator {type(alloc).__name__} has batch_window_s > 0 but no "
                                     "route(view, request) for slots without a macro plan")
                view.now_s = now
                r = int(fn(view, RequestInfo(int(req.request_id[rec[RID]]), o, m, p, rec[OUT], now)))
                if not 0 <= r < R:
                    raise ValueError(f"allocator {type(alloc).__name__}.route returned region {r}; "
                                     f"expected 0..{R - 1}")
            else:
                r = bisect_right(cum[o][m], u)
            if rcap[r][m] < p or not rcap[r][m]:  # region cannot serve it: nearest that can
                for r in near[o][m]:
                    if rcap[r][m] >= p:
                        break
            rec[REG] = r
            heappush(heap, (now + lat[o][r], nxt(), EV_HOLD, rec, 0))

        def hold(rec, now):
            r = rec[REG]
            held = pend[r]
            held.append(rec)
            if len(held) == 1:
                heappush(heap, (now + win, nxt(), EV_BATCH, r, wver[r]))
            if len(held) >= wmax:
                return close_window(r, now)
            return -1

        def close_window(r, now):
            """Assign the requests held in region r (alloc.assign_batch), book and enqueue them in the
            returned order. Returns the last server used."""
            held = pend[r]
            pend[r] = []
            wver[r] += 1
            view.now_s = now
            infos = [RequestInfo(int(req.request_id[x[RID]]), x[ORG], x[MOD], x[PR], x[OUT], x[ARR]) for x in held]
            pairs = [(int(k), int(s)) for k, s in alloc.assign_batch(view, infos, r)]
            if sorted(k for k, _ in pairs) != list(range(len(held))):
                raise ValueError(f"allocator {type(alloc).__name__}.assign_batch must return one (index, server) "
                                 f"pair per held request ({len(held)}), got indices {sorted(k for k, _ in pairs)}")
            s = -1
            for k, s in pairs:
                x = held[k]
                m = x[MOD]
                if not 0 <= s < S or region[s] != r or stype[s][m] < 0 or types[stype[s][m]].kv_cap < x[PR]:
                    raise ValueError(f"allocator {type(alloc).__name__} chose server {s} for request {x[RID]} "
                                     f"(model {m}, prompt {x[PR]} tokens, region {r}); expected a server in the "
                                     "region able to hold it")
                book(s, x, now)
                join(x, s, now, now)
            if debug:
                for _, y in pairs:
                    check(y, now)
            return s

        # plan handling
        has_plan = [None]  # cumulative plan rows per origin and model (has_plan[0][o][m]) or None
        prev_plan = [None]

        def do_plan(slot, t0, upto):
            """Plan the slot starting at t0; arrivals [dem_from, upto) (every arrival since the last plan,
            dropped ones too) are the demand of the slot that ended."""
            a = dem_from[0]
            dem_from[0] = upto
            org = req.origin[a:upto]
            dem_n = np.bincount(org, minlength=R).astype(float)
            dem_tok = np.bincount(org, weights=req.prompt_tokens[a:upto] + req.output_tokens[a:upto], minlength=R)
            backlog = np.zeros(R)
            qlen = np.zeros(R)
            busy = np.zeros(R)
            warm = np.zeros((R, M))
            for s in range(S):
                r = region[s]
                b = bu[s] - t0
                if b > 0:
                    backlog[r] += b
                qs = qd[s]
                h = qh[s]
                k = len(qs)
                while k > h and qs[k - QW + Q_RDY] > t0:  # joined at routing time, still travelling
                    k -= QW
                qlen[r] += (k - h) // QW
                if nact[s]:
                    busy[r] += 1
                if tailm[s] >= 0:
                    warm[r, tailm[s]] += 1
            if win:  # requests held in a batch window wait in their region too
                for r in range(R):
                    qlen[r] += len(pend[r])
            hour = (world.start_hour_of_year + int((t0 + 0.5 * slot_s) // 3600)) % world.price_usd_per_mwh.shape[1]
            state = SlotState(
                slot=slot, t_start_s=t0, slot_s=slot_s,
                demand_requests=dem_n, demand_tokens=dem_tok.astype(float),  # int64 when the slot had no arrivals
                backlog_s=backlog, queue_len=qlen, busy_servers=busy,
                servers=np.asarray([len(x) for x in T.servers_in_region], dtype=float), warm_servers=warm,
                price_usd_per_mwh=np.asarray(world.price_usd_per_mwh[:, hour], dtype=float),
                carbon_g_per_kwh=np.asarray(world.carbon_g_per_kwh[:, hour], dtype=float),
                latency_ms=np.asarray(world.latency_ms, dtype=float), prev_plan=prev_plan[0])
            c0 = time.perf_counter()
            plan = policy.plan(state)
            stats.planner_s += time.perf_counter() - c0
            stats.plan_calls += 1
            if plan is None:
                if kind_ll and not on[0]:
                    build(True)
                has_plan[0] = None
                prev_plan[0] = None
            else:
                if kind_ll and not on[1]:
                    build(False)
                plan = validate_plan(plan, R, M)
                prev_plan[0] = plan
                cum = np.cumsum(plan, axis=-1)
                cum[..., -1] = 2.0
                if plan.ndim == 2:  # one row per origin, shared by every model
                    has_plan[0] = [[row] * M for row in cum.tolist()]
                else:
                    has_plan[0] = [[cum[m, o].tolist() for m in range(M)] for o in range(R)]
            if self.plan_sink is not None:
                self.plan_sink(state, plan)

        def flush_slot(slot, t0, t1, t_next):
            """Hand the slot [t0, t1) to the slot sink (t1: the slot's end, or the run's end inside it) and
            start the accumulators of the next slot, which ends at t_next (None: the run ended)."""
            rest = [0.0] * S
            cut = span[1] - t1  # > 0 when the run ends inside the slot: drop the projection past t1
            for s in range(S):
                if cut:
                    accs[st[s]][s] -= cut
                    bint[s] -= nact[s] * cut
                    if kv[s]:
                        kint[s] -= kv[s] / cap_cur[s] * cut
                if st[s] == DECODE:  # split the fluid's progress at the boundary
                    V[s] += (t1 - vt[s]) / itv[s]
                    vt[s] = t1
                ks = fk[s]
                if ks:  # decode iterations its running requests have left: the next slot's work
                    rest[s] = (-sum(ks) - len(ks) * V[s]) * ty_cur[s].c_decode_s
                    work[s] -= rest[s]
            dur = t1 - t0
            if dur > 0:
                def clean(a):  # kept by difference: a true zero may come out as -1e-13
                    a = np.asarray(a, dtype=np.float64)
                    if debug:  # anything more negative than rounding is a bookkeeping error
                        assert not len(a) or a.min() >= -1e-9 * max(1.0, span[1] - span[0]), (slot, a.min())
                    return np.maximum(a, 0.0)
                self.slot_sink(slot, t0, dur, dict(
                    idle_s=clean(a_idle), prefill_s=clean(a_pre), decode_s=clean(a_dec),
                    loading_s=clean(a_load), batch_int=clean(bint), kv_int=clean(kint),
                    switches=np.asarray(sw, dtype=np.int64), work_s=clean(work)))
            if t_next is None:
                return
            span[0], span[1] = t1, t_next
            length = t_next - t1
            for s in range(S):
                a_idle[s] = a_pre[s] = a_dec[s] = a_load[s] = 0.0
                work[s] = rest[s]
                accs[st[s]][s] = length
                bint[s] = nact[s] * length
                kint[s] = kv[s] / cap_cur[s] * length if kv[s] else 0.0
                sw[s] = 0

        # arrival stream cursor
        n_req = len(req)
        pos = 0
        A_t = A_p = A_o = A_org = A_m = A_u = []
        base = 0
        i = n = 0

        def load_chunk(pos):
            e = min(pos + chunk, n_req)
            return (req.arrival_s[pos:e].tolist(), pos,
                    req.prompt_tokens[pos:e].tolist(), req.output_tokens[pos:e].tolist(),
                    req.origin[pos:e].tolist(), req.model[pos:e].tolist(), rng.random(e - pos).tolist())

        if n_req:
            A_t, base, A_p, A_o, A_org, A_m, A_u = load_chunk(0)
            n = len(A_t)
            pos = n
        ta = A_t[0] if n else INF
        slot = 0
        t_slot0 = 0.0
        ts = slot_s
        do_plan(0, 0.0, 0)
        if debug:
            log.append((0.0, EV_SLOT, -1))
        cum = has_plan[0]
        now = 0.0
        last = 0.0
        prog = self.progress

        while True:
            th = heap[0][0]
            if ts <= th and ts <= ta:
                if th == INF and ta == INF:
                    break
                flush_slot(slot, t_slot0, ts, slot_s * (slot + 2))
                slot += 1
                t_slot0 = ts
                now = ts
                do_plan(slot, ts, base + i)
                cum = has_plan[0]
                ts = slot_s * (slot + 1)
                if debug:
                    assert now >= last
                    last = now
                    log.append((now, EV_SLOT, -1))
                continue
            if th <= ta:
                now, _, kind, x, v = heappop(heap)
                if kind == EV_DECODE:
                    if v != dver[x]:
                        continue
                    s = x
                    dnx[s] = INF
                    if st[s] == DECODE:  # else paused by a prefill: whoever resumes it schedules anew
                        ks = fk[s]
                        Vn = -ks[-1]
                        ty = ty_cur[s]
                        Vs = V[s] + (now - vt[s]) / itv[s]
                        if Vn - Vs > 1e-9 + 1e-12 * Vn:  # early: the batch changed since scheduling
                            V[s] = Vs
                            vt[s] = now
                            t = now + (Vn - Vs) * itv[s]
                            dv = dver[s] + 1
                            dver[s] = dv
                            dnx[s] = t
                            heappush(heap, (t, nxt(), EV_DECODE, s, dv))
                        else:  # the requests at the head of fk[s] finish now
                            V[s] = Vn
                            vt[s] = now
                            lim = -(Vn + 1e-9)
                            rs = region[s]
                            fds = fd[s]
                            kvf = 0.0  # KV freed
                            k = 0  # requests finished
                            while ks and ks[-1] >= lim:
                                ks.pop()
                                j = len(fds) - FW
                                rid, res, pr, vj, adm, ft = unpack_row(fds, 8 * j)
                                del fds[j:]
                                kvf += res
                                k += 1
                                sp[s] -= pr
                                svj[s] -= vj
                                add_done(put_done(rid, rs, s, adm, ft, now, 0))
                            nd += k
                            kv[s] -= kvf
                            nact[s] -= k
                            left = ts - now  # time to the slot's end (the accumulators are kept by difference)
                            bint[s] -= k * left
                            kint[s] -= kvf / cap_cur[s] * left
                            if nd >= chunk:  # hand full chunks to the sink where completions are added
                                flush_done(nd)
                                nd = 0
                            if qd[s] and kick(s, now):
                                pass
                            elif ks:  # keep decoding: sched_decode inlined
                                b = len(ks)
                                ctx = (sp[s] + b * Vn - svj[s]) / b
                                it = ty.dec_cache.get(((int(ctx) >> DSHIFT) << 16) | b) or ty.decode_s(b, ctx)
                                itv[s] = it
                                t = now + (-ks[-1] - Vn) * it  # no outstanding event: it just fired
                                dv = dver[s] + 1
                                dver[s] = dv
                                dnx[s] = t
                                heappush(heap, (t, nxt(), EV_DECODE, s, dv))
                            else:
                                a_dec[s] -= left
                                a_idle[s] += left
                                st[s] = IDLE
                                if not qd[s]:
                                    drained(s, now)
                elif kind == EV_PREFILL:
                    s = x
                    left = ts - now
                    a_pre[s] -= left
                    batch = pre[s]
                    pre[s] = None
                    Vs = V[s]
                    vt[s] = now
                    ks = fk[s]
                    fds = fd[s]
                    adm = padm[s]
                    freed = False
                    its = 0.0  # decode iterations the batch will run
                    for rid, _, p, o, _, res in ROW6.iter_unpack(batch):
                        if o <= 1:
                            freed = True
                            kv[s] -= res
                            nact[s] -= 1
                            bint[s] -= left
                            kint[s] -= res / cap_cur[s] * left
                            add_done(put_done(rid, region[s], s, adm, now, now, 0))
                            nd += 1
                        else:
                            nk = -(Vs + (o - 1))
                            k = bisect_right(ks, nk)
                            if k and ks[k - 1] == nk:  # ties: the smaller request position finishes first
                                while k and ks[k - 1] == nk and fds[FW * (k - 1)] < rid:
                                    k -= 1
                            ks.insert(k, nk)
                            pack_row_into(fw, 0, rid, res, p, Vs, adm, now)
                            k *= FW
                            fds[k:k] = fw
                            sp[s] += p
                            svj[s] += Vs
                            its += o - 1
                    work[s] += its * ty_cur[s].c_decode_s
                    if freed and nd >= chunk:
                        flush_done(nd)
                        nd = 0
                    if ks:
                        a_dec[s] += left
                        st[s] = DECODE
                        qs = qd[s]
                        if not (qs and (freed or qs[qh[s]] != full[s]) and kick(s, now)):
                            b = len(ks)
                            ty = ty_cur[s]
                            ctx = (sp[s] + b * Vs - svj[s]) / b
                            it = ty.dec_cache.get(((int(ctx) >> DSHIFT) << 16) | b) or ty.decode_s(b, ctx)
                            itv[s] = it
                            t = now + (-ks[-1] - Vs) * it
                            if t < dnx[s]:  # else the outstanding event wakes up early and reschedules
                                dv = dver[s] + 1
                                dver[s] = dv
                                dnx[s] = t
                                heappush(heap, (t, nxt(), EV_DECODE, s, dv))
                    else:
                        a_idle[s] += left
                        st[s] = IDLE
                        if qd[s]:
                            kick(s, now)
                        else:
                            drained(s, now)
                elif kind == EV_WAKE:
                    s = x
                    if now != wk[s]:  # superseded by an earlier wake-up
                        continue
                    wk[s] = INF
                    y = st[s]
                    if y == IDLE or y == DECODE:
                        kick(s, now)
                elif kind == EV_NET:
                    s = v
                    if s < 0:
                        s = choose(x, x[REG], now)
                    join(x, s, now, now)
                elif kind == EV_LOAD:
                    s = x
                    left = ts - now
                    a_load[s] -= left
                    a_idle[s] += left
                    st[s] = IDLE
                    settle(s, now)
                elif kind == EV_HOLD:
                    s = hold(x, now)
                else:  # EV_BATCH
                    s = close_window(x, now) if v == wver[x] else -1
                if debug:
                    assert now >= last, (now, last)
                    last = now
                    log.append((now, kind, s))
                    if s >= 0:
                        check(s, now)
            else:
                now = ta
                o = A_org[i]
                m = A_m[i]
                p = A_p[i]
                out = A_o[i]
                rec = None  # built only where a record is needed (not on the built-in allocators' fast path)
                s = -1
                if p > fmax[m]:
                    add_done(put_done(base + i, -1, -1, NAN, NAN, NAN, 1 if fmax[m] > 0 else 2))
                    nd += 1
                    if nd >= chunk:
                        flush_done(nd)
                        nd = 0
                elif win:
                    route([base + i, o, m, p, out, now, -1], cum, A_u[i], now)
                elif cum is None:
                    if kind_ll:  # fast path of choose(rec, None, now): warm fleet-wide least-loaded
                        h = wG[m]
                        w = INF
                        while h:
                            e = h[0]
                            if e[2] == hv[e[1]]:
                                s = e[1]
                                w = e[0] - now
                                break
                            heappop(h)
                        if multi and w > min_load[m] and s >= 0:  # could a cold server win?
                            if not cold_on[m]:
                                build_cold(m)
                            hc = cheap[G][m]
                            while hc:
                                ec = hc[0]
                                if ec[2] == hv[ec[1]]:
                                    wc = ec[0] - now
                                    if (wc if wc > 0.0 else 0.0) + tyof[ec[1]][m].load_s < w:
                                        s = -1  # yes: the general path decides
                                    break
                                heappop(hc)
                        # an idle least-loaded server (w <= 0) goes to the nearest-idle search of
                        # choose() only if drained servers are recorded for m (nent)
                        if s >= 0 and (w > 0.0 or not (nent[m] and latency_aware)) and (
                                p <= fmin[m] or capm[s][m] >= p):
                            ty = tyof[s][m]
                            # book(): busy from max(busy-until, now); the tail model is m
                            b = (e[0] if w > 0.0 else now) + p * ty.c_prefill_s + out * ty.c_decode_s
                            bu[s] = b
                            v = hv[s] + 1
                            hv[s] = v
                            e = (b, s, v)
                            heapreplace(h, e)
                            if nocold[0]:
                                for mm in ocold[s]:
                                    push(cheap[G][mm], e, s)
                            if on[1]:
                                r = region[s]
                                push(wheap[r][m], e, s)
                                if nocold[0]:
                                    for mm in ocold[s]:
                                        push(cheap[r][mm], e, s)
                        else:
                            rec = [base + i, o, m, p, out, now, -1]
                            s = choose(rec, None, now)
                    else:
                        rec = [base + i, o, m, p, out, now, -1]
                        s = choose(rec, None, now)
                    r = region[s]
                    d = lat[o][r]
                    if prejoin:  # join(rec, s, now, now + d) inlined for the common cases
                        tr = now + d
                        qs = qd[s]
                        if qs and qlast[s] > tr:  # overtakes a request still travelling: the general path
                            if rec is None:
                                rec = [base + i, o, m, p, out, now, -1]
                            rec[REG] = r
                            join(rec, s, now, tr)
                        else:
                            res = p + out
                            c = capm[s][m]
                            head = not qs
                            qs.frombytes(pack_row(base + i, m, p, out, tr, res if res <= c else c))
                            qlast[s] = tr
                            if head:
                                x = st[s]
                                if x == IDLE or x == DECODE:
                                    if tr <= now:
                                        kick(s, now)
                                    elif tr < wk[s]:
                                        wk[s] = tr
                                        heappush(heap, (tr, nxt(), EV_WAKE, s, 0))
                    else:
                        rec[REG] = r
                        if d > 0.0:
                            heappush(heap, (now + d, nxt(), EV_NET, rec, s))
                        else:
                            join(rec, s, now, now)
                else:
                    rec = [base + i, o, m, p, out, now, -1]
                    r = bisect_right(cum[o][m], A_u[i])
                    if rcap[r][m] < p or not rcap[r][m]:  # region cannot serve it: nearest that can
                        for r in near[o][m]:
                            if rcap[r][m] >= p:
                                break
                    rec[REG] = r
                    d = lat[o][r]
                    if d > 0.0:
                        heappush(heap, (now + d, nxt(), EV_NET, rec, -1))
                    else:
                        s = choose(rec, r, now)
                        join(rec, s, now, now)
                if debug:
                    assert now >= last, (now, last)
                    last = now
                    log.append((now, EV_ARRIVAL, s))
                    if s >= 0:
                        check(s, now)
                i += 1
                if i >= n:
                    if prog is not None:
                        prog(pos)
                    if pos < n_req:
                        A_t, base, A_p, A_o, A_org, A_m, A_u = load_chunk(pos)
                        n = len(A_t)
                        pos += n
                        i = 0
                        ta = A_t[0]
                    else:
                        ta = INF
                else:
                    ta = A_t[i]
        flush_slot(slot, t_slot0, now, None)
        if nd:
            flush_done(nd)
        stats.end_s = now
        # every arrival and every heap entry (stale ones too) is one event; the loop ends with only the
        # sentinel left, so the entries pushed (the sequence counter) are the entries popped
        stats.events = n_req + nxt()
        return stats
