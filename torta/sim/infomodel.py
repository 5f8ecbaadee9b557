"""The control-plane information model: what a routing decision may know about remote servers.

A gateway in each origin region routes that region's requests. It sees its own region's servers live
and every other region's servers as of the last load report it has received: every server's state is
snapshotted every `refresh_s` seconds of simulated time (a report), and gateway g receives region r's
part of the report taken at t_k = k x refresh_s at t_k + one-way latency(r -> g). Between reports a
gateway counts its own assignments (their expected work and their number), not the other gateways',
so gateways that act on the same report herd onto the same region.

`refresh_s = 0` is the oracle (instant global state): the engine then builds no `ControlPlane` at all,
so the replay is the one without the model, byte for byte (tests/test_infomodel.py checks it per
policy).

Who is a gateway: the region where the decision is taken. A request placed at its origin (no macro
plan, or a policy that routes per request in global scope: least-loaded, skylb, acs, TORTA's
per-request plan draw and spill-over) is decided by its origin's gateway; a request placed when it
reaches its planned region (the engine's plan seam, batch windows) is decided there, on live state of
that region. Slot-level planners read `SlotState` aggregates, unchanged.

What a gateway g perceives of a remote server s (report k, the newest g has received from s's region):
- busy-until: max(report busy-until, t_k), and once g assigned requests to s since t_k the larger of
  that plus their expected work and the busy-until g's last assignment left (max(perceived, then) +
  its work): the wait `busy-until - now` ages with time as the real one would and grows with g's own
  assignments only;
- queue length: the report's waiting requests + g's assignments to s since t_k;
- batch size: the report's;
- tail model: the model of g's last assignment to s since t_k, else the report's.

Default refresh interval: no deployed figure was found for a geo load balancer's cross-region
load-report period (Envoy's Load Reporting Service and ORCA out-of-band reports make it a configured
`load_reporting_interval` / `oob_reporting_period`, without a cited default for geo routing), so the
protocol's 5 s (`torta.config.EvalProtocol.state_refresh_s`) is an assumption: a few seconds of
aggregation on top of the network delay, the order issue 17's prototype was run at.
"""

from __future__ import annotations

import math

from torta.sim.servers import Q_RDY, QW


class Report:
    """One snapshot of every server's state at `t_s`, and every gateway's booked-work and assignment
    counters at that time (so 'own assignments since the report' is a difference)."""

    __slots__ = ("t_s", "bu", "tail", "nact", "qlen", "own_work", "own_n")

    def __init__(self, t_s, bu, tail, nact, qlen, own_work, own_n) -> None:
        self.t_s, self.bu, self.tail, self.nact, self.qlen = t_s, bu, tail, nact, qlen
        self.own_work, self.own_n = own_work, own_n


class ControlPlane:
    """The reports and the gateways' own counters (see the module docstring)."""

    def __init__(self, fleet, tables, refresh_s: float) -> None:
        if not (math.isfinite(refresh_s) and refresh_s > 0):
            raise ValueError(f"state_refresh_s must be a finite number of seconds > 0 here, got {refresh_s}")
        self.fleet, self.tables, self.refresh_s = fleet, tables, float(refresh_s)
        S, R = tables.n_servers, tables.n_regions
        self.region = tables.region
        self.sir = tables.servers_in_region
        self.lat = tables.latency_s
        self.max_lat_s = max((max(row) for row in self.lat), default=0.0)
        self.own_work = [[0.0] * S for _ in range(R)]  # expected work booked by gateway g on s (cumulative)
        self.own_n = [[0] * S for _ in range(R)]  # assignments of gateway g to s (cumulative)
        self.own_tail = [[-1] * S for _ in range(R)]  # model of g's last assignment to s
        self.own_bu = [[0.0] * S for _ in range(R)]  # busy-until g perceived for s after its last assignment
        self.own_ver = [[0] * R for _ in range(R)]  # assignments of gateway g into region r (cumulative)
        self._rs: list[list] = [[None] * R for _ in range(R)]  # region_state's (report, own_ver, state)
        self.reports: list[Report] = []  # newest last; old ones dropped once every gateway has a newer one
        self.gateway = 0  # the gateway taking the current decision (set by the engine before each call)
        self.now_s = 0.0
        self.reports_taken = 0

    def report(self, now: float) -> None:
        """Take the report of time `now` (an EV_REPORT event)."""
        f = self.fleet
        qd, qh = f.queue, f.queue_head
        qlen = []
        for s in range(len(qd)):
            qs, h = qd[s], qh[s]
            k = len(qs)
            while k > h and qs[k - QW + Q_RDY] > now:  # still travelling to s
                k -= QW
            qlen.append((k - h) // QW)
        self.reports.append(Report(now, list(f.busy_until_s), list(f.tail_model), list(f.batch_size), qlen,
                                   [list(x) for x in self.own_work], [list(x) for x in self.own_n]))
        self.reports_taken += 1
        # a report is needed while a gateway may not have received the next one yet
        while len(self.reports) > 1 and self.reports[1].t_s + self.max_lat_s <= now:
            del self.reports[0]

    def seen(self, g: int, r: int, now: float) -> Report:
        """The newest report of region r that gateway g has received by `now` (the oldest kept before
        the first one arrives)."""
        d = self.lat[r][g]
        reps = self.reports
        for k in range(len(reps) - 1, 0, -1):
            if reps[k].t_s + d <= now:
                return reps[k]
        return reps[0]

    def record(self, g: int, s: int, work_s: float, model: int, now: float) -> None:
        """Gateway g assigned a request of `work_s` expected seconds (load time included) to s at `now`."""
        if self.region[s] != g:
            b = self.busy_until(g, s, now)
            self.own_bu[g][s] = (b if b > now else now) + work_s
        self.own_work[g][s] += work_s
        self.own_n[g][s] += 1
        self.own_ver[g][self.region[s]] += 1
        self.own_tail[g][s] = model

    # what gateway g perceives of server s at `now` --------------------------------------------------
    def busy_until(self, g: int, s: int, now: float) -> float:
        if self.region[s] == g:
            return self.fleet.busy_until_s[s]
        rep = self.seen(g, self.region[s], now)
        b = rep.bu[s]
        if b < rep.t_s:
            b = rep.t_s
        if self.own_n[g][s] == rep.own_n[g][s]:
            return b
        b += self.own_work[g][s] - rep.own_work[g][s]
        c = self.own_bu[g][s]
        return b if b > c else c

    def tail_model(self, g: int, s: int, now: float) -> int:
        if self.region[s] == g:
            return self.fleet.tail_model[s]
        rep = self.seen(g, self.region[s], now)
        if self.own_n[g][s] != rep.own_n[g][s]:
            return self.own_tail[g][s]
        return rep.tail[s]

    def batch_size(self, g: int, s: int, now: float) -> int:
        if self.region[s] == g:
            return self.fleet.batch_size[s]
        return self.seen(g, self.region[s], now).nact[s]

    def region_state(self, g: int, r: int, now: float) -> tuple:
        """(busy-until, tail model, batch size) of region r's servers as gateway g perceives them at
        `now`, indexed by server id: the live lists where r is g's own region, else dicts over r's servers
        with exactly the values of `busy_until`, `tail_model` and `batch_size` (one report lookup for the
        region instead of one per server and field: the allocators' per-region scans read these). A
        remote perception changes only with the report g has of r and g's own assignments into r, so it
        is computed once per (report, assignment count); callers must not modify it."""
        f = self.fleet
        if r == g:
            return f.busy_until_s, f.tail_model, f.batch_size
        rep = self.seen(g, r, now)
        v = self.own_ver[g][r]
        hit = self._rs[g][r]
        if hit is not None and hit[0] is rep and hit[1] == v:
            return hit[2]
        t, rbu, rtail, rnact = rep.t_s, rep.bu, rep.tail, rep.nact
        on, ow, obu, ot = self.own_n[g], self.own_work[g], self.own_bu[g], self.own_tail[g]
        ron, row = rep.own_n[g], rep.own_work[g]
        bu, tail, nact = {}, {}, {}
        for s in self.sir[r]:
            b = rbu[s]
            if b < t:
                b = t
            if on[s] == ron[s]:
                tail[s] = rtail[s]
            else:
                b += ow[s] - row[s]
                c = obu[s]
                if c > b:
                    b = c
                tail[s] = ot[s]
            bu[s] = b
            nact[s] = rnact[s]
        state = (bu, tail, nact)
        self._rs[g][r] = (rep, v, state)
        return state

    def queue_len(self, g: int, s: int, now: float, live_len) -> int:
        if self.region[s] == g:
            return live_len(s)
        rep = self.seen(g, self.region[s], now)
        return rep.qlen[s] + self.own_n[g][s] - rep.own_n[g][s]


class _Seen:
    """A read-only per-server sequence of what the current gateway perceives (one field)."""

    __slots__ = ("_get", "_cp", "_n")

    def __init__(self, get, cp: ControlPlane, n: int) -> None:
        self._get, self._cp, self._n = get, cp, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, s: int):
        cp = self._cp
        return self._get(cp.gateway, s, cp.now_s)


class GatewayView:
    """`torta.sim.engine.FleetView` as the current gateway perceives it: the same attributes and
    methods, remote servers' state from the reports (`ControlPlane`). A Python allocator gets this view
    instead of the live one when the information model is on; its object identity stays the same for
    the whole replay (allocators cache per view)."""

    def __init__(self, view, cp: ControlPlane) -> None:
        self._live, self._cp = view, cp
        self.live_view = view  # the live state (slot-level planners read it, as without the model)
        self.per_gateway = True  # allocators that keep their own counters keep them per gateway
        self.tables = view.tables
        n = view.tables.n_servers
        live_q = view.queue_len
        self.busy_until_s = _Seen(cp.busy_until, cp, n)
        self.tail_models = _Seen(cp.tail_model, cp, n)
        self.batch_sizes = _Seen(cp.batch_size, cp, n)
        self.queue_lengths = _Seen(lambda g, s, now: cp.queue_len(g, s, now, live_q), cp, n)
        self.loaded_models = view.loaded_models  # what a server holds now: local knowledge only matters
        self.kv_reserved_tokens = view.kv_reserved_tokens

    @property
    def now_s(self) -> float:
        return self._live.now_s

    @now_s.setter
    def now_s(self, t: float) -> None:
        self._live.now_s = t
        self._cp.now_s = t

    @property
    def n_servers(self) -> int:
        return self.tables.n_servers

    def __getattr__(self, name):  # table facts and the remaining methods of FleetView
        return getattr(self._live, name)

    def loaded_model(self, server: int) -> int:
        return self._live.loaded_model(server)

    def region_state(self, region: int) -> tuple:
        """(busy_until_s, tail_models, batch_sizes) of `region`'s servers as the current gateway perceives
        them now, indexed by server id (`ControlPlane.region_state`)."""
        cp = self._cp
        return cp.region_state(cp.gateway, region, cp.now_s)

    def tail_model(self, server: int) -> int:
        return self.tail_models[server]

    def backlog_s(self, server: int) -> float:
        return max(0.0, self.busy_until_s[server] - self.now_s)

    def queue_len(self, server: int) -> int:
        return self.queue_lengths[server]

    def batch(self, server: int) -> int:
        return self.batch_sizes[server]


def gateway_least_loaded(ops, fleet, tables, cp: ControlPlane):
    """The built-in warm least-loaded (`torta.allocator.builtin.warm_least_loaded`, `ops`) with its
    fleet-wide choice taken by the origin's gateway on perceived state: the least expected wait
    (busy-until - now, plus the load time where the server will not hold the model) over every server
    able to hold the request, local servers live, remote ones from the reports; ties by latency from
    the origin, then server id (the built-in breaks zero-wait ties by the nearest region too). Region-
    scoped choices (a plan's region, decided there) stay the built-in's, on live state. Every fleet-wide
    assignment is counted as the gateway's own (`ControlPlane.record`). Returns `AllocatorOps`."""
    from torta.allocator.builtin import AllocatorOps

    S, M = tables.n_servers, tables.n_models
    stype, types, region, lat = tables.stype, tables.types, tables.region, tables.latency_s
    cands = [[(s, region[s], types[stype[s][m]].kv_cap, types[stype[s][m]].load_s)
              for s in range(S) if stype[s][m] >= 0] for m in range(M)]
    bu, tailm = fleet.busy_until_s, fleet.tail_model
    region_state, inner_choose, book = cp.region_state, ops.choose, ops.book
    nwarm = ops.state.nwarm[tables.n_regions]  # servers fleet-wide per tail model (live)

    def choose(rid, o, m, p, out, arr, scope, now):
        if scope is not None:
            return inner_choose(rid, o, m, p, out, arr, scope, now)
        lo = lat[o]
        seen_of: dict = {}  # region -> (busy-until, tail model) as gateway o perceives them now
        best, bl, bs = math.inf, math.inf, -1
        lbest, lbl, ls, any_warm = math.inf, math.inf, -1, False
        for s, r, cap, load in cands[m]:
            if cap < p:
                continue
            if r == o:
                w = bu[s] - now
                tm = tailm[s]
            else:
                st = seen_of.get(r)
                if st is None:
                    st = seen_of[r] = region_state(o, r, now)
                w = st[0][s] - now
                tm = st[1][s]
            if w < 0.0:
                w = 0.0
            if tm != m:
                if nwarm[tailm[s]] < 2:  # minReplicas = 1 (as the built-in): a model's last warm server
                    if w + load < lbest or (w + load == lbest and lo[r] < lbl):
                        lbest, lbl, ls = w + load, lo[r], s
                    continue
                w += load
            else:
                any_warm = True
            if w < best or (w == best and lo[r] < bl):
                best, bl, bs = w, lo[r], s
        if not any_warm and ls >= 0 and (lbest < best or (lbest == best and lat[o][region[ls]] < bl)):
            bs = ls  # no warm server of m anywhere: a last warm server of another model may load it
        if bs < 0:
            raise ValueError(f"no server can hold request {rid} (model {m}, {p} prompt tokens)")
        b0 = bu[bs] if bu[bs] > now else now
        book(bs, m, p, out, now)
        cp.record(o, bs, bu[bs] - b0, m, now)
        return bs
    return AllocatorOps(choose=choose, book=book, drained=ops.drained, on_plan=ops.on_plan, fast=None,
                        state=ops.state)

