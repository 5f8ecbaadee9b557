"""The simulator's built-in micro allocators: warm least-loaded and round-robin, on the engine's state.

`torta.policy.base.WarmLeastLoaded` and `RoundRobinAllocator` are declarations a policy sets as its
`allocator`; the engine recognises them and runs the choices below over its live per-server lists
instead of calling a Python `choose(view, request, region)`. Each factory returns `AllocatorOps`:

- `choose(rid, origin, model, prompt, output, arrival_s, scope, now) -> server`: the server for a
  request in region `scope` (None: anywhere), with its work booked (`book`);
- `fast(model, prompt, output, now) -> server or -1` (least-loaded only): the fleet-wide choice in its
  common case (the warm heap's top is free of doubt), booked; -1 leaves the decision to `choose`;
- `book(server, model, prompt, output, now)`: the request's expected work added to the server's
  busy-until estimate (`torta.sim.cluster`), its tail model set;
- `drained(server, now)`: the server went idle with nothing queued: busy-until pulled back to now;
- `on_plan(planned)`: a slot starts with (True) or without (False) a macro plan.

Warm least-loaded (`WarmLeastLoaded`): least expected wait among servers whose tail model is the
request's (warm); a server that must load the model (cold) wins only if its wait plus the load is
smaller, and never the last server of the scope whose tail is its model while the request's model has
a warm server there: each model in use keeps one replica per scope, like an autoscaler's
`minReplicas: 1` (an InferenceService's `minReplicas` in KServe,
https://kserve.github.io/website/docs/model-serving/predictive-inference/autoscaling/hpa-autoscaler).
Without it a small region whose models each have one server ping-pongs them (measured, issue 17:
local-only reloaded 20,738 times in an hour on abilene, 1,826 with it). Heaps of (busy_until_s,
server, version) per scope (regions 0..R-1, the whole fleet = R) and
model, lazily invalidated by a per-server version: O(log n) per request, no scan. `wheap[k][m]` holds
the servers of scope k whose tail model is m; `cheap[k][m]` (multi-model fleets, built once a request
for m looks for a server) those able to load m whose tail is another model. Fleet-wide heaps are kept
once a slot runs without a plan, region heaps once one runs with one. Ties at zero wait in the fleet
scope go to the nearest region's longest-drained server (`latency_aware`), from `idle[r][m]`. A server
whose KV cannot hold the prompt falls back to a scan of the scope.

Round-robin (`RoundRobinAllocator`), warm-preferring as DESIGN.md's baselines are: cycling per (scope,
model) over the scope's servers able to hold the request, the next one whose tail model is the
request's (it holds the model, is loading it, or will after its queue) and whose expected wait is at
most the model's load time on it; when none can start the request within the load time, the server
that can start it soonest, a load included where it must load the model (so a model is loaded only
when no warm server is near free). Before issue 17 it cycled over every capable server whatever it
held, and reloaded a model on nearly every request of a multi-model workload.

Hot paths bind the state's lists to closure variables (one lookup per use instead of an attribute
chain); `WarmLeastLoadedState` names what they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from heapq import heapify, heappop, heappush, heapreplace
from typing import Callable

from torta.sim.cluster import DECODE_CTX_BUCKET_SHIFT as SHIFT  # TypePerf.work_s's memo key

INF = float("inf")


@dataclass(frozen=True)
class AllocatorOps:
    """What the engine calls on an allocator (see the module docstring)."""

    choose: Callable
    book: Callable
    drained: Callable
    on_plan: Callable
    fast: Callable | None = None
    state: object | None = None  # the allocator's own state (read by the engine's debug checks)


def generic_book(fleet, tables) -> Callable:
    """`book` for allocators that keep no structure of their own: busy-until and tail model only."""
    bu, tailm, stype, types = fleet.busy_until_s, fleet.tail_model, tables.stype, tables.types

    def book(s, m, p, out, now):
        ty = types[stype[s][m]]
        b = bu[s]
        if b < now:
            b = now
        c = ty.tok_cache.get((((p + out) >> SHIFT) << 16) | ((p + (out >> 1)) >> SHIFT))  # TypePerf.work_s inline
        b += p * ty.c_prefill_s + out * c if c is not None else ty.work_s(p, out)
        if tailm[s] != m:
            b += ty.load_s
            tailm[s] = m
        bu[s] = b
    return book


def generic_drained(fleet) -> Callable:
    bu = fleet.busy_until_s

    def drained(s, now):
        if bu[s] > now:
            bu[s] = now
    return drained


def round_robin(fleet, tables, cp=None) -> AllocatorOps:
    """`RoundRobinAllocator` over the fleet (see the module docstring). `cp`: the control plane
    (`torta.sim.infomodel.ControlPlane`) whose gateway takes fleet-wide choices on perceived state."""
    stype, types, capable = tables.stype, tables.types, tables.capable
    servers_in = tables.servers_in_region
    glob_capable = [[s for s in range(tables.n_servers) if stype[s][m] >= 0] for m in range(tables.n_models)]
    ptr: dict = {}
    book = generic_book(fleet, tables)
    bu, tailm = fleet.busy_until_s, fleet.tail_model

    def state(s, o, remote, now):
        """(tail model, busy-until) of s as the deciding gateway sees it (its own region live)."""
        if remote:
            return cp.tail_model(o, s, now), cp.busy_until(o, s, now)
        return tailm[s], bu[s]

    def choose(rid, o, m, p, out, arr, scope, now):
        cands = glob_capable[m] if scope is None else capable[scope][m]
        remote = cp is not None and scope is None  # the origin's gateway decides on what it perceives
        key = (scope, m)
        k = ptr.get(key, 0)
        n = len(cands)
        for i in range(n):  # the next warm server able to start the request within a load time
            s = cands[(k + i) % n]
            ty = types[stype[s][m]]
            if ty.kv_cap < p:
                continue
            tm, b = state(s, o, remote, now)
            if tm == m and b - now <= ty.load_s:
                ptr[key] = (k + i + 1) % n
                break
        else:  # none: the server that can start it soonest, a load included where it must load m,
            # keeping each model's last warm server in the scope (as warm least-loaded does)
            best, s = INF, -1
            nw = None  # servers of the scope per tail model, counted once a cold candidate shows up
            for c in cands:
                ty = types[stype[c][m]]
                if ty.kv_cap < p:
                    continue
                tm, b = state(c, o, remote, now)
                w = b - now
                if w < 0.0:
                    w = 0.0
                if tm != m:
                    if nw is None:
                        nw = {}
                        for x in (range(len(tailm)) if scope is None else servers_in[scope]):
                            nw[tailm[x]] = nw.get(tailm[x], 0) + 1
                    if m in nw and nw.get(tailm[c], 0) < 2:
                        continue
                    w += ty.load_s
                if w < best:
                    best, s = w, c
            if s < 0:
                raise ValueError(f"no server can hold request {rid} (model {m}, {p} prompt tokens)")
        if remote:
            b0 = bu[s] if bu[s] > now else now
            book(s, m, p, out, now)
            cp.record(o, s, bu[s] - b0, m, now)
        else:
            book(s, m, p, out, now)
        return s
    return AllocatorOps(choose=choose, book=book, drained=generic_drained(fleet), on_plan=lambda planned: None)


class WarmLeastLoadedState:
    """The least-loaded allocator's own state beside the fleet's lists (see the module docstring)."""

    def __init__(self, fleet, tables, world, latency_aware: bool) -> None:
        S, R, M = tables.n_servers, tables.n_regions, tables.n_models
        stype, types = tables.stype, tables.types
        self.fleet, self.tables, self.latency_aware = fleet, tables, latency_aware
        self.multi = M > 1
        self.version = [0] * S  # per server: heap entries with an older version are stale
        self.wheap = [[[] for _ in range(M)] for _ in range(R + 1)]  # warm heaps per scope and model
        self.cheap = [[[] for _ in range(M)] for _ in range(R + 1)]  # cold heaps per scope and model
        self.idle = [[[] for _ in range(M)] for _ in range(R)]  # drained servers per region and tail model
        self.idle_entries = [0] * M  # entries (valid or stale) in idle[.][m]: while 0 the scan is skipped
        self.heaps_on = [False, False]  # [fleet-wide heaps kept, region heaps kept]
        self.cold_on = [False] * M  # cold heaps of a model kept (once a request for it looked)
        self.min_load_s = [min((ty.load_s for ty in types if ty.model == world.models[m] and ty.kv_cap > 0),
                               default=0.0) for m in range(M)]
        self.glob_capable = [[s for s in range(S) if stype[s][m] >= 0] for m in range(M)]
        tailm = fleet.tail_model
        self.others = [[m for m in range(M) if stype[s][m] >= 0 and m != tailm[s]] for s in range(S)]
        self.ocold = [[] for _ in range(S)]  # others[s] whose cold heaps are kept (cold_on)
        self.n_ocold = [0]  # servers whose ocold is not empty (while 0 no cold entries are pushed)
        self.type_of = [[types[t] if t >= 0 else None for t in row] for row in stype]
        self.kv_cap = [[types[t].kv_cap if t >= 0 else 0 for t in row] for row in stype]
        self.min_kv_cap = [min((self.kv_cap[s][m] for s in self.glob_capable[m]), default=0) for m in range(M)]
        self.compact_at = 2 * S + 64  # a heap nobody pops is compacted beyond this many entries
        self.nwarm = [[0] * M for _ in range(R + 1)]  # servers per scope whose tail model is m
        for s in range(S):
            if tailm[s] >= 0:
                self.nwarm[tables.region[s]][tailm[s]] += 1
                self.nwarm[R][tailm[s]] += 1
        for s in range(S):
            if tailm[s] >= 0:
                self.idle[tables.region[s]][tailm[s]].append((0.0, s, 0))
                self.idle_entries[tailm[s]] += 1
        for row in self.idle:
            for h in row:
                h.sort()


def _heap_ops(st: WarmLeastLoadedState):
    """(push, repush, build, build_cold, compact, set_ocold) over the least-loaded heaps."""
    fleet, t = st.fleet, st.tables
    S, R, M, G = t.n_servers, t.n_regions, t.n_models, t.n_regions
    bu, tailm, hv, region = fleet.busy_until_s, fleet.tail_model, st.version, t.region
    wheap, cheap, on, cold_on, others, ocold, nocold = st.wheap, st.cheap, st.heaps_on, st.cold_on, st.others, \
        st.ocold, st.n_ocold
    compact_at, multi = st.compact_at, st.multi

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
        tm = tailm[s]
        g, rg = on
        if g:
            push(wheap[G][tm], e, s)
            if nocold[0]:
                for m in ocold[s]:
                    push(cheap[G][m], e, s)
        if rg:
            r = region[s]
            push(wheap[r][tm], e, s)
            if nocold[0]:
                for m in ocold[s]:
                    push(cheap[r][m], e, s)

    def build(glob):
        """Fill the fleet-wide (glob) or the region heaps from the current state."""
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

    def set_ocold(s, lst):
        nocold[0] += (1 if lst else 0) - (1 if ocold[s] else 0)
        ocold[s] = lst
    return push, repush, build, build_cold, compact, set_ocold


def warm_least_loaded(fleet, tables, world, latency_aware: bool = True) -> AllocatorOps:
    """`WarmLeastLoaded` over the fleet (see the module docstring)."""
    st = WarmLeastLoadedState(fleet, tables, world, latency_aware)
    push, repush, build, build_cold, compact, set_ocold = _heap_ops(st)
    book, drained = _booking(st, repush, set_ocold, compact)
    choose, fast = _choices(st, build_cold, push, book)

    def on_plan(planned):
        if not st.heaps_on[1 if planned else 0]:
            build(not planned)
    return AllocatorOps(choose=choose, book=book, drained=drained, on_plan=on_plan, fast=fast, state=st)


def _booking(st: WarmLeastLoadedState, repush, set_ocold, compact):
    """(book, drained) keeping the heaps current."""
    t = st.tables
    M, region, stype, types = t.n_models, t.region, t.stype, t.types
    bu, tailm, hv, idle, nent, others, cold_on = st.fleet.busy_until_s, st.fleet.tail_model, st.version, \
        st.idle, st.idle_entries, st.others, st.cold_on
    multi, compact_at, nwarm, G = st.multi, st.compact_at, st.nwarm, t.n_regions
    book_work = generic_book(st.fleet, t)

    def book(s, m, p, out, now):
        """Book the request's expected work on s (busy-until estimate, heaps)."""
        switch = multi and tailm[s] != m
        if switch:
            t0, r = tailm[s], region[s]
            if t0 >= 0:
                nwarm[r][t0] -= 1
                nwarm[G][t0] -= 1
            nwarm[r][m] += 1
            nwarm[G][m] += 1
        book_work(s, m, p, out, now)
        if switch:  # the models s could load cold change with its tail model
            others[s] = oth = [mm for mm in range(M) if stype[s][mm] >= 0 and mm != m]
            set_ocold(s, [mm for mm in oth if cold_on[mm]])
        repush(s)

    def drained(s, now):
        """Server went idle with nothing queued: pull its busy-until estimate back to now."""
        if bu[s] > now:
            bu[s] = now
            repush(s)
        tm = tailm[s]
        if tm >= 0:
            h = idle[region[s]][tm]
            heappush(h, (now, s, hv[s]))
            nent[tm] += 1
            if len(h) > compact_at:
                k = len(h)
                compact(h)
                nent[tm] -= k - len(h)
    return book, drained


def _choices(st: WarmLeastLoadedState, build_cold, push, book):
    """(choose, fast): the general choice and the fleet-wide fast path."""
    t = st.tables
    G, region, stype, types, near, capable = t.n_regions, t.region, t.stype, t.types, t.near, t.capable
    bu, tailm, hv = st.fleet.busy_until_s, st.fleet.tail_model, st.version
    wheap, cheap, idle, nent, on, cold_on, ocold, nocold = st.wheap, st.cheap, st.idle, st.idle_entries, \
        st.heaps_on, st.cold_on, st.ocold, st.n_ocold
    min_load, glob_capable, tyof, capm, fmin = st.min_load_s, st.glob_capable, st.type_of, st.kv_cap, st.min_kv_cap
    multi, latency_aware, nwarm = st.multi, st.latency_aware, st.nwarm
    wG = wheap[G]

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
            nw = nwarm[k]
            kept = None  # valid entries passed over: their server is the last warm one of its model
            found = None
            while h:
                e = h[0]
                c = e[1]
                if e[2] == hv[c]:
                    if s >= 0 and nw[tailm[c]] < 2:  # minReplicas = 1: keep a model's last warm server
                        if kept is None:
                            kept = []
                        kept.append(heappop(h))
                        continue
                    w = e[0] - now
                    if w < 0.0:
                        w = 0.0
                    w += types[stype[c][m]].load_s
                    if w < best:
                        found = (w, c)
                    break
                heappop(h)
            if kept is not None:
                for e in kept:
                    heappush(h, e)
            if found is not None:
                return found
        return best, s

    def fit_scan(cands, m, p, now):
        best, bs = INF, -1
        for s in cands:
            ty = stype[s][m]
            if ty >= 0 and types[ty].kv_cap >= p:
                w = bu[s] - now
                if tailm[s] != m:
                    w += types[ty].load_s
                if w < best:
                    best, bs = w, s
        return bs

    def choose(rid, o, m, p, out, arr, scope, now):
        """Server for the request within region `scope` (or anywhere if None), booked."""
        if scope is None:
            w, s = ll_scope(G, m, now)
            if w <= 0.0 and latency_aware and nent[m]:  # idle servers may exist: the nearest drained one
                for r in near[o][m]:
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
                s = fit_scan(capable[scope][m], m, p, now)
        book(s, m, p, out, now)
        return s

    def fast(m, p, out, now):
        """The fleet-wide choice when the warm heap's top decides it (no cold server could win, no
        nearest-idle tie-break needed, the prompt fits): booked inline; else -1 (`choose` decides)."""
        h = wG[m]
        w = INF
        s = -1
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
                        return -1  # yes: the general path decides
                    break
                heappop(hc)
        # an idle least-loaded server (w <= 0) goes to the nearest-idle search of choose() only if
        # drained servers are recorded for m (nent)
        if s < 0 or not (w > 0.0 or not (nent[m] and latency_aware)) or not (p <= fmin[m] or capm[s][m] >= p):
            return -1
        ty = tyof[s][m]
        # book(): busy from max(busy-until, now); the tail model is m (s came from m's warm heap)
        # TypePerf.work_s inline (the same memo key and expression): the fleet-wide hot path
        c = ty.tok_cache.get((((p + out) >> SHIFT) << 16) | ((p + (out >> 1)) >> SHIFT))
        b = (e[0] if w > 0.0 else now) + (p * ty.c_prefill_s + out * c if c is not None else ty.work_s(p, out))
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
        return s
    return choose, fast
