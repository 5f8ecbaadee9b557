"""The policy seam: a macro planner per slot plus a micro allocator per request.

A `Policy` has two parts.

**Macro plan** (`Policy.plan(state) -> np.ndarray | None`), called by the simulator at t = 0 and at
every slot boundary (`World.slot_s`, default 900 s). It returns `P` of shape `(R, R)`: `P[i, j]` is
the share of origin region `i`'s demand served in region `j` during the coming slot, or per-model
plans of shape `(M, R, R)` (`P[m, i, j]` for model `m`'s demand; `M = len(World.models)`). Rows sum
to 1, entries >= 0; the simulator validates (`validate_plan`) and raises `ValueError` otherwise. The
simulator hands every plan it applies (validated; None for a slot without one) to the replay's
optional `plan_sink(state, plan)` (see `torta.runs.planlog.PlanRecorder`), so recording plans needs no
hook in the policy. Each request arriving at origin `i` (model `m`) draws its serving region `j` from
row `i` (of model `m`'s plan) with the run's seeded generator, travels
`World.latency_ms[i, j]`, and is then handed to the micro allocator *scoped to region j*.
Returning `None` means "no macro plan": the micro allocator is called at the origin, at arrival
time, with global scope (it may pick any server in the fleet); the request joins that server's queue
at once, ordered by the time it reaches the server, and travels to its region (it is admitted only
once it is there). Every allocator's request enters a queue this way. Global least-loaded and
round-robin work this way.

What a planner sees each slot is a `SlotState` (below): the slot index and start time, demand per
origin in the slot just ended (request and token counts), the backlog and queue length per region,
busy servers and warm models per region (servers per model, by the model the server will hold once
its queue drains), servers per region, prices and carbon intensity for the coming slot, the latency
matrix, and the previous plan. Forecast-driven planners load their own forecasts in `reset`.

**Micro allocator** (`Policy.allocator`): which server inside the scope. The simulator recognises
the built-in allocators (`WarmLeastLoaded`, `RoundRobinAllocator`) and runs them on its fast path
(a heap per (region, model) keyed by expected busy-until time, lazily invalidated: O(log n) per
request, no scan of the fleet). Any other object is called through `MicroAllocator.choose(view,
request, region)`, where `view` is a read-only `FleetView` over the simulator's live state (see
`torta.sim.engine.FleetView`): per-server region, loaded model, expected backlog, queue length,
batch size, KV use and capacity, and the current time.

**Batch-window hook** (`BatchAllocator` below): a custom allocator with `batch_window_s > 0` is not
asked per request. The request's serving region comes from the policy's plan (or, in slots without
one, from `allocator.route(view, request) -> region` at the origin); the request travels there and is
held. The first request held in a region opens its window; at `now + batch_window_s` (or as soon as
`batch_max_requests` are held, if the allocator sets it) the simulator calls
`allocator.assign_batch(view, requests, region) -> [(index, server), ...]` (one pair per held request,
servers in the region able to hold it) and books and enqueues them in the returned order. The wait in
the window counts in the response time (arrival time is unchanged); held requests count in
`SlotState.queue_len`; a window still open when the arrivals end closes at its time, so nothing is
lost. Allocators without the attribute (or with 0) pay nothing for the hook.

Routing rules the simulator applies for every policy (documented here, the contract for planners):
- a region whose servers cannot serve the request's model (no servers at all, or none allowed to
  load that model) never hangs or loses the request: it is re-routed to the nearest region, by
  latency from the origin, that can serve it; with no such region in the fleet it is dropped with
  reason `no_server_for_model`;
- a prompt larger than the KV capacity of every server that may load its model is dropped at the
  origin with reason `prompt_exceeds_kv`; if only the chosen region's servers are too small, the
  request is re-routed to the nearest region whose servers can hold it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SlotState:
    """What a macro planner sees at the start of slot `slot` (times in seconds from replay start).

    Arrays are indexed by region (`R` regions, in `World.regions` order) and model (`World.models`).
    `demand_*` cover the slot that just ended (zeros at slot 0); `prev_plan` is the plan in force
    as the engine validated it, (R, R) or (M, R, R) (None before the first plan or when the previous
    slot had none).
    """

    slot: int
    t_start_s: float
    slot_s: float
    demand_requests: np.ndarray  # (R,) requests that arrived at each origin in the previous slot
    demand_tokens: np.ndarray  # (R,) prompt + output tokens of those requests
    backlog_s: np.ndarray  # (R,) summed expected backlog (server-seconds) of the region's servers
    queue_len: np.ndarray  # (R,) requests waiting (not yet admitted) in the region
    busy_servers: np.ndarray  # (R,) servers with admitted work
    servers: np.ndarray  # (R,) servers in the region
    warm_servers: np.ndarray  # (R, M) servers per model (the model each will hold once its queue drains)
    price_usd_per_mwh: np.ndarray  # (R,) electricity price for the coming slot
    carbon_g_per_kwh: np.ndarray  # (R,)
    latency_ms: np.ndarray  # (R, R)
    prev_plan: np.ndarray | None
    # (R, R) prefix-cache token hit rate of the previous slot's admissions by (origin, serving region):
    # cache affinity (torta.sim.prefix); None when the replay runs without the prefix cache
    cache_hit_rate: np.ndarray | None = None


@dataclass(frozen=True)
class RequestInfo:
    """One request as a micro allocator sees it."""

    request_id: int
    origin: int
    model: int  # index into World.models
    prompt_tokens: int
    output_tokens: int
    arrival_s: float
    # the ids of the prompt's full prefix blocks when the replay runs the prefix cache (torta.sim.prefix), else ()
    prefix_blocks: tuple = ()


@runtime_checkable
class MicroAllocator(Protocol):
    def choose(self, view: Any, request: RequestInfo, region: int | None) -> int:
        """Return a server id. `region` None: global scope (any server)."""
        ...


@runtime_checkable
class BatchAllocator(Protocol):
    """A micro allocator that assigns each region's requests in batches (the batch-window hook above)."""

    batch_window_s: float  # > 0: hold requests in their serving region this long, then assign_batch

    def route(self, view: Any, request: RequestInfo) -> int:
        """Serving region of a request at its origin, in slots without a macro plan."""
        ...

    def assign_batch(self, view: Any, requests: list[RequestInfo], region: int) -> list[tuple[int, int]]:
        """(index into `requests`, server id) for every held request, in the order to enqueue them."""
        ...


class Policy(Protocol):
    """A scheduling policy. Instances are per run: `reset` is called once before the replay."""

    name: str
    allocator: Any  # a built-in allocator or a MicroAllocator

    def reset(self, world: Any, seed: int) -> None: ...

    def plan(self, state: SlotState) -> np.ndarray | None:
        """(R, R) or (M, R, R) plan for the slot, or None (see the module docstring)."""
        ...


@dataclass(frozen=True)
class WarmLeastLoaded:
    """Built-in allocator: least expected backlog among servers that will hold the request's model
    (warm), unless a server that must load it (cold) would be free sooner even after the load time
    `PerfModel.load_s`; a model's last warm server in the scope is not taken while the request's
    model has a warm server there (minReplicas = 1, see `torta.allocator.builtin`). Ties at zero
    backlog (several idle servers) go to the server in the region nearest the origin when
    `latency_aware` (in region scope: the longest-idle server). Expected backlog: see
    `torta.sim.cluster`. Cost O(log n) per request (heaps with lazy invalidation)."""

    latency_aware: bool = True


@dataclass(frozen=True)
class PowerOfDLeastLoaded(WarmLeastLoaded):
    """Built-in allocator: warm least-loaded whose fleet-wide choice is the least loaded of `d` warm
    servers drawn at random (power of d choices, robust to old load reports; see
    `torta.allocator.power_of_d`)."""

    d: int = 2


@dataclass(frozen=True)
class RoundRobinAllocator:
    """Built-in allocator, warm-preferring: cycling per (scope, model), the next server that holds (or
    will hold) the model and can start the request within the load time; when none can, the server
    that can start it soonest, a load included (see `torta.allocator.builtin`)."""


class BasePolicy:
    """Convenience base: no planner, warm least-loaded allocator."""

    name = "base"
    description = ""
    has_planner = False  # True: plan() is a real planner and its time is reported per slot

    def __init__(self) -> None:
        self.allocator: Any = WarmLeastLoaded()
        self.world: Any = None

    def reset(self, world: Any, seed: int) -> None:
        self.world = world

    def plan(self, state: SlotState) -> np.ndarray | None:
        return None


def validate_plan(plan: np.ndarray, n_regions: int, n_models: int | None = None) -> np.ndarray:
    """Check a macro plan's shape, sign and row sums; returns it as float64 (negative rounding clipped).

    A plan is either one `(R, R)` matrix for every model or per-model plans `(M, R, R)` (`plan[m, i, j]`:
    share of origin `i`'s model-`m` demand served in region `j`); with `n_models` given, M must match.
    Every row (last axis) must be finite, >= 0 and sum to 1 (within 1e-6)."""
    p = np.asarray(plan, dtype=float)
    r = n_regions
    if p.shape != (r, r) and not (p.ndim == 3 and p.shape[1:] == (r, r) and p.shape[0] >= 1
                                  and (n_models is None or p.shape[0] == n_models)):
        m = "M" if n_models is None else n_models
        raise ValueError(f"plan has shape {p.shape}; expected ({r}, {r}) or ({m}, {r}, {r})")
    if not np.all(np.isfinite(p)) or (p < -1e-12).any():
        raise ValueError("plan entries must be finite and >= 0")
    rows = p.sum(axis=-1)
    if not np.allclose(rows, 1.0, atol=1e-6):
        bad = np.unravel_index(int(np.argmax(np.abs(rows - 1.0))), rows.shape)
        where = f"row {bad[0]}" if p.ndim == 2 else f"model {bad[0]} row {bad[1]}"
        raise ValueError(f"plan {where} sums to {rows[bad]:.6f}; rows must sum to 1")
    return np.clip(p, 0.0, None)
