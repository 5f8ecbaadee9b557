"""Request-side event handlers of the engine: arrival at the origin, network arrival at the serving
region, the batch window (reach a region's window, window closed), and the adapter that runs a Python
micro allocator (`MicroAllocator.choose(view, request, region)`) behind the same `AllocatorOps` as the
built-in ones (`torta.allocator.builtin`).

`routing_handlers(engine, servers)` builds them as closures over the engine's lists (bound once to
closure variables: the hot path, see `torta.sim.servers`). A request travelling to its serving region
is a 7-field list `[position, origin, model, prompt, output, arrival_s, region]` (fields `RID` ...
`REG`), built only where one is needed; queued and running requests are rows of doubles
(`torta.sim.servers`).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from heapq import heappush
from types import SimpleNamespace

from torta.allocator.builtin import AllocatorOps, generic_book, generic_drained
from torta.policy.base import RequestInfo
from torta.sim.servers import EV_BATCH, EV_HOLD, EV_NET

NAN = math.nan
RID, ORG, MOD, PR, OUT, ARR, REG = range(7)


def python_allocator(eng, alloc) -> AllocatorOps:
    """A custom allocator's `choose(view, request, region)` behind `AllocatorOps`, validated."""
    T, view = eng.tables, eng.view
    S, stype, types, region = T.n_servers, T.stype, T.types, T.region
    book = generic_book(eng.fleet, T)
    pick = getattr(alloc, "choose", None)
    cp, bu = eng.control_plane, eng.fleet.busy_until_s
    info = request_info(eng)

    def choose(rid, o, m, p, out, arr, scope, now):
        if cp is not None:  # the information model: the deciding gateway (torta.sim.infomodel)
            cp.gateway = o if scope is None else scope
        view.now_s = now
        s = int(pick(view, info(rid, o, m, p, out, arr), scope))
        if not 0 <= s < S or stype[s][m] < 0 or types[stype[s][m]].kv_cap < p or (
                scope is not None and region[s] != scope):
            raise ValueError(f"allocator {type(alloc).__name__} chose server {s} for request "
                             f"{rid} (model {m}, prompt {p} tokens, region {scope}); "
                             "expected a server in the region able to hold it")
        if cp is not None:
            b0 = bu[s] if bu[s] > now else now
            book(s, m, p, out, now)
            cp.record(cp.gateway, s, bu[s] - b0, m, now)
            return s
        book(s, m, p, out, now)
        return s
    return AllocatorOps(choose=choose, book=book, drained=generic_drained(eng.fleet), on_plan=lambda planned: None)


def request_info(eng):
    """`info(position, origin, model, prompt, output, arrival_s) -> RequestInfo` as allocators see it:
    with the prefix cache on, it carries the ids of the prompt's full blocks."""
    req, pc = eng.req, eng.prefix
    if pc is None:
        return lambda rid, o, m, p, out, arr: RequestInfo(int(req.request_id[rid]), o, m, p, out, arr)
    blocks_of = pc.blocks_of
    return lambda rid, o, m, p, out, arr: RequestInfo(int(req.request_id[rid]), o, m, p, out, arr,
                                                      blocks_of(rid, p))


def routing_handlers(eng, srv) -> SimpleNamespace:
    """on_arrival, on_network_arrival, on_window_reached, on_window_closed and set_plan."""
    T = eng.tables
    heap, nxt, region, lat, near, fmax, rcap = eng.heap, eng.nxt, T.region, T.latency_s, T.near, \
        T.fleet_max_cap, T.region_max_cap
    ops, debug = eng.alloc, eng.cfg.debug
    choose, fast = ops.choose, ops.fast
    join = srv.join
    done, chunk_doubles, flush_done, put_done = eng.done, eng.chunk_doubles, eng.flush_done, eng.put_done
    add_done = done.frombytes
    win = eng.window_s
    window = _batch_window(eng, srv) if win else None
    plan_rows = None  # the slot's cumulative plan rows per origin and model, or None (no plan)

    def set_plan(rows):
        nonlocal plan_rows
        plan_rows = rows

    def on_arrival(rid, o, m, p, out, u, now):
        """A request appears at its origin: dropped, held for a batch window, routed by the slot's plan
        (it travels to the drawn region, then the allocator picks a server there) or, without a plan,
        placed by the allocator anywhere at once: then it joins that server's queue at once, ordered by
        the time it reaches the server (`join` with t_ready = now + latency), whichever the allocator.
        Returns the server chosen now, or -1."""
        if p > fmax[m]:
            add_done(put_done(rid, -1, -1, NAN, NAN, NAN, 1 if fmax[m] > 0 else 2))
            if len(done) >= chunk_doubles:
                flush_done()
            return -1
        cum = plan_rows
        if win:
            window.route([rid, o, m, p, out, now, -1], cum, u, now)
            return -1
        if cum is None:
            s = fast(m, p, out, now) if fast is not None else -1
            if s < 0:
                s = choose(rid, o, m, p, out, now, None, now)
            join(s, rid, m, p, out, now, now + lat[o][region[s]])
            return s
        r = bisect_right(cum[o][m], u)
        if rcap[r][m] < p or not rcap[r][m]:  # region cannot serve it: nearest that can
            for r in near[o][m]:
                if rcap[r][m] >= p:
                    break
        d = lat[o][r]
        if d > 0.0:
            heappush(heap, (now + d, nxt(), EV_NET, [rid, o, m, p, out, now, r], 0))
            return -1
        s = choose(rid, o, m, p, out, now, r, now)
        join(s, rid, m, p, out, now, now)
        return s

    def on_network_arrival(rec, now):
        """EV_NET: a request routed by the slot's plan reaches its serving region; the allocator picks
        its server there."""
        s = choose(rec[RID], rec[ORG], rec[MOD], rec[PR], rec[OUT], rec[ARR], rec[REG], now)
        if debug:  # completions report the server's region as the serving region
            assert rec[REG] == region[s], (rec[RID], rec[REG], s, region[s])
        join(s, rec[RID], rec[MOD], rec[PR], rec[OUT], now, now)
        return s

    return SimpleNamespace(on_arrival=on_arrival, on_network_arrival=on_network_arrival, set_plan=set_plan,
                           on_window_reached=window.hold if window else None,
                           on_window_closed=window.close if window else None)


def _batch_window(eng, srv) -> SimpleNamespace:
    """The batch-window hook (`torta.policy.base.BatchAllocator`): a request reaching its serving region
    waits in `held[r]` until the window its region's first held request opened closes (EV_BATCH, or at
    once when `batch_max_requests` are held); then `alloc.assign_batch` places the whole batch."""
    T, view, alloc = eng.tables, eng.view, eng.policy.allocator
    S, R, heap, nxt = T.n_servers, T.n_regions, eng.heap, eng.nxt
    region, stype, types, lat, near, rcap = T.region, T.stype, T.types, T.latency_s, T.near, T.region_max_cap
    win, wmax, held, wver = eng.window_s, eng.window_max, eng.held, [0] * R  # wver: window version per region
    book, join, check, debug = eng.alloc.book, srv.join, eng.check, eng.cfg.debug
    info = request_info(eng)

    def route(rec, cum, u, now):
        """The serving region (the plan's draw, or the allocator's `route` without a plan), re-routed
        like the per-request path when it cannot hold the request; the request travels there."""
        o, m, p = rec[ORG], rec[MOD], rec[PR]
        if cum is None:
            fn = getattr(alloc, "route", None)
            if fn is None:
                raise ValueError(f"allocator {type(alloc).__name__} has batch_window_s > 0 but no "
                                 "route(view, request) for slots without a macro plan")
            if eng.control_plane is not None:
                eng.control_plane.gateway = o
            view.now_s = now
            r = int(fn(view, info(rec[RID], o, m, p, rec[OUT], now)))
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
        """EV_HOLD: the request reached its region and joins the region's window."""
        r = rec[REG]
        h = held[r]
        h.append(rec)
        if len(h) == 1:
            heappush(heap, (now + win, nxt(), EV_BATCH, r, wver[r]))
        if len(h) >= wmax:
            return close(r, wver[r], now)
        return -1

    def close(r, version, now):
        """EV_BATCH (or a full window): assign the requests held in region r (alloc.assign_batch), book
        and enqueue them in the returned order. Returns the last server used (-1: a stale event)."""
        if version != wver[r]:
            return -1
        batch = held[r]
        held[r] = []
        wver[r] += 1
        if eng.control_plane is not None:
            eng.control_plane.gateway = r
        view.now_s = now
        infos = [info(x[RID], x[ORG], x[MOD], x[PR], x[OUT], x[ARR]) for x in batch]
        pairs = [(int(k), int(s)) for k, s in alloc.assign_batch(view, infos, r)]
        if sorted(k for k, _ in pairs) != list(range(len(batch))):
            raise ValueError(f"allocator {type(alloc).__name__}.assign_batch must return one (index, server) "
                             f"pair per held request ({len(batch)}), got indices {sorted(k for k, _ in pairs)}")
        s = -1
        for k, s in pairs:
            x = batch[k]
            m = x[MOD]
            if not 0 <= s < S or region[s] != r or stype[s][m] < 0 or types[stype[s][m]].kv_cap < x[PR]:
                raise ValueError(f"allocator {type(alloc).__name__} chose server {s} for request {x[RID]} "
                                 f"(model {m}, prompt {x[PR]} tokens, region {r}); expected a server in the "
                                 "region able to hold it")
            book(s, m, x[PR], x[OUT], now)
            join(s, x[RID], m, x[PR], x[OUT], now, now)
        if debug:
            for _, y in pairs:
                check(y, now)
        return s
    return SimpleNamespace(route=route, hold=hold, close=close)
