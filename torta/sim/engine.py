"""The discrete-event engine and cluster model (the hot loop).

Structure. `FleetState` holds the live state of every server as named per-server lists and
`SlotAccounts` the slot's accounting integrals; one heap of `(time_s, seq, kind, x, v)` tuples with a
per-engine sequence counter (`seq` breaks time ties in push order, so runs are deterministic) holds the
pending events; no module-level state. The sorted arrival stream is *merged* with the heap (a cursor
over arrays, converted to Python lists a chunk at a time) instead of pushing every arrival, and slot
boundaries are a third merged stream. Ties at one instant: slot boundary first, then heap events in push
order, then arrivals. `Engine.run(until_s=...)` processes every event before `until_s` and can be called
again with a later time: it continues exactly where it stopped (running to the end in steps gives the
same completions, byte for byte, as one call). Each event kind has one named handler:
arrival and network arrival (`torta.sim.routing`), prefill done, decode done, model loaded and wake-up
(`torta.sim.servers`), reaching a region's batch window and the window closing (`torta.sim.routing`),
the slot boundary (`Engine._boundary`: accounting and the policy's plan). The built-in allocators'
choices live in `torta.allocator.builtin`; a Python allocator is called through the same interface
(`AllocatorOps`) and sees the live state through `FleetView`.

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
(`Engine._flush_slot` removes the projection past the run's end and carries running decodes' work over).
"""

from __future__ import annotations

import gc
import itertools
import math
import struct
import time
from array import array
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Callable

import numpy as np

from torta.allocator.builtin import round_robin, warm_least_loaded
from torta.allocator.power_of_d import power_of_d
from torta.policy.base import PowerOfDLeastLoaded, RoundRobinAllocator, SlotState, WarmLeastLoaded, validate_plan
from torta.sim.cluster import FleetTables
from torta.sim.infomodel import ControlPlane, GatewayView, gateway_least_loaded
from torta.sim.prefix import DEFAULT_BLOCK_TOKENS, PrefixCaches
from torta.sim.routing import python_allocator, routing_handlers
from torta.sim.servers import (DECODE, EV_ARRIVAL, EV_BATCH, EV_DECODE, EV_HOLD, EV_LOAD, EV_NET, EV_PREFILL,
                               EV_REPORT, EV_SLOT, EV_WAKE, FW, IDLE, LOADING, PREFILL, Q_MOD, Q_RDY, Q_RES, QW,
                               server_handlers)

INF = math.inf
ROW6 = struct.Struct("6d")  # packs/unpacks a queue or running row in one call (cheaper than six item accesses)
DONE = struct.Struct("7d")  # a completion: position, region, server, admitted_s, first_token_s, finish_s, drop code
DROP_REASONS = ("", "prompt_exceeds_kv", "no_server_for_model")
__all__ = ["DROP_REASONS", "Engine", "EngineConfig", "EngineStats", "FleetState", "FleetView", "RequestArrays",
           "SlotAccounts", "DECODE", "IDLE", "LOADING", "PREFILL", "EV_NET", "EV_PREFILL", "EV_DECODE", "EV_LOAD",
           "EV_WAKE", "EV_HOLD", "EV_BATCH", "EV_ARRIVAL", "EV_SLOT", "QW"]


def queue_array() -> array:
    """A server's empty queue array (a function so tests can inject faults into queue bookkeeping)."""
    return array("d")


@dataclass(frozen=True)
class EngineConfig:
    max_prefill_tokens: int = 8192  # vLLM's default max_num_batched_tokens without chunking is similar
    chunk_requests: int = 65536  # arrivals converted to Python lists this many at a time
    debug: bool = False  # assert invariants after every event and keep an event log
    state_refresh_s: float = 0.0
    """The control-plane information model's report interval (torta.sim.infomodel); 0: the oracle,
    instant global state (no model at all)."""
    prefix_cache: bool | None = None
    """The per-server prefix (KV) cache (torta.sim.prefix): None = on when the requests carry block ids
    (`RequestArrays.block_ids`), off otherwise; True = on (an error without block ids); False = off."""
    block_tokens: int = DEFAULT_BLOCK_TOKENS  # tokens per prefix block (Mooncake's hash_ids: 512)


@dataclass
class RequestArrays:
    """Requests as numpy arrays sorted by arrival_s (models and origins as dense indices)."""

    request_id: np.ndarray  # int64
    arrival_s: np.ndarray  # float64, non-decreasing
    prompt_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64
    origin: np.ndarray  # int, index into World.regions
    model: np.ndarray  # int, index into World.models
    # prefix blocks (torta.sim.prefix): request k's block ids are block_ids[block_offsets[k]:block_offsets[k + 1]]
    block_ids: np.ndarray | None = None  # int64, flat; None: no request carries block ids
    block_offsets: np.ndarray | None = None  # int64, len(requests) + 1

    def __len__(self) -> int:
        return len(self.arrival_s)


@dataclass
class EngineStats:
    end_s: float = 0.0
    events: int = 0
    plan_calls: int = 0
    planner_s: float = 0.0
    event_log: list = field(default_factory=list)  # debug only: (time_s, kind, server)


class FleetState:
    """Live state of every server: one list per field, indexed by server id.

    Queues: `queue[s]` holds one row of QW doubles per waiting request (position, model, prompt and
    output tokens, time it reaches s, KV reservation; `torta.sim.servers.Q_*`) from offset
    `queue_head[s]` on; consumed rows are dropped in bulk and an emptied queue is cleared at once, so
    `queue[s]` is truthy iff requests wait. Rows rather than request objects: the head a server admits
    queued long ago, and a row is one or two cache lines with the next rows admitted beside it.
    Running (decoding) requests: `finish_keys[s]` holds the negated finish counters V0 + output - 1
    ascending (the next to finish is last: pop() is O(1)); equal keys: the smaller position finishes
    first. `running[s]` holds FW doubles per running request in the same order (position, KV
    reservation, prompt tokens, join counter, admitted and first-token times), unboxed, so a completion
    does not chase a request record gone cold while it queued."""

    def __init__(self, tables: FleetTables) -> None:
        S, stype, types = tables.n_servers, tables.stype, tables.types
        self.loaded_model = [m if stype[s][m] >= 0 else -1 for s, m in enumerate(tables.initial_model)]
        self.tail_model = list(self.loaded_model)  # the model each server holds once its queue drains
        self.perf = [types[stype[s][self.loaded_model[s]]] if self.loaded_model[s] >= 0 else None
                     for s in range(S)]  # TypePerf of the loaded model
        self.kv_capacity = [ty.kv_cap if ty else 0 for ty in self.perf]  # of the loaded model, tokens
        self.max_batch = [ty.max_batch if ty else 0 for ty in self.perf]
        self.phase = [IDLE] * S  # IDLE, PREFILL, DECODE or LOADING
        self.queue = [queue_array() for _ in range(S)]
        self.queue_head = [0] * S  # offset of the first waiting row in queue[s]
        self.queue_last_ready_s = [0.0] * S  # arrival at s of the last row of queue[s] (while not empty)
        self.finish_keys = [array("d") for _ in range(S)]
        self.running = [array("d") for _ in range(S)]
        self.prefill_batch: list = [None] * S  # the running prefill's rows, sliced out of queue[s]
        self.prefill_admitted_s = [0.0] * S  # when the running prefill's batch was admitted
        # the position of the queue head a prefill's admission stopped at for want of KV or batch room
        # (None: it stopped for another reason); unless that head changed or the prefill freed room, it
        # cannot start next
        self.blocked_head: list = [None] * S
        self.decode_counter = [0.0] * S  # the fluid decode's virtual iteration counter V
        self.counter_time_s = [0.0] * S  # when decode_counter was last brought up to date
        self.iteration_s = [1.0] * S  # seconds per decode iteration at the current batch and context
        self.decoding_prompt_tokens = [0] * S  # sum of prompt tokens of the decoding requests
        self.decoding_join_sum = [0.0] * S  # sum of the decoding requests' join counters
        self.kv_reserved = [0] * S  # KV tokens reserved by admitted requests
        self.batch_size = [0] * S  # admitted requests (prefilling or decoding)
        self.decode_version = [0] * S  # version of the outstanding decode event (older ones are stale)
        self.decode_next_s = [INF] * S  # time of the outstanding decode event (INF: none)
        self.wake_s = [INF] * S  # outstanding wake-up for a request still travelling to s (INF: none)
        self.busy_until_s = [0.0] * S  # expected busy-until time (`torta.sim.cluster`)


class SlotAccounts:
    """Per-slot, per-server integrals, kept *by difference*: each holds its integral from the slot's
    start to its end as if nothing changed after the last event, so a change at `now` of a state, a
    batch size or a KV occupancy adds (new - old) x (slot end - now), and events that change none of
    them cost nothing. `span` = [slot start, slot end]. `work_s`: expected-work seconds of tokens
    processed (the utilisation numerator); a request's whole decode is added when it starts decoding
    and what is left of it at the slot's end moves to the next slot."""

    def __init__(self, n_servers: int, slot_s: float) -> None:
        S = n_servers
        self.span = [0.0, slot_s]
        self.idle_s, self.prefill_s, self.decode_s, self.loading_s = [slot_s] * S, [0.0] * S, [0.0] * S, [0.0] * S
        self.by_phase = [self.idle_s, self.prefill_s, self.decode_s, self.loading_s]  # indexed by phase
        self.batch_int = [0.0] * S  # integral of the batch size
        self.kv_int = [0.0] * S  # integral of KV occupancy (reserved / capacity)
        self.switches = [0] * S
        self.work_s = [0.0] * S


class _QueueLengths:
    """Read-only sequence of the servers' queue lengths: requests that reached the server by the view's
    `now_s` and wait (not yet admitted). Requests placed at routing time and still travelling sit at the
    queue's end (it is ordered by time of reaching the server) and are not counted."""

    __slots__ = ("_queues", "_heads", "_view")

    def __init__(self, queues: list, heads: list, view) -> None:
        self._queues, self._heads, self._view = queues, heads, view

    def __len__(self) -> int:
        return len(self._queues)

    def __getitem__(self, server: int) -> int:
        qs, h, now = self._queues[server], self._heads[server], self._view.now_s
        k = len(qs)
        while k > h and qs[k - QW + Q_RDY] > now:
            k -= QW
        return (k - h) // QW


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
    - `queue_lengths`: requests waiting in each server's queue, not counting those still travelling to
      it (a read-only sequence);
    - `now_s`: the current simulated time.

    The methods below give the same per server, plus table facts (capacities, work, latencies) and, with
    the prefix cache on, `cached_prefix_tokens(server, request)`."""

    def __init__(self, tables: FleetTables, *, busy_until_s: list, loaded_models: list, tail_models: list,
                 batch_sizes: list, kv_reserved_tokens: list, queues: list, queue_heads: list,
                 prefix: PrefixCaches | None = None) -> None:
        self.tables = tables
        self._prefix = prefix
        self._busy_until_s, self._loaded, self._tail = busy_until_s, loaded_models, tail_models
        self._batch, self._kv = batch_sizes, kv_reserved_tokens
        self._qlen = _QueueLengths(queues, queue_heads, self)
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

    def region_state(self, region: int) -> tuple:
        """(busy_until_s, tail_models, batch_sizes) as seen for `region`'s servers: live state here, the
        current gateway's perception under the information model (`torta.sim.infomodel.GatewayView`)."""
        return self._busy_until_s, self._tail, self._batch

    @property
    def prefix_cache(self) -> bool:
        """Whether the replay runs the prefix cache (torta.sim.prefix)."""
        return self._prefix is not None

    def cached_prefix_tokens(self, server: int, request) -> int:
        """Prompt tokens of `request` (a RequestInfo) the server's prefix cache holds now: the prefill its
        admission there would skip if nothing changed before (0 without the cache or block ids). The live
        cache, also under the information model (a simplification: caches are not in the load reports)."""
        pc = self._prefix
        if pc is None or not request.prefix_blocks:
            return 0
        return pc.cached_for(server, request.prefix_blocks, request.prompt_tokens)

    def kv_used_tokens(self, server: int) -> int:
        return int(self._kv[server])

    def kv_capacity_tokens(self, server: int, model: int) -> int:
        t = self.tables.stype[server][model]
        return self.tables.types[t].kv_cap if t >= 0 else 0

    def work_s(self, server: int, model: int, prompt_tokens: int, output_tokens: int) -> float:
        """Expected server-seconds of work for a request (the backlog estimate's unit)."""
        ty = self.tables.types[self.tables.stype[server][model]]
        return ty.work_s(prompt_tokens, output_tokens)

    def load_s(self, server: int, model: int) -> float:
        return self.tables.types[self.tables.stype[server][model]].load_s

    def latency_s(self, origin: int, region: int) -> float:
        return self.tables.latency_s[origin][region]


class Engine:
    """Runs one replay. `sink(batch)` receives finished/dropped requests in chunks (a dict of flat
    numpy arrays: index into `req`, region, server, admitted_s, first_token_s, finish_s, drop code);
    `slot_sink(slot, t0, dur, arrays)` receives per-slot, per-server accounting; `plan_sink(state,
    plan)` (optional) receives every slot's `SlotState` and the plan applied to it: the validated
    (R, R) or (M, R, R) array, or None for a slot without a plan.

    `run(req)` replays everything; `start(req)` then `run(until_s=t)` (repeatedly, t increasing)
    replays in steps: each call processes every event before t and returns; `finished` tells when
    the replay is over (the last call may pass `until_s=math.inf`)."""

    def __init__(self, world, tables: FleetTables, policy, *, seed: int, sink: Callable,
                 slot_sink: Callable, cfg: EngineConfig = EngineConfig(),
                 progress: Callable[[int], None] | None = None, plan_sink: Callable | None = None) -> None:
        self.world, self.tables, self.policy, self.seed = world, tables, policy, seed
        self.sink, self.slot_sink, self.cfg, self.progress = sink, slot_sink, cfg, progress
        self.plan_sink = plan_sink
        self.stats = EngineStats()
        self.started = self.finished = False

    # ------------------------------------------------------------------------------------------
    def run(self, req: RequestArrays | None = None, *, until_s: float = INF) -> EngineStats:
        """Replay (after `start(req)` when `req` is given) every event before `until_s`."""
        if req is not None:
            self.start(req)
        elif not self.started:
            raise RuntimeError("Engine.run: no requests (pass them, or call start(req) first)")
        if self.finished:
            return self.stats
        # The loop allocates millions of small acyclic lists/tuples; the cyclic GC would rescan every
        # in-flight request over and over (quadratic under overload). Nothing here forms cycles.
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._loop(float(until_s))
        finally:
            if enabled:
                gc.enable()
        return self.stats

    @property
    def now_s(self) -> float:
        """The simulated time reached (the last event processed)."""
        return self._cursor[3] if self.started else 0.0

    def start(self, req: RequestArrays) -> None:
        """Build the state for replaying `req` (nothing runs yet)."""
        if self.started:
            raise RuntimeError("Engine.start: this engine already ran; use a new one per replay")
        self.started = True
        T, cfg = self.tables, self.cfg
        slot_s = float(self.world.slot_s)
        if not (slot_s > 0 and math.isfinite(slot_s)):  # the slot integrals are kept relative to slot ends
            raise ValueError(f"World.slot_s must be a finite number of seconds > 0, got {slot_s}")
        self.slot_s, self.req = slot_s, req
        self.fleet = f = FleetState(T)
        self.acc = SlotAccounts(T.n_servers, slot_s)
        self.heap: list = [(INF, -1, -1, -1, 0)]  # a sentinel that is never popped: heap[0] always exists
        self.nxt = itertools.count().__next__
        self.rng = np.random.default_rng(self.seed)
        # completions, in completion order, as DONE rows of doubles, handed to the sink per chunk
        self.done = array("d")
        self.chunk_doubles = DONE.size // 8 * cfg.chunk_requests
        self.put_done = DONE.pack
        self.pack_row, self.pack_row_into, self.unpack_row, self.iter_rows = (ROW6.pack, ROW6.pack_into,
                                                                              ROW6.unpack_from, ROW6.iter_unpack)
        self.kv_cap_of = [[T.types[t].kv_cap if t >= 0 else 0 for t in row] for row in T.stype]
        self.prefix = self._prefix_caches(req)
        self.cache_affinity = None  # (R, R) token hit rate of the last slot by (origin, region); cache on only
        self.view = FleetView(T, busy_until_s=f.busy_until_s, loaded_models=f.loaded_model,
                              tail_models=f.tail_model, batch_sizes=f.batch_size, kv_reserved_tokens=f.kv_reserved,
                              queues=f.queue, queue_heads=f.queue_head, prefix=self.prefix)
        refresh = float(cfg.state_refresh_s)
        if not (math.isfinite(refresh) and refresh >= 0.0):
            raise ValueError(f"state_refresh_s must be a finite number of seconds >= 0, got {cfg.state_refresh_s}")
        self.control_plane = cp = ControlPlane(f, T, refresh) if refresh > 0 else None
        if cp is not None:  # allocators see what their gateway perceives (torta.sim.infomodel)
            self.view = GatewayView(self.view, cp)
        alloc = self.policy.allocator
        self.builtin_alloc = isinstance(alloc, (WarmLeastLoaded, RoundRobinAllocator))
        if isinstance(alloc, WarmLeastLoaded):
            self.alloc = base = warm_least_loaded(f, T, self.world, bool(getattr(alloc, "latency_aware", True)))
            if cp is not None:
                self.alloc = gateway_least_loaded(self.alloc, f, T, cp)
            if isinstance(alloc, PowerOfDLeastLoaded):  # d random warm candidates, the least loaded wins
                seed = int(np.random.default_rng([*np.atleast_1d(self.seed).tolist(), 17]).integers(1 << 62))
                self.alloc = power_of_d(base, self.alloc.choose, f, T, cp, alloc.d, seed)
        elif isinstance(alloc, RoundRobinAllocator):
            self.alloc = round_robin(f, T, cp)  # warm-preferring; remote state as the gateway perceives it
        else:
            self.alloc = python_allocator(self, alloc)
        # batch-window allocators (torta.policy.base.BatchAllocator, torta.sim.routing)
        win = 0.0 if self.builtin_alloc else float(getattr(alloc, "batch_window_s", 0.0) or 0.0)
        if not (math.isfinite(win) and win >= 0.0):
            raise ValueError(f"allocator {type(alloc).__name__}: batch_window_s must be finite and >= 0, got {win}")
        wmax = int(getattr(alloc, "batch_max_requests", 0) or 0) if win else 0
        self.window_s, self.window_max = win, (wmax if wmax > 0 else 1 << 62)
        self.held: list = [[] for _ in range(T.n_regions)]  # requests held in each region's window
        self.servers = server_handlers(self)
        self.routing = routing_handlers(self, self.servers)
        self.prev_plan = None
        self.demand_from = 0  # position of the first arrival not yet counted in a slot's demand
        if cp is not None:  # the first report at t = 0; each one schedules the next (_loop)
            heappush(self.heap, (0.0, self.nxt(), EV_REPORT, -1, 0))
        n_req = len(req)
        chunk = self._chunk(0) if n_req else ([], 0, [], [], [], [], [])
        # the loop's cursor between run() calls: slot, its start, next boundary, now, arrival cursor
        # (index in the chunk, chunk length, the chunk's lists, first position of the next chunk),
        # next arrival time, and the last event time (debug)
        n = len(chunk[0])
        self._cursor = (-1, 0.0, 0.0, 0.0, 0, n, chunk, n, chunk[0][0] if n else INF, 0.0)

    def _prefix_caches(self, req: RequestArrays) -> PrefixCaches | None:
        """The servers' prefix caches when the cache is on (`EngineConfig.prefix_cache`), else None."""
        use = self.cfg.prefix_cache
        if use is False or (use is None and req.block_ids is None):
            return None
        if req.block_ids is None or req.block_offsets is None:
            raise ValueError("prefix_cache is on but the requests carry no prefix block ids (a hash_ids column, "
                             "e.g. a Mooncake trace or `torta traces conversations`); expected block ids or "
                             "prefix_cache off")
        T = self.tables
        if len(req.block_offsets) != len(req) + 1:
            raise ValueError(f"block_offsets has {len(req.block_offsets)} entries; expected {len(req) + 1}")
        return PrefixCaches(T.n_servers, T.n_regions, int(self.cfg.block_tokens), req.block_ids,
                            req.block_offsets, req.origin, T.region, req.prompt_tokens)

    def _chunk(self, pos: int) -> tuple:
        """Arrivals [pos, pos + chunk) as Python lists: times, pos, prompt, output, origin, model, draws."""
        req = self.req
        e = min(pos + self.cfg.chunk_requests, len(req))
        return (req.arrival_s[pos:e].tolist(), pos, req.prompt_tokens[pos:e].tolist(),
                req.output_tokens[pos:e].tolist(), req.origin[pos:e].tolist(), req.model[pos:e].tolist(),
                self.rng.random(e - pos).tolist())

    def _loop(self, until: float) -> None:
        """The event loop: merge slot boundaries, heap events and arrivals in time order until the next
        event is at or after `until` (or none is left: the replay finishes)."""
        heap, debug, log, prog, n_req = self.heap, self.cfg.debug, self.stats.event_log, self.progress, len(self.req)
        slot, t_slot0, ts, now, i, n, chunk, pos, ta, last = self._cursor
        A_t, base, A_p, A_o, A_org, A_m, A_u = chunk
        # handlers and the two version lists bound to locals: the hot path (one call per event)
        srv, rt = self.servers, self.routing
        on_decode_done, on_prefill_done, on_wake, on_model_loaded = (srv.on_decode_done, srv.on_prefill_done,
                                                                     srv.on_wake, srv.on_model_loaded)
        on_arrival, on_network_arrival = rt.on_arrival, rt.on_network_arrival
        on_window_reached, on_window_closed = rt.on_window_reached, rt.on_window_closed
        dver, wk = self.fleet.decode_version, self.fleet.wake_s
        check = self.check
        tb = ts if ts < until else until  # the next boundary, or the stop
        while True:
            th = heap[0][0]
            if tb <= th and tb <= ta:
                if slot >= 0 and th == INF and ta == INF:
                    self._finish(slot, t_slot0, now)
                    break
                if ts >= until:
                    break
                slot, t_slot0, now = self._boundary(slot, t_slot0, ts, base + i)
                ts = self.slot_s * (slot + 1)
                tb = ts if ts < until else until
                if debug:
                    assert now >= last
                    last = now
                    log.append((now, EV_SLOT, -1))
                continue
            if th <= ta:
                now, _, kind, x, v = heappop(heap)
                if kind == EV_DECODE:
                    if v != dver[x]:  # stale
                        continue
                    s = on_decode_done(x, now)
                elif kind == EV_PREFILL:
                    s = on_prefill_done(x, now)
                elif kind == EV_WAKE:
                    if now != wk[x]:  # superseded by an earlier wake-up
                        continue
                    s = on_wake(x, now)
                elif kind == EV_NET:
                    s = on_network_arrival(x, now)
                elif kind == EV_LOAD:
                    s = on_model_loaded(x, now)
                elif kind == EV_HOLD:
                    s = on_window_reached(x, now)
                elif kind == EV_REPORT:
                    s = self._report(now, ta)
                else:  # EV_BATCH
                    s = on_window_closed(x, v, now)
                if debug:
                    assert now >= last, (now, last)
                    last = now
                    log.append((now, kind, s))
                    if s >= 0:
                        check(s, now)
            else:
                now = ta
                s = on_arrival(base + i, A_org[i], A_m[i], A_p[i], A_o[i], A_u[i], now)
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
                        chunk = self._chunk(pos)
                        A_t, base, A_p, A_o, A_org, A_m, A_u = chunk
                        n = len(A_t)
                        pos += n
                        i = 0
                        ta = A_t[0]
                    else:
                        ta = INF
                else:
                    ta = A_t[i]
        self._cursor = (slot, t_slot0, ts, now, i, n, chunk, pos, ta, last)

    def _report(self, now: float, next_arrival_s: float) -> int:
        """EV_REPORT: take the load report of `now`; the next one follows while anything is left to
        happen (arrivals, or events other than the sentinel)."""
        cp = self.control_plane
        cp.report(now)
        if next_arrival_s < INF or len(self.heap) > 1:
            heappush(self.heap, (now + cp.refresh_s, self.nxt(), EV_REPORT, -1, 0))
        return -1

    def _finish(self, slot: int, t_slot0: float, now: float) -> None:
        self._flush_slot(slot, t_slot0, now, None)
        if self.done:
            self.flush_done()
        self.finished = True
        self.stats.end_s = now
        # every arrival and every heap entry (stale ones too) is one event; the loop ends with only the
        # sentinel left, so the entries pushed (the sequence counter) are the entries popped
        self.stats.events = len(self.req) + self.nxt()

    def _boundary(self, slot: int, t_slot0: float, ts: float, upto: int) -> tuple[int, float, float]:
        """The slot boundary at ts: close the slot (if one ran) and plan the next; arrivals before
        position `upto` are the closed slot's demand. Returns (slot, its start, now)."""
        if slot >= 0:
            self._flush_slot(slot, t_slot0, ts, self.slot_s * (slot + 2))
        slot += 1
        self._plan(slot, ts, upto)
        return slot, ts, ts

    def flush_done(self) -> None:
        """Hand the buffered completions to the sink."""
        done = self.done
        k = len(done) // 7
        a = np.frombuffer(done, np.float64, 7 * k).reshape(k, 7)
        self.sink(dict(index=a[:, 0].astype(np.int64), region=a[:, 1].astype(np.int64),
                       server=a[:, 2].astype(np.int64), admitted_s=a[:, 3].copy(),
                       first_token_s=a[:, 4].copy(), finish_s=a[:, 5].copy(), drop=a[:, 6].astype(np.int64)))
        del a
        del done[:]

    def slot_state(self, slot: int, t0: float, upto: int) -> SlotState:
        """What the planner sees at the start of `slot` (t0); arrivals [demand_from, upto) are the demand
        of the slot that ended. Reads the state, changes nothing."""
        T, world, req, f = self.tables, self.world, self.req, self.fleet
        R, M = T.n_regions, T.n_models
        a = self.demand_from
        org = req.origin[a:upto]
        dem_n = np.bincount(org, minlength=R).astype(float)
        dem_tok = np.bincount(org, weights=req.prompt_tokens[a:upto] + req.output_tokens[a:upto], minlength=R)
        backlog, qlen, busy, warm = np.zeros(R), np.zeros(R), np.zeros(R), np.zeros((R, M))
        bu, qd, qh, nact, tailm = f.busy_until_s, f.queue, f.queue_head, f.batch_size, f.tail_model
        for s in range(T.n_servers):
            r = T.region[s]
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
        if self.window_s:  # requests held in a batch window wait in their region too
            for r in range(R):
                qlen[r] += len(self.held[r])
        slot_s = self.slot_s
        hour = (world.start_hour_of_year + int((t0 + 0.5 * slot_s) // 3600)) % world.price_usd_per_mwh.shape[1]
        return SlotState(
            slot=slot, t_start_s=t0, slot_s=slot_s,
            demand_requests=dem_n, demand_tokens=dem_tok.astype(float),  # int64 when the slot had no arrivals
            backlog_s=backlog, queue_len=qlen, busy_servers=busy,
            servers=np.asarray([len(x) for x in T.servers_in_region], dtype=float), warm_servers=warm,
            price_usd_per_mwh=np.asarray(world.price_usd_per_mwh[:, hour], dtype=float),
            carbon_g_per_kwh=np.asarray(world.carbon_g_per_kwh[:, hour], dtype=float),
            latency_ms=np.asarray(world.latency_ms, dtype=float), prev_plan=self.prev_plan,
            cache_hit_rate=None if self.cache_affinity is None else self.cache_affinity.copy())

    def pending_slot_state(self) -> SlotState | None:
        """The `SlotState` the policy will see at the next slot boundary, when `run(until_s=boundary)`
        stopped right before it (None otherwise): what an environment stepping per slot observes."""
        if not self.started or self.finished:
            return None
        slot, _, ts, _, i, _, chunk, _, _, _ = self._cursor
        return self.slot_state(slot + 1, ts, chunk[1] + i)

    def _plan(self, slot: int, t0: float, upto: int) -> None:
        """Ask the policy for the plan of the slot starting at t0 and apply it (validated)."""
        state = self.slot_state(slot, t0, upto)
        self.demand_from = upto
        stats = self.stats
        c0 = time.perf_counter()
        plan = self.policy.plan(state)
        stats.planner_s += time.perf_counter() - c0
        stats.plan_calls += 1
        rows = None
        if plan is not None:
            T = self.tables
            plan = validate_plan(plan, T.n_regions, T.n_models)
            cum = np.cumsum(plan, axis=-1)
            cum[..., -1] = 2.0
            if plan.ndim == 2:  # one row per origin, shared by every model
                rows = [[row] * T.n_models for row in cum.tolist()]
            else:
                rows = [[cum[m, o].tolist() for m in range(T.n_models)] for o in range(T.n_regions)]
        self.alloc.on_plan(plan is not None)
        self.prev_plan = plan
        self.routing.set_plan(rows)  # cumulative plan rows per origin and model (rows[o][m]) or None
        if self.plan_sink is not None:
            self.plan_sink(state, plan)

    def _flush_slot(self, slot: int, t0: float, t1: float, t_next: float | None) -> None:
        """Hand the slot [t0, t1) to the slot sink (t1: the slot's end, or the run's end inside it) and
        start the accumulators of the next slot, which ends at t_next (None: the run ended)."""
        f, a, S = self.fleet, self.acc, self.tables.n_servers
        st, nact, kv, cap, V, vt, itv, fk, perf = (f.phase, f.batch_size, f.kv_reserved, f.kv_capacity,
                                                   f.decode_counter, f.counter_time_s, f.iteration_s,
                                                   f.finish_keys, f.perf)
        span, accs, bint, kint, work = a.span, a.by_phase, a.batch_int, a.kv_int, a.work_s
        rest = [0.0] * S
        cut = span[1] - t1  # > 0 when the run ends inside the slot: drop the projection past t1
        for s in range(S):
            if cut:
                accs[st[s]][s] -= cut
                bint[s] -= nact[s] * cut
                if kv[s]:
                    kint[s] -= kv[s] / cap[s] * cut
            if st[s] == DECODE:  # split the fluid's progress at the boundary
                V[s] += (t1 - vt[s]) / itv[s]
                vt[s] = t1
            ks = fk[s]
            if ks:  # decode iterations its running requests have left: the next slot's work
                rest[s] = (-sum(ks) - len(ks) * V[s]) * perf[s].c_decode_s
                work[s] -= rest[s]
        dur = t1 - t0
        if dur > 0:
            debug = self.cfg.debug

            def clean(x):  # kept by difference: a true zero may come out as -1e-13
                x = np.asarray(x, dtype=np.float64)
                if debug:  # anything more negative than rounding is a bookkeeping error
                    assert not len(x) or x.min() >= -1e-9 * max(1.0, span[1] - span[0]), (slot, x.min())
                return np.maximum(x, 0.0)
            arrays = dict(
                idle_s=clean(a.idle_s), prefill_s=clean(a.prefill_s), decode_s=clean(a.decode_s),
                loading_s=clean(a.loading_s), batch_int=clean(bint), kv_int=clean(kint),
                switches=np.asarray(a.switches, dtype=np.int64), work_s=clean(work))
            if self.prefix is not None:  # the cache's columns exist only when it is on
                arrays.update(self.prefix.take_slot())
            self.slot_sink(slot, t0, dur, arrays)
        if self.prefix is not None:
            self.cache_affinity = self.prefix.take_affinity()
        if t_next is None:
            return
        span[0], span[1] = t1, t_next
        length = t_next - t1
        a_idle, a_pre, a_dec, a_load, sw = a.idle_s, a.prefill_s, a.decode_s, a.loading_s, a.switches
        for s in range(S):
            a_idle[s] = a_pre[s] = a_dec[s] = a_load[s] = 0.0
            work[s] = rest[s]
            accs[st[s]][s] = length
            bint[s] = nact[s] * length
            kint[s] = kv[s] / cap[s] * length if kv[s] else 0.0
            sw[s] = 0

    def check(self, s: int, now: float) -> None:
        """Debug: work conservation and state consistency of server s."""
        f, a = self.fleet, self.acc
        x = f.phase[s]
        if x == PREFILL or x == LOADING:
            return
        fk, fd = f.finish_keys[s], f.running[s]
        assert (x == DECODE) == bool(fk), (now, s, x, len(fk))
        assert len(fd) == FW * len(fk), f"server {s}: running rows"
        assert f.kv_reserved[s] == sum(fd[1::FW]) + sum((f.prefill_batch[s] or ())[Q_RES::QW]), f"server {s}: KV"
        assert all(p <= q for p, q in zip(fk, fk[1:])), f"server {s}: finish keys out of order"
        length = a.span[1] - a.span[0]
        assert abs(a.idle_s[s] + a.prefill_s[s] + a.decode_s[s] + a.loading_s[s] - length) <= 1e-9 * max(1.0, length), \
            f"server {s}: state times do not add up to the slot"
        pc = self.prefix
        if pc is not None:  # unreferenced cached blocks fit in the free KV memory; referenced ones are held
            lru, refs = pc.lru[s], pc.refs[s]
            assert len(lru) * pc.block_tokens <= f.kv_capacity[s] - f.kv_reserved[s], f"server {s}: cache memory"
            assert all(refs[b] == 0 for b in lru) and sum(1 for k in refs.values() if k == 0) == len(lru), \
                f"server {s}: cache references"
        ll = getattr(self.alloc, "state", None)
        if ll is not None:
            T = self.tables
            assert ll.idle_entries == [sum(len(ll.idle[r][m]) for r in range(T.n_regions))
                                       for m in range(T.n_models)], "idle entry counts"
        qs, h = f.queue[s], f.queue_head[s]
        waiting = len(qs) > h  # from the length, not from the truthiness the hot paths use
        assert (len(qs) - h) % QW == 0 and (waiting or h == 0), f"server {s}: queue rows"
        assert all(qs[k + Q_RDY] <= qs[k + QW + Q_RDY] for k in range(h, len(qs) - QW, QW)), \
            f"server {s}: queue not ordered by time of reaching the server"
        if waiting and qs[h + Q_RDY] > now:
            assert f.wake_s[s] <= qs[h + Q_RDY], f"server {s} forgot the request travelling to it"
        elif waiting:
            if qs[h + Q_MOD] == f.loaded_model[s]:
                assert f.kv_reserved[s] + qs[h + Q_RES] > f.kv_capacity[s] or f.batch_size[s] >= f.max_batch[s], \
                    f"work conservation: server {s} idles at {now} with an admissible request"
            else:
                assert f.batch_size[s] > 0, f"server {s} idles at {now} instead of loading a model"
