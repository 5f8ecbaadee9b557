"""Power-of-d choices on the gateway's view: the herd-robust least-loaded (`least-loaded-d<d>`).

On old information a pure global minimum herds: every gateway that read the same report sends its
requests to the same least-loaded server until the next report (issue 17 measured least-loaded's mean
response going from 6.3 s on live state to 53 s with 5 s reports on abilene). Real balancers avoid it
with randomised choice: the least loaded of d servers drawn at random (Mitzenmacher, "How useful is
old information?", IEEE TPDS 11(1), 2000: with stale load reports, d = 2 random candidates beat the
global minimum by a wide margin; NGINX's and Envoy's "power of two choices" balancers are the
deployed form).

A fleet-wide choice here: up to `d` servers drawn at random (the run's seeded stream, so replays are
reproducible) among the servers able to hold the request whose tail model, as the origin's gateway
perceives it, is the request's (warm); the earliest expected finish among them wins (perceived wait
plus the request's own expected work on that server: the fleet's GPUs differ up to 20-fold in speed).
A model is loaded only as the built-in warm least-loaded would load it: when no warm server was drawn, or the best drawn
one cannot start the request within the model's shortest load time, the gateway's full choice decides
(`torta.sim.infomodel.gateway_least_loaded`, or the built-in's on live state at S = 0). Region-scoped
choices are the built-in's. Every fleet-wide assignment is counted as the gateway's own.
"""

from __future__ import annotations

import random

from torta.allocator.builtin import AllocatorOps

DRAWS_PER_CANDIDATE = 4  # draws tried per wanted warm candidate before giving up on the sample


def power_of_d(ops: AllocatorOps, full_choose, fleet, tables, cp, d: int, seed: int) -> AllocatorOps:
    """`ops`: the built-in warm least-loaded (region scope, booking); `full_choose`: the fleet-wide
    choice used when the sample cannot decide (see the module docstring); `cp`: the control plane or
    None (live state)."""
    if int(d) < 1:
        raise ValueError(f"power-of-d: d = {d}; expected an integer >= 1")
    d = int(d)
    S, M = tables.n_servers, tables.n_models
    stype, types = tables.stype, tables.types
    cands = [[s for s in range(S) if stype[s][m] >= 0 and types[stype[s][m]].kv_cap > 0] for m in range(M)]
    min_load = [min((types[stype[s][m]].load_s for s in cands[m]), default=0.0) for m in range(M)]
    bu, tailm = fleet.busy_until_s, fleet.tail_model
    rng = random.Random(seed)
    draw = rng.randrange
    book = ops.book

    def choose(rid, o, m, p, out, arr, scope, now):
        if scope is not None:
            return ops.choose(rid, o, m, p, out, arr, scope, now)
        cm = cands[m]
        n = len(cm)
        best, bs, wait, got = float("inf"), -1, 0.0, 0
        for _ in range(DRAWS_PER_CANDIDATE * d):
            s = cm[draw(n)]
            ty = types[stype[s][m]]
            if ty.kv_cap < p:
                continue
            if cp is not None:  # the gateway's view (its own region live)
                tm, b = cp.tail_model(o, s, now), cp.busy_until(o, s, now)
            else:
                tm, b = tailm[s], bu[s]
            if tm != m:
                continue
            w = b - now
            if w < 0.0:
                w = 0.0
            f = w + ty.work_s(p, out)  # heterogeneous GPUs: the expected finish, not the wait
            if f < best:
                best, bs, wait = f, s, w
            got += 1
            if got == d:
                break
        if bs < 0 or wait > min_load[m]:
            return full_choose(rid, o, m, p, out, arr, scope, now)
        b0 = bu[bs] if bu[bs] > now else now
        book(bs, m, p, out, now)
        if cp is not None:
            cp.record(o, bs, bu[bs] - b0, m, now)
        return bs
    return AllocatorOps(choose=choose, book=book, drained=ops.drained, on_plan=ops.on_plan, fast=None,
                        state=ops.state)
