"""Micro allocators that run inside the replay (the `MicroAllocator` seam of torta.policy.base).

`TortaAllocator`: the TORTA micro layer on the simulator's live state: per request in its serving region,
earliest expected completion = expected backlog (the simulator's busy-until estimate) + the request's
own prefill and decode time on that GPU at the server's next batch size (with the prefix cache on, less
the prefill of the prompt tokens the server's cache holds, `FleetView.cached_prefix_tokens`) + the model-switch cost where
the server will not hold the model (load time + switch penalty) + a small load-spreading term (decayed
count of recent assignments). tests/micro_oracle.py implements the same cost a second time over its own
numpy state, as the tests' oracle.

`WarmLeastLoadedScan`: the warm-preferring least-loaded choice inside one region (the allocator every
baseline gets, with a switching guard), also for policies whose own allocator first picks the region
(skylb, acs).

`PlannedAllocator`: routes a request by its model's row of the macro plan, then asks one of the above
for the server.

Hot path: per-(region, model) candidate tuples are built once per run; a request reads the simulator's
per-server lists directly (no numpy, no objects).
"""

from __future__ import annotations

import bisect
import math
import random
from typing import Any

import numpy as np

from torta.allocator.config import MicroConfig
from torta.sim.cluster import REF_CONTEXT_TOKENS


def live_lists(view: Any) -> tuple[list, list, list, Any]:
    """(busy_until_s, tail_models, batch_sizes) lists of the simulator's live state, indexed by server
    (`torta.sim.engine.FleetView`'s public read-only attributes), and its `queue_len(server)`."""
    return view.busy_until_s, view.tail_models, view.batch_sizes, view.queue_len


def region_reader(view: Any) -> Any:
    """`view.region_state` where the view is a gateway's perception (`torta.sim.infomodel.GatewayView`:
    one report lookup per region scanned instead of one per server and field), else None (the live lists
    serve every region as they are)."""
    return view.region_state if getattr(view, "per_gateway", False) else None


def spread_scale(alloc: Any, now: float) -> float:
    """The spread term's scale factor at `now` for an allocator keeping decayed per-server assignment
    counts as `alloc._recent` relative to `alloc._t_ref` (a count of 1 added at t is stored as
    exp((t - t_ref) / tau)): spread_s_per_request x exp(-(now - t_ref) / tau). Rebases the counts to `now`
    when the stored values would grow too large."""
    tau = alloc.config.spread_tau_s
    dt = now - alloc._t_ref
    if dt > 50.0 * tau:
        f = math.exp(-dt / tau)
        alloc._recent = [x * f for x in alloc._recent]
        alloc._t_ref = now
        dt = 0.0
    return alloc.config.spread_s_per_request * math.exp(-dt / tau)


class TortaAllocator:
    """TORTA greedy micro allocator over the simulator's state (see the module docstring)."""

    def __init__(self, config: MicroConfig = MicroConfig()) -> None:
        self.config = config
        self._view_id = None

    def _setup(self, view: Any) -> None:
        t = view.tables
        cfg = self.config
        self._bu, self._tailm, self._nact, _ = live_lists(view)
        self._state = region_reader(view)
        # cands[r][m] = list of (server, prefill_s_per_token, tpot_by_batch, cold_s, kv_cap)
        self._cands = []
        for r in range(t.n_regions):
            row = []
            for m in range(t.n_models):
                lst = []
                for s in t.capable[r][m]:
                    ty = t.types[t.stype[s][m]]
                    mb = max(1, ty.max_batch)
                    tpot = [0.0] + [ty.decode_s(b, REF_CONTEXT_TOKENS) for b in range(1, mb + 1)]
                    lst.append((s, ty.c_prefill_s, tpot, mb, ty.load_s + cfg.switch_penalty_s, ty.kv_cap))
                row.append(lst)
            self._cands.append(row)
        self._near = t.near
        self._sir = t.servers_in_region
        self._load_of = [[t.types[t.stype[s][m]].load_s if t.stype[s][m] >= 0 else 0.0
                          for m in range(t.n_models)] for s in range(t.n_servers)]
        self._lat = t.latency_s
        self._recent = [0.0] * t.n_servers
        self._t_ref = 0.0
        self._view_id = id(view)

    def choose(self, view: Any, request: Any, region: int | None) -> int:
        s = self.pick(view, request, region)
        if s < 0:
            raise ValueError(f"no server in region {region} can hold request {request.request_id} "
                             f"(model {request.model}, {request.prompt_tokens} prompt tokens)")
        return s

    def pick(self, view: Any, request: Any, region: int | None) -> int:
        """`choose` without the error: -1 when no server in scope can hold the request."""
        return self.best(view, request, region)[1]

    def best(self, view: Any, request: Any, region: int | None) -> tuple[float, int]:
        """(expected completion cost in seconds, server) of the best server in scope; (inf, -1) if none.
        Records the assignment's spreading count, so call it once per request."""
        if self._view_id != id(view):
            self._setup(view)
        now = view.now_s
        m = request.model
        p = request.prompt_tokens
        o = request.output_tokens
        psi = self.config.spread_s_per_request
        tau = self.config.spread_tau_s
        sf = spread_scale(self, now)
        bu, tailm, nact, rec = self._bu, self._tailm, self._nact, self._recent
        state = self._state
        if region is None:
            regions = self._near[request.origin][m]
            lat = self._lat[request.origin]
        else:
            regions = (region,)
            lat = None
        cached = view.cached_prefix_tokens if getattr(request, "prefix_blocks", ()) else None
        best, bs = math.inf, -1
        for r in regions:
            d = lat[r] if lat is not None else 0.0
            if d >= best:
                break
            if state is not None:
                bu, tailm, nact = state(r)
            for s, pre, tpot, mb, cold, cap in self._cands[r][m]:
                if cap < p:
                    continue
                w = bu[s] - now
                if w < 0.0:
                    w = 0.0
                b = nact[s] + 1
                c = d + w + pre * p + o * tpot[b if b <= mb else mb] + rec[s] * sf
                if tailm[s] != m:
                    c += cold
                    if c < best:
                        c += self._displacement(r, s, tailm)
                elif cached is not None:  # the prefill its prefix cache saves (a load empties it)
                    c -= pre * cached(s, request)
                if c < best:
                    best, bs = c, s
        if bs < 0:
            return math.inf, -1
        if psi > 0.0:
            rec[bs] += math.exp((now - self._t_ref) / tau)
        return best, bs

    def cost_in(self, view: Any, request: Any, region: int, delay_s: float) -> tuple[float, int]:
        """Cost and server in `region` for a request that reaches it `delay_s` later (no side effects)."""
        now = view.now_s
        m, p, o = request.model, request.prompt_tokens, request.output_tokens
        cached = view.cached_prefix_tokens if getattr(request, "prefix_blocks", ()) else None
        if self._state is not None:
            bu, tailm, nact = self._state(region)
        else:
            bu, tailm, nact = self._bu, self._tailm, self._nact
        best, bs = math.inf, -1
        for s, pre, tpot, mb, cold, cap in self._cands[region][m]:
            if cap < p:
                continue
            w = bu[s] - now
            if w < 0.0:
                w = 0.0
            b = nact[s] + 1
            c = delay_s + w + pre * p + o * tpot[b if b <= mb else mb]
            if tailm[s] != m:
                c += cold + self._displacement(region, s, tailm)
            elif cached is not None:
                c -= pre * cached(s, request)
            if c < best:
                best, bs = c, s
        return best, bs


    def _displacement(self, region: int, server: int, tailm: list) -> float:
        """Extra cold-start cost when `server` is the last one in its region holding its current model:
        that model's next request there will have to load it back."""
        cur = tailm[server]
        if cur < 0:
            return 0.0
        for s in self._sir[region]:
            if s != server and tailm[s] == cur:
                return 0.0
        return self._load_of[server][cur] + self.config.switch_penalty_s


class WarmLeastLoadedScan:
    """Warm-preferring least-loaded inside one region, by a scan (regions hold a handful of servers):
    wait = expected backlog, + load time where the server will not hold the model; first minimum by
    server id. With `switch_guard_s` = 0 this is the simulator's built-in `WarmLeastLoaded` rule in region
    scope. In region scope that rule reloads needlessly (a cold server wins as soon as the warm backlog
    exceeds a 2-4 s load, and the next request of the displaced model switches it back), so the baselines
    here use the guarded variant: a cold server also pays `switch_guard_s`, and the load-back of its model
    when it is the region's last server holding it (the same switching rule as the TORTA allocator)."""

    def __init__(self, switch_guard_s: float = 0.0) -> None:
        self._view_id = None
        self.switch_guard_s = float(switch_guard_s)

    def setup(self, view: Any) -> None:
        t = view.tables
        self._bu, self._tailm, self._nact, _ = live_lists(view)
        self._state = region_reader(view)
        self._cands = [[[(s, t.types[t.stype[s][m]].load_s, t.types[t.stype[s][m]].kv_cap)
                         for s in t.capable[r][m]] for m in range(t.n_models)] for r in range(t.n_regions)]
        self._sir = t.servers_in_region
        self._load_of = [[t.types[t.stype[s][m]].load_s if t.stype[s][m] >= 0 else 0.0
                          for m in range(t.n_models)] for s in range(t.n_servers)]
        self._view_id = id(view)

    def pick(self, view: Any, request: Any, region: int) -> int:
        """Server in `region` for the request, or -1 when none there can hold it."""
        return self.pick_model(view, region, request.model, request.prompt_tokens)

    def pick_model(self, view: Any, region: int, model: int, prompt_tokens: int) -> int:
        if self._view_id != id(view):
            self.setup(view)
        now = view.now_s
        if self._state is not None:
            bu, tailm, _ = self._state(region)
        else:
            bu, tailm = self._bu, self._tailm
        guard = self.switch_guard_s
        best, bs = math.inf, -1
        for s, load, cap in self._cands[region][model]:
            if cap < prompt_tokens:
                continue
            w = bu[s] - now
            if w < 0.0:
                w = 0.0
            if tailm[s] != model:
                w += load
                if guard > 0.0 and w < best:
                    w += guard
                    cur = tailm[s]
                    if cur >= 0 and not any(x != s and tailm[x] == cur for x in self._sir[region]):
                        w += self._load_of[s][cur] + guard
            if w < best:
                best, bs = w, s
        return bs


class PlannedAllocator:
    """Routes each request by a per-(origin, model) macro plan, then picks a server inside the region
    with `inner.pick(view, request, region)` (TortaAllocator or WarmLeastLoadedScan). Runs in global scope
    (the policy's `plan` returns None), which lets the macro plan differ per model: the seam's (R, R) plan
    applies one row to every model of an origin. Counts requests per (origin, model) for the planner."""

    def __init__(self, inner: Any, n_regions: int, n_models: int, seed: int) -> None:
        self.inner = inner
        self.n_regions, self.n_models = n_regions, n_models
        self.counts = [[0] * n_models for _ in range(n_regions)]
        self._cum: list | None = None
        self.last_plans: np.ndarray | None = None
        self._rng = random.Random(seed)
        self.fallbacks = 0
        self.spill_s: float | None = None  # set (with a TortaAllocator inner) to allow spill-over
        self.spill_regions = 3
        self.spills = 0

    def set_plan(self, plans: np.ndarray) -> None:
        """plans[m, o, r]: share of origin o's model-m demand served in region r (rows sum to 1)."""
        p = np.asarray(plans, dtype=float)
        if p.shape != (self.n_models, self.n_regions, self.n_regions):
            raise ValueError(f"plans must have shape ({self.n_models}, {self.n_regions}, {self.n_regions}), "
                             f"got {p.shape}")
        self.last_plans = p  # read by torta.runs.planlog.PlanRecorder (the warehouse's `plans` table)
        cum = np.cumsum(p, axis=2)
        self._cum = [[cum[m, o].tolist() for m in range(self.n_models)] for o in range(self.n_regions)]

    def take_counts(self) -> np.ndarray:
        out = np.asarray(self.counts, dtype=float)
        for row in self.counts:
            for m in range(self.n_models):
                row[m] = 0
        return out

    def live(self) -> tuple[list, list] | None:
        """(busy_until, tail_model) lists of the simulator once a request has been seen, else None."""
        return getattr(self, "_live", None)

    def choose(self, view: Any, request: Any, region: int | None) -> int:
        o, m = request.origin, request.model
        self.counts[o][m] += 1
        if getattr(self, "_live_id", None) != id(view):  # the planner reads the live state, not a gateway's
            bu, tailm, _, _ = live_lists(getattr(view, "live_view", view))
            self._live, self._live_id = (bu, tailm), id(view)
        if region is None and self._cum is not None:
            row = self._cum[o][m]
            x = self._rng.random() * row[-1]
            r = min(bisect.bisect_right(row, x), len(row) - 1)
        else:
            r = region
        if r is not None:
            if self.spill_s is not None:
                c, s = self.inner.best(view, request, r)
                if s >= 0 and c > self.spill_s:  # planned region saturated: the micro layer may spill over
                    lat = view.tables.latency_s[r]
                    for r2 in view.tables.near[r][m][1:self.spill_regions + 1]:
                        c2, s2 = self.inner.cost_in(view, request, r2, lat[r2])
                        if c2 + self.spill_s < c:
                            c, s = c2, s2
                    if s != -1 and view.tables.region[s] != r:
                        self.spills += 1
            else:
                s = self.inner.pick(view, request, r)
            if s >= 0:
                return s
        self.fallbacks += 1
        for r2 in view.tables.near[o][m]:  # the region cannot hold it: nearest one that can
            s = self.inner.pick(view, request, r2)
            if s >= 0:
                return s
        raise ValueError(f"no server can hold request {request.request_id} (model {m}, "
                         f"{request.prompt_tokens} prompt tokens)")
