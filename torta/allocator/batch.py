"""The Hungarian batch-window micro allocator on the simulator's live state (`torta-ot-hungarian`).

`HungarianPlannedAllocator` is a `PlannedAllocator` (per-(origin, model) macro plan, spill-over) that
declares `batch_window_s > 0`, so the simulator (torta.sim.engine) runs it through the batch-window
hook of the seam (`torta.policy.base.BatchAllocator`):

1. at the origin, `route(view, request)` picks the serving region: the plan's draw for the request's
   (origin, model), spilled over to a nearby region when the planned one is saturated (the same rule
   and costs as `PlannedAllocator.choose` with the greedy `TortaAllocator`). The greedy allocator books
   each request on its server at once; here the server is only chosen at the window's close, so the
   expected work of routed, not yet assigned requests is kept per predicted server (`_pend`) and
   counted as backlog by later routing and batches, as is the model such a request will make its
   predicted server load (`_ptail`, a pending tail model), and the greedy's spread count is taken at
   routing and moved to the actual server at assignment. (Without this, routing saw idle-looking regions,
   spilled a third less and the mean response was 3-5x torta-ot's: day 11, 0.25 h, seeds 1-2.)
2. the request travels there and waits for the region's window to close (the window opens when the
   first held request reaches the region and lasts `batch_window_s`; it closes early once
   `batch_max_requests` are held);
3. at the close, `assign_batch(view, requests, region)` assigns the batch jointly
   (`torta.allocator.hungarian.assign_positions`): base cost = the TORTA greedy cost of the request on the
   server (expected backlog, cold start + switch penalty + displacement where the server will not
   hold the model, own prefill and decode time at the server's next batch size, spread term); work =
   the server-seconds it adds to the backlog (+ the load time when cold). A one-request batch gets
   exactly the greedy allocator's server. A batch mixing models is solved one model at a time on the
   state the previous models leave, and at most `max_switches` (default 1) cold servers are open to one
   model's requests per batch (see `_limit_switches`; on day 11 the cap cut switches from 301 to 197 at
   an equal mean response, see MicroConfig).

With `batch_window_s` = 0 the simulator never calls `route`/`assign_batch`: the allocator is the
per-request `PlannedAllocator` of `torta-ot`.
"""

from __future__ import annotations

import bisect
import math
import time
from typing import Any

import numpy as np

from torta.allocator.greedy import PlannedAllocator, TortaAllocator, live_lists, spread_scale
from torta.allocator.hungarian import assign_positions, queue_order


class HungarianPlannedAllocator(PlannedAllocator):
    """Macro plan routing + Hungarian assignment over a short batch window inside the region."""

    def __init__(self, inner: TortaAllocator, n_regions: int, n_models: int, seed: int,
                 batch_window_s: float, batch_max_requests: int = 64, max_switches: int | None = 1) -> None:
        super().__init__(inner, n_regions, n_models, seed)
        if not (math.isfinite(batch_window_s) and batch_window_s >= 0.0):
            raise ValueError(f"batch_window_s must be finite and >= 0, got {batch_window_s!r}")
        if batch_max_requests < 1:
            raise ValueError(f"batch_max_requests must be >= 1, got {batch_max_requests!r}")
        self.batch_window_s = float(batch_window_s)
        self.batch_max_requests = int(batch_max_requests)
        if max_switches is not None and max_switches < 0:
            raise ValueError(f"max_switches must be >= 0 or None, got {max_switches!r}")
        self.max_switches = max_switches  # cold servers open to one model's requests in a batch
        self.config = inner.config
        self._bview = None
        self.batches = 0
        self.batched_requests = 0
        self.max_batch_seen = 0
        self.assign_s = 0.0  # wall seconds inside assign_batch
        self.route_s = 0.0  # wall seconds inside route
        self.routed = 0

    # -- origin: the serving region ----------------------------------------------------------------
    def route(self, view: Any, request: Any) -> int:
        """Serving region for a request at its origin (plan draw + spill-over); counts its demand."""
        t0 = time.perf_counter()
        r = self._route(view, request)
        self.route_s += time.perf_counter() - t0
        self.routed += 1
        return r

    def _route(self, view: Any, request: Any) -> int:
        o, m = request.origin, request.model
        self.counts[o][m] += 1
        if getattr(self, "_live_id", None) != id(view):
            bu, tailm, _, _ = live_lists(view)
            self._live, self._live_id = (bu, tailm), id(view)
        self._bind(view)
        near = view.tables.near[o][m]
        if self._cum is not None:
            row = self._cum[o][m]
            r = min(bisect.bisect_right(row, self._rng.random() * row[-1]), len(row) - 1)
        elif near:
            r = near[0]  # no plan yet: the nearest region able to serve the model
        else:
            return o  # nobody can serve the model: the simulator drops it at the origin
        now = view.now_s
        sf = spread_scale(self, now)
        c, s, wk = self._best_in(now, request, r, 0.0, sf)
        if self.spill_s is not None and s >= 0 and c > self.spill_s:
            lat = view.tables.latency_s[r]
            r0 = r
            for r2 in view.tables.near[r0][m][1:self.spill_regions + 1]:
                c2, s2, w2 = self._best_in(now, request, r2, lat[r2], 0.0)
                if s2 >= 0 and c2 + self.spill_s < c:
                    c, s, wk, r = c2, s2, w2, r2
            if r != r0:
                self.spills += 1
        if s >= 0:  # expected work on its way to the region: seen by later routing and batches, and the
            # spread count of the greedy choice (as the greedy allocator counts it when it books)
            self._pend[s] += wk
            inc = math.exp((now - self._t_ref) / self.config.spread_tau_s) if sf > 0.0 else 0.0
            self._recent[s] += inc
            # the model the server will hold, as the greedy's booking would set it
            pt = self._ptail
            counted = True
            if pt[s] == m:
                self._pcnt[s] += 1
            elif (pt[s] if pt[s] >= 0 else self._tailm[s]) != m:
                pt[s] = m
                self._pcnt[s] = 1
            else:
                counted = False
            self._held[(request.request_id, request.arrival_s, o)] = (s, wk, inc, self._t_ref, counted)
        return r

    def _best_in(self, now: float, request: Any, region: int, delay_s: float,
                 sf: float) -> tuple[float, int, float]:
        """(expected completion, server, work) of the greedy choice in `region` for a request reaching it
        `delay_s` later, counting the work routed there and not yet assigned, and the spread term scaled
        by `sf` (0: none, as `TortaAllocator.cost_in` for spill-over candidates); (inf, -1, 0) if none."""
        m, p, o = request.model, request.prompt_tokens, request.output_tokens
        pend, rec, pt = self._pend, self._recent, self._ptail
        if self._state is not None:  # a gateway's perception: one report lookup for the region
            bu, tailm, nact = self._state(region)
        else:
            bu, tailm, nact = self._bu, self._tailm, self._nact
        best, bs, bw = math.inf, -1, 0.0
        for s, _, pre, tpot, mb, cold, cap, wp, wo, load in self._cands[region][m]:
            if cap < p:
                continue
            w = bu[s] - now
            if w < 0.0:
                w = 0.0
            b = nact[s] + 1
            c = delay_s + w + pend[s] + pre * p + o * tpot[b if b <= mb else mb] + rec[s] * sf
            wk = wp * p + wo * o
            if (pt[s] if pt[s] >= 0 else tailm[s]) != m:
                c += cold
                wk += load
                if c < best:
                    c += self._displacement(region, s, tailm, pt)
            if c < best:
                best, bs, bw = c, s, wk
        return best, bs, bw

    # -- region: the window's batch ----------------------------------------------------------------
    def _bind(self, view: Any) -> None:
        if self._bview == id(view):
            return
        if self.inner._view_id != id(view):  # noqa: SLF001 - the inner allocator's lazy set-up
            self.inner._setup(view)  # noqa: SLF001
        t = view.tables
        inner = self.inner
        self._bu, self._tailm, self._nact = inner._bu, inner._tailm, inner._nact  # noqa: SLF001
        self._state = inner._state  # noqa: SLF001
        self._sir = inner._sir  # noqa: SLF001
        self._load_of = inner._load_of  # noqa: SLF001
        self._col = [{s: j for j, s in enumerate(srv)} for srv in t.servers_in_region]
        # cands[r][m]: the inner allocator's (server, prefill_s/token, tpot by batch, max batch, cold_s,
        # kv cap) with the column in the region and (work_s/prompt token, work_s/output token, load_s)
        self._cands = []
        for r, row_in in enumerate(inner._cands):  # noqa: SLF001
            row = []
            for m, lst_in in enumerate(row_in):
                lst = []
                for s, pre, tpot, mb, cold, cap in lst_in:
                    ty = t.types[t.stype[s][m]]
                    lst.append((s, self._col[r][s], pre, tpot, mb, cold, cap, ty.c_prefill_s, ty.c_decode_s,
                                ty.load_s))
                row.append(lst)
            self._cands.append(row)
        self._recent = [0.0] * t.n_servers
        self._t_ref = 0.0
        self._pend = [0.0] * t.n_servers  # work routed to each server's region, not yet assigned
        self._ptail = [-1] * t.n_servers  # model a routed, unassigned request will make the server load
        self._pcnt = [0] * t.n_servers  # routed, unassigned requests behind _ptail
        self._no_ptail = [-1] * t.n_servers
        self._held: dict = {}  # (request_id, arrival_s, origin) -> (server, work, spread count, its t_ref,
        # counted in _pcnt)
        self._bview = id(view)

    def _displacement(self, region: int, server: int, tailm: list, pt: list) -> float:
        """Extra cold-start cost when `server` is the region's last one holding its current model (the
        pending tail `pt[s]` where >= 0, else `tailm[s]`)."""
        cur = pt[server] if pt[server] >= 0 else tailm[server]
        if cur < 0:
            return 0.0
        for s in self._sir[region]:
            if s != server and (pt[s] if pt[s] >= 0 else tailm[s]) == cur:
                return 0.0
        return self._load_of[server][cur] + self.config.switch_penalty_s

    def _rows(self, now: float, requests: list, region: int, bu: list, tailm: list, pt: list,
              sf: float) -> tuple[list, list]:
        """Per request, the lists of base cost and work over the region's servers (id order), given the
        servers' busy-until times and tail models."""
        ns = len(self._sir[region])
        nact = self._state(region)[2] if self._state is not None else self._nact
        rec, pend = self._recent, self._pend
        cands = self._cands[region]
        bases, works = [], []
        for rq in requests:
            m, p, o = rq.model, rq.prompt_tokens, rq.output_tokens
            brow, wrow = [math.inf] * ns, [0.0] * ns
            for s, j, pre, tpot, mb, cold, cap, wp, wo, load in cands[m]:
                if cap < p:
                    continue
                w = bu[s] - now
                if w < 0.0:
                    w = 0.0
                b = nact[s] + 1
                c = w + pend[s] + pre * p + o * tpot[b if b <= mb else mb] + rec[s] * sf
                wk = wp * p + wo * o
                if (pt[s] if pt[s] >= 0 else tailm[s]) != m:
                    c += cold + self._displacement(region, s, tailm, pt)
                    wk += load
                brow[j] = c
                wrow[j] = wk
            bases.append(brow)
            works.append(wrow)
        return bases, works

    def _limit_switches(self, region: int, model: int, bases: list, tailm: list, pt: list) -> None:
        """Keep at most `max_switches` servers that must load `model` (the cheapest, by their best
        request) open to the batch: a model switch costs its penalty and displacement once per server,
        but the assignment charges it per request, so it would otherwise spread a burst over several
        cold servers where the greedy allocator switches one and then finds it warm. A request that
        only a closed cold server can hold keeps its cheapest one."""
        k_max = self.max_switches
        if k_max is None or len(bases) < 2:
            return
        srv = self._sir[region]
        cold = [j for j, s in enumerate(srv) if (pt[s] if pt[s] >= 0 else tailm[s]) != model]
        if len(cold) <= k_max:
            return
        best = sorted(cold, key=lambda j: (min(row[j] for row in bases), j))
        shut = best[k_max:]
        for row in bases:
            saved = [(row[j], j) for j in shut]
            for j in shut:
                row[j] = math.inf
            if min(row) == math.inf:
                c, j = min(saved)
                row[j] = c

    def _solve(self, requests: list, region: int, bases: list, works: list) -> list[tuple[int, int]]:
        srv = self._sir[region]
        for k, brow in enumerate(bases):
            if min(brow) == math.inf:
                rq = requests[k]
                raise ValueError(f"no server in region {region} can hold request {rq.request_id} "
                                 f"(model {rq.model}, {rq.prompt_tokens} prompt tokens)")
        if len(requests) == 1:  # the greedy choice (first minimum), without numpy
            brow = bases[0]
            return [(0, srv[brow.index(min(brow))])]
        col, behind = assign_positions(np.asarray(bases, dtype=float), np.asarray(works, dtype=float))
        return [(int(k), srv[int(col[k])]) for k in queue_order(behind)]

    def assign_batch(self, view: Any, requests: list, region: int) -> list[tuple[int, int]]:
        """(index into `requests`, server) pairs in queue order: the batch's joint minimum of summed
        expected completion (see torta.allocator.hungarian). A batch mixing models is assigned one model at a
        time (models in order of first arrival), each on the state the previous ones leave (busy-until
        and tail model booked virtually): a server never alternates between models inside a batch."""
        t0 = time.perf_counter()
        self._bind(view)
        now = view.now_s
        sf = spread_scale(self, now)
        held, pend, rec = self._held, self._pend, self._recent
        tau = self.config.spread_tau_s
        for rq in requests:  # these are placed now: no longer pending, spread counted where they go
            e = held.pop((rq.request_id, rq.arrival_s, rq.origin), None)
            if e is not None:
                s, wk, inc, t_ref, counted = e
                pend[s] = pend[s] - wk if pend[s] - wk > 1e-9 else 0.0
                if counted and self._ptail[s] == rq.model:
                    self._pcnt[s] -= 1
                    if self._pcnt[s] <= 0:
                        self._ptail[s], self._pcnt[s] = -1, 0
                if inc:
                    inc *= math.exp(-(self._t_ref - t_ref) / tau)  # counts rescaled since routing
                    rec[s] = rec[s] - inc if rec[s] - inc > 0.0 else 0.0
        if self._state is not None:  # the region's gateway decides: live state of its own servers
            bu, tailm, _ = self._state(region)
        else:
            bu, tailm = self._bu, self._tailm
        pt = self._ptail
        models = list(dict.fromkeys(rq.model for rq in requests))
        if len(models) == 1:
            bases, works = self._rows(now, requests, region, bu, tailm, pt, sf)
            self._limit_switches(region, models[0], bases, tailm, pt)
            out = self._solve(requests, region, bases, works)
        else:  # virtual copies of the region's servers: busy-until, tails (pending ones folded in)
            srv = self._sir[region]
            bu = {s: bu[s] for s in srv}
            tailm = {s: (pt[s] if pt[s] >= 0 else tailm[s]) for s in srv}
            pt = self._no_ptail
            col = self._col[region]
            out = []
            for m in models:
                idx = [k for k, rq in enumerate(requests) if rq.model == m]
                sub = [requests[k] for k in idx]
                bases, works = self._rows(now, sub, region, bu, tailm, pt, sf)
                self._limit_switches(region, m, bases, tailm, pt)
                for k, s in self._solve(sub, region, bases, works):
                    bu[s] = max(bu[s], now) + works[k][col[s]]
                    tailm[s] = m
                    out.append((idx[k], s))
        if self.config.spread_s_per_request > 0.0:
            inc = math.exp((view.now_s - self._t_ref) / self.config.spread_tau_s)
            for _, s in out:
                self._recent[s] += inc
        n = len(requests)
        self.batches += 1
        self.batched_requests += n
        if n > self.max_batch_seen:
            self.max_batch_seen = n
        self.assign_s += time.perf_counter() - t0
        return out

    def stats(self) -> dict:
        n = self.batched_requests
        return {"batch_window_s": self.batch_window_s, "batch_max_requests": self.batch_max_requests,
                "max_switches_per_batch": -1 if self.max_switches is None else self.max_switches,
                "batches": self.batches, "mean_batch_requests": n / self.batches if self.batches else 0.0,
                "max_batch_requests_seen": self.max_batch_seen,
                "assign_us_per_request": 1e6 * self.assign_s / n if n else 0.0,
                "route_us_per_request": 1e6 * self.route_s / self.routed if self.routed else 0.0}
