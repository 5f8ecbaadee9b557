"""The surrogate with warm-model state (issue 18, item 3): servers per region per model, switches that cost
the model's load time (lost service) and its GPU-hours, queues carried between slots per region and model.

`WarmFleet` adds to `torta.rl.fleet.SurrogateFleet` what the placement needs, from the fleet's server types
(`torta.sim.cluster.build_tables`), as `torta-horizon` computes it (torta.planner.horizon_policy): servers of
each region able to hold each model (`capable_rm`), the mean load time of one of them (`load_s_rm`), the
GPU-seconds and dollars of one load (`gpu_s_rm`, `load_usd_rm`: load time x tp x the GPU's $/h, the replay's
`switching_usd`), and the initial placement (each server's `initial_model`).

`WarmDynamics.step` is one macro slot (`slot_s`), batched over B environments (numpy):

1. arrivals: each origin's demand of model m is routed by that model's plan row (shares (B, M, R, R)); a share
   sent where m cannot run goes to the origin's nearest region that can (the simulator re-routes it);
   arrived work A[j, m] = requests x the estimated work of one request of m on j's servers (the latency
   model's per-token costs, `torta.planner.fleetcost.region_facts`: 1 / `rps_rm`);
2. placement: the planner's targets (servers per region per model; clipped to what the region may hold),
   else the placement carried from the previous slot. A server that takes a model it did not hold loads it:
   `load_s_rm` of the slot is lost service (no work done), and the load's GPU-hours are charged;
3. spill-over (with `spill_s`, the TORTA micro layer's, `torta.allocator.greedy.PlannedAllocator`): requests
   planned to a region whose expected wait (queue per server; for a model it holds on no server, the load
   time + margin) is `spill_s` longer than a nearby capable region's (network delay included) go there, up
   to its spare capacity;
4. reactive switches (the micro layer's rule, `torta.allocator.targets`: a switch the plan did not ask for
   happens when the expected wait for a warm server exceeds the load time by `switch_margin_s`): where a
   model's queue at the slot's end would keep its servers busy longer than load time + margin (or a model has
   demand and no server), servers move to it from models of the same region with at least one whole
   server of spare capacity in the slot (a model keeps its last server while it has demand);
5. service: n servers of m deliver n x slot x `capacity_derate` server-seconds of estimated work (minus the
   loads); queued work beyond it is carried to the next slot per region and model. A model left without
   servers while its queue is not empty has it drained by the servers that left it first (their time is
   taken from the models they load);
6. response time of a request from i served by (j, m): 2 x latency_ij (forward + return) + the unloaded
   latency x (1 + rho) (decode slows as batches grow) + an M/M/c wait (Sakasegawa's approximation,
   c = the model's servers, rho = arrived work / capacity, capped at 0.98) + the fluid wait behind the queue
   (mean of the queue at the slot's start and end, drained at the model's capacity) + the cold-start wait
   of a model loaded onto a region that held none (arrivals during the load wait for it);
7. utilisation per region = served work / (servers x slot) (the simulator's definition,
   `torta.sim.accounting`); load imbalance, cost and churn as the plain surrogate (`torta.rl.env`), the cost
   with the loads' dollars added.

The plain surrogate (`torta.rl.env.Dynamics`) stays as it was: the checkpoints trained on it load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from torta.rl.fleet import SurrogateFleet, fleet_from_world


@dataclass(frozen=True)
class WarmFleet:
    """A `SurrogateFleet` plus the placement facts (R regions, M models)."""

    base: SurrogateFleet
    capable_rm: np.ndarray  # (R, M) servers of r that may hold m
    servers_any: np.ndarray  # (R,) servers of r that may hold some model
    load_s_rm: np.ndarray  # (R, M) seconds one of r's servers takes to load m (mean over them)
    gpu_s_rm: np.ndarray  # (R, M) GPU-seconds of one such load (load_s x tp)
    load_usd_rm: np.ndarray  # (R, M) dollars of one such load (GPU-hours x $/GPU-hour)
    initial_rm: np.ndarray  # (R, M) servers holding m at the replay's start

    def __post_init__(self) -> None:
        r, m = self.base.n_regions, self.base.n_models
        for name in ("capable_rm", "load_s_rm", "gpu_s_rm", "load_usd_rm", "initial_rm"):
            a = np.asarray(getattr(self, name))
            if a.shape != (r, m):
                raise ValueError(f"WarmFleet.{name} must have shape ({r}, {m}), got {a.shape}")
            if not np.all(np.isfinite(a)) or np.any(a < 0):
                raise ValueError(f"WarmFleet.{name} must be finite and >= 0")
        if np.asarray(self.servers_any).shape != (r,):
            raise ValueError(f"WarmFleet.servers_any must have shape ({r},)")

    @property
    def n_regions(self) -> int:
        return self.base.n_regions

    @property
    def n_models(self) -> int:
        return self.base.n_models


def placement_facts(tables: Any) -> dict[str, np.ndarray]:
    """capable, load_s, gpu_s, load_usd per (region, model), servers able to hold some model, and the
    initial placement, from `torta.sim.cluster.build_tables` (as torta-horizon computes load_s and gpu_s)."""
    r_n, m_n = tables.n_regions, tables.n_models
    out = {k: np.zeros((r_n, m_n)) for k in ("capable_rm", "load_s_rm", "gpu_s_rm", "load_usd_rm", "initial_rm")}
    out["servers_any"] = np.zeros(r_n)
    for r in range(r_n):
        for m in range(m_n):
            ss = tables.capable[r][m]
            out["capable_rm"][r, m] = len(ss)
            if ss:
                load = [tables.types[tables.stype[s][m]].load_s for s in ss]
                out["load_s_rm"][r, m] = float(np.mean(load))
                out["gpu_s_rm"][r, m] = float(np.mean([ld * tables.tp[s] for ld, s in zip(load, ss)]))
                # usd_per_hour is per server (all its GPUs): a load costs its seconds at that rate
                out["load_usd_rm"][r, m] = float(np.mean([ld / 3600.0 * tables.usd_per_hour[s]
                                                          for ld, s in zip(load, ss)]))
        for s in tables.servers_in_region[r]:
            if any(t >= 0 for t in tables.stype[s]):
                out["servers_any"][r] += 1
                m0 = tables.initial_model[s]
                if tables.stype[s][m0] >= 0:
                    out["initial_rm"][r, m0] += 1
    return out


def warm_fleet_from_world(world: Any, mean_prompt_tokens: float | None = None, mean_output_tokens: float | None = None,
                          model_share: np.ndarray | None = None) -> WarmFleet:
    from torta.sim.cluster import build_tables

    kw = {k: v for k, v in (("mean_prompt_tokens", mean_prompt_tokens), ("mean_output_tokens", mean_output_tokens))
          if v is not None}
    base = fleet_from_world(world, model_share=model_share, **kw)
    return WarmFleet(base=base, **placement_facts(build_tables(world)))


def clip_placement(n: np.ndarray, capable: np.ndarray, servers_any: np.ndarray) -> np.ndarray:
    """(..., R, M) integer placement within what each region may hold: n <= capable, row sums <= servers."""
    out = np.clip(np.rint(np.asarray(n, dtype=float)), 0.0, capable)
    over = out.sum(-1) - servers_any
    while np.any(over > 0):  # rare (targets are rounded within the servers): trim the largest holder
        idx = np.argmax(out, axis=-1)
        dec = (over > 0).astype(float)
        np.put_along_axis(out, idx[..., None], np.take_along_axis(out, idx[..., None], -1) - dec[..., None], -1)
        over = out.sum(-1) - servers_any
    return out


EPS_WORK_S = 1e-6  # server-seconds of work below which a queue or a demand counts as none


@dataclass(frozen=True)
class WarmCalibration:
    """Scales of the response-time terms (module docstring, step 6): the decode slowdown (unloaded latency x
    rho), the M/M/c wait and the fluid wait behind the queue; `WarmCalibration.none()` = the uncalibrated
    model (1.0 each).

    Defaults fitted on validation day 11 (abilene, servegen-mix-14d, seed 0, torta-horizon's decisions over
    the warm-started full day, `python -m torta.commands.gap_report --keep ...`): non-negative least squares of the
    replay's per-slot mean response minus the network, unloaded and queue terms on the slowdown and M/M/c
    terms, weighted by the slot's requests: 0.589 and 0.932 (the uncalibrated model said +16.9 % mean
    response there). Training day 10 is the out-of-sample check (torta/rl/README.md). Never fitted on the
    test days."""

    slowdown: float = 0.589
    queue_scale: float = 0.932
    backlog_scale: float = 1.0

    @classmethod
    def none(cls) -> "WarmCalibration":
        return cls(1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        for n in ("slowdown", "queue_scale", "backlog_scale"):
            v = getattr(self, n)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"WarmCalibration.{n} must be a finite number >= 0, got {v!r}")


class WarmDynamics:
    """The slot transition with warm-model state (module docstring): `step(shares, a, n, W, price, targets)`."""

    def __init__(self, fleet: WarmFleet, switch_margin_s: float = 20.0, reactive: bool = True,
                 spill_s: float | None = None, spill_regions: int = 6,
                 calibration: "WarmCalibration | None" = None) -> None:
        if not switch_margin_s >= 0:
            raise ValueError(f"switch_margin_s must be >= 0, got {switch_margin_s!r}")
        if spill_s is not None and not spill_s >= 0:
            raise ValueError(f"spill_s must be >= 0 or None, got {spill_s!r}")
        self.wf = fleet
        f = self.f = fleet.base
        r, m = f.n_regions, f.n_models
        self.calibration = calibration or WarmCalibration()
        self.switch_margin_s = float(switch_margin_s)
        self.reactive = bool(reactive)
        self.spill_s = spill_s
        lat = np.asarray(f.latency_ms, dtype=float)
        # per (region, model): the spill_regions nearest other regions able to hold m, nearest first
        self.spill_to = [[[k for k in np.lexsort((np.arange(r), lat[j])) if k != j and fleet.capable_rm[k, mm] > 0
                           and f.rps_rm[k, mm] > 0][:spill_regions] for mm in range(m)] for j in range(r)]
        self.lat_s = lat / 1000.0
        ok = (f.rps_rm > 0) & (fleet.capable_rm > 0)
        self.ok = ok.astype(float)
        self.work = np.where(ok, 1.0 / np.where(ok, f.rps_rm, 1.0), 0.0)  # (R, M) server-seconds per request
        near = np.zeros((r, r, m))
        for i in range(r):
            for mm in range(m):
                if f.near_rm[i, mm] >= 0:
                    near[i, f.near_rm[i, mm], mm] = 1.0
        self.near = near
        self.srv_slot = f.slot_s * f.capacity_derate  # work one server delivers in a slot
        self.lat2_s = 2.0 * f.latency_ms / 1000.0
        self.transfer = (1.0 - np.eye(r)) * f.transfer_usd_per_request
        self.has = f.servers > 0
        self.w_srv = np.where(self.has, f.servers, 0.0) / max(float(np.where(self.has, f.servers, 0.0).sum()), 1e-12)
        self.load = np.minimum(fleet.load_s_rm, f.slot_s)  # (R, M)

    def route(self, shares: np.ndarray, a: np.ndarray) -> np.ndarray:
        """x (B, i, j, m): requests of origin i's model m served in j."""
        x = a[:, :, None, :] * np.moveaxis(shares, 1, -1)  # shares (B, m, i, j) -> (B, i, j, m)
        lost = (x * (1.0 - self.ok[None, None])).sum(axis=2)
        return x * self.ok[None, None] + lost[:, :, None, :] * self.near[None]

    def _spill(self, x: np.ndarray, n: np.ndarray, W: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The micro layer's spill-over (torta.allocator.greedy.PlannedAllocator with `spill_s`): requests
        planned to a region whose expected wait (its queue per server; a model it holds on no server: the
        load time + margin) exceeds a nearby region's (network delay included) by more than `spill_s` go
        there, up to that region's spare capacity in the slot. Returns x with the spilled requests moved."""
        x = x.copy()
        derate, margin, s = self.f.capacity_derate, self.switch_margin_s, self.srv_slot
        cap = n * s - u * self.load[None] * derate

        def wait_of(A, W_, cap_, n_, cold_s):
            over = np.maximum(W_ + A - cap_, 0.0)
            return over, np.where(n_ > 0, 0.5 * (W_ + over) / np.maximum(n_ * derate, 1e-12), cold_s)

        A_all = np.einsum("bijm,jm->bjm", x, self.work)
        _, wait_all = wait_of(A_all, W, cap, n, (self.load + margin)[None])
        long = ((wait_all > self.spill_s) & (A_all > 0)).any(0)  # (R, M): somewhere a request may spill
        for j, m in zip(*np.nonzero(long)):
            if not self.spill_to[j][m]:
                continue
            A = x[:, :, j, m].sum(1) * self.work[j, m]
            over, wait = wait_of(A, W[:, j, m], cap[:, j, m], n[:, j, m], self.load[j, m] + margin)
            nj = n[:, j, m]
            movable = np.where(nj > 0, np.minimum(over, A), A)  # work that would wait
            for k in self.spill_to[j][m]:
                nk = n[:, k, m]
                Ak = x[:, :, k, m].sum(1) * self.work[k, m]
                spare = np.maximum(cap[:, k, m] - W[:, k, m] - Ak, 0.0)
                wk = np.where(nk > 0, 0.5 * W[:, k, m] / np.maximum(nk * derate, 1e-12), np.inf)
                go = (wk + self.lat_s[j, k] + self.spill_s < wait) & (movable > 0) & (spare > 0)
                if not go.any():
                    continue
                # requests moved: work at j's cost per request, placed within k's spare at k's cost
                req_j = movable / self.work[j, m]
                req = np.where(go, np.minimum(req_j, spare / max(self.work[k, m], 1e-12)), 0.0)
                tot = x[:, :, j, m].sum(1)
                frac = np.where(tot > 0, np.minimum(req / np.maximum(tot, 1e-12), 1.0), 0.0)
                moved = x[:, :, j, m] * frac[:, None]
                x[:, :, j, m] -= moved
                x[:, :, k, m] += moved
                movable = movable - req * self.work[j, m]
        return x

    def _reactive(self, n: np.ndarray, demand_w: np.ndarray, u: np.ndarray,
                  targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Switches the micro layer makes on its own (module docstring, step 4): returns (n, u) updated. A
        donor model at or below its target (the plan keeps it warm) gives a server only when the wait also
        pays for loading it back (`torta.allocator.targets`); a model with demand and no server takes one
        from the region's largest other holder when no donor has a whole server spare (the allocator must
        place the request somewhere: on a server that loads the model behind its queue)."""
        wf = self.wf
        derate = wf.base.capacity_derate
        n, u = n.copy(), u.copy()
        s = self.srv_slot
        m_n = n.shape[-1]
        demand_w = np.where(demand_w > EPS_WORK_S, demand_w, 0.0)
        for m in range(m_n):
            cap = n * s - u * self.load[None] * derate
            excess = demand_w[..., m] - cap[..., m]  # (B, R) work left at the slot's end
            per = np.where(n[..., m] > 0, excess / np.maximum(n[..., m] * derate, 1e-12),
                           np.where(demand_w[..., m] > 0, np.inf, 0.0))
            room = n[..., m] < wf.capable_rm[None, :, m]
            bar = self.load[None, :, m] + self.switch_margin_s
            want = (per > bar) & room
            if not want.any():
                continue
            gain = max(s - self.load[:, m].max() * derate, 1e-9)
            need = np.where(np.isinf(per), np.maximum(np.ceil(np.maximum(excess, 0) / gain), 1.0),
                            np.ceil(np.maximum(excess, 0) / gain))
            need = np.where(want, np.minimum(need, wf.capable_rm[None, :, m] - n[..., m]), 0.0)
            for d in range(m_n):
                if d == m or not need.any():
                    continue
                spare = np.floor(np.maximum(cap[..., d] - demand_w[..., d], 0.0) / s)
                keep = (demand_w[..., d] > 0).astype(float)
                ok = want
                if targets is not None:  # the plan keeps d warm: the wait must pay for loading d back too
                    ok = want & ((n[..., d] > targets[..., d]) | (per > bar + self.load[None, :, d] + self.switch_margin_s))
                k = np.minimum(np.minimum(spare, np.maximum(n[..., d] - keep, 0.0)), need)
                k = np.where(ok, np.maximum(k, 0.0), 0.0)
                n[..., d] -= k
                n[..., m] += k
                u[..., m] += k
                need = need - k
            stuck = (n[..., m] <= 0) & (demand_w[..., m] > 0) & room
            if stuck.any():
                others = np.where(np.arange(m_n)[None, None, :] == m, -1.0, n)
                d = np.argmax(others, axis=-1)
                nd = np.take_along_axis(n, d[..., None], -1)[..., 0]
                dd = np.take_along_axis(demand_w, d[..., None], -1)[..., 0]
                give = stuck & ((nd >= 2) | ((nd >= 1) & (dd <= 0)))
                if give.any():
                    g = give.astype(float)
                    np.put_along_axis(n, d[..., None], (nd - g)[..., None], -1)
                    n[..., m] += g
                    u[..., m] += g
        return n, u

    def step(self, shares: np.ndarray, a: np.ndarray, n_prev: np.ndarray, W: np.ndarray, price: np.ndarray,
             targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """shares (B, M, R, R) per-model plans; a (B, R, M) requests; n_prev, W (B, R, M) placement and queued
        work at the slot's start; price (B, R); targets (B, R, M) or None. Returns (n, W', info)."""
        wf, f = self.wf, self.f
        derate = f.capacity_derate
        x = self.route(shares, a)
        if targets is not None:
            n = clip_placement(targets, wf.capable_rm, wf.servers_any)
        else:
            n = n_prev.copy()
        u = np.maximum(n - n_prev, 0.0)
        if self.spill_s is not None:
            x = self._spill(x, n, W, u)
        A = np.einsum("bijm,jm->bjm", x, self.work)
        if self.reactive:
            n, u = self._reactive(n, W + A, u, None if targets is None else n.copy())
        v = np.maximum(n_prev - n, 0.0)  # servers that left a model
        cap = n * self.srv_slot - u * self.load[None] * derate
        # a model left without servers: those that left it drain its queue first, in their new models' time
        orphan = (n <= 0) & (W > 0)
        drain = np.where(orphan, np.minimum(W, v * self.srv_slot), 0.0)
        cap = np.where(orphan, drain, cap)
        d_reg = drain.sum(-1, keepdims=True)
        u_sum = u.sum(-1, keepdims=True)
        cap = cap - np.where(u_sum > 0, d_reg * u / np.maximum(u_sum, 1e-12), 0.0)
        cap = np.maximum(cap, 0.0)
        total = W + A
        served = np.minimum(total, cap)
        W2 = total - served
        W2 = np.where(W2 > EPS_WORK_S, W2, 0.0)  # float residue is no queue (it would trigger switches)
        util = np.where(self.has, served.sum(-1) / (np.maximum(f.servers, 1.0) * f.slot_s), 0.0)
        rate = np.maximum(cap, 1e-3 * self.srv_slot) / f.slot_s  # work per second the model drains
        rho = np.where(cap > 0, np.minimum(A / np.maximum(cap, 1e-12), 0.98), 0.98)
        c = np.maximum(n, 1.0)
        work_real = self.work[None] / derate
        wq = work_real * rho ** (np.sqrt(2.0 * (c + 1.0)) - 1.0) / (c * (1.0 - rho))
        backlog_wait = 0.5 * (W + W2) / rate
        cold = (n_prev <= 0) & (n > 0)
        cold_wait = np.where(cold, self.load[None] ** 2 / (2.0 * f.slot_s), 0.0)
        cal = self.calibration
        parts = [f.lat_s_rm[None] + 0.0 * rho, cal.slowdown * f.lat_s_rm[None] * rho, cal.queue_scale * wq,
                 cal.backlog_scale * backlog_wait + cold_wait]  # (B, j, m) each
        svc = parts[0] + parts[1] + parts[2] + parts[3]
        req = x.sum(axis=(1, 2, 3))
        net = np.einsum("bijm,ij->b", x, self.lat2_s)
        rt_sum = net + np.einsum("bijm,bjm->b", x, svc)
        rt = np.where(req > 0, rt_sum / np.maximum(req, 1e-12), 0.0)
        per_req = 1.0 / np.maximum(req, 1e-12)
        rt_parts = np.stack([net * per_req] + [np.einsum("bijm,bjm->b", x, p) * per_req for p in parts], axis=1)
        mu = (util * self.w_srv).sum(1)
        lb = np.sqrt(((util - mu[:, None]) ** 2 * self.w_srv).sum(1))
        energy = np.einsum("bijm,jm,bj->b", x, f.energy_kwh_rm, price) / 1000.0
        transfer = np.einsum("bijm,ij->b", x, self.transfer)
        switch_usd = (u * wf.load_usd_rm[None]).sum(axis=(1, 2))
        info = {"rt_s": rt, "util": util, "lb": lb, "cost_usd": energy + transfer + switch_usd,
                "requests": req, "backlog_s": W2.sum(-1), "switches": u.sum(axis=(1, 2)), "placement": n,
                "served_s": served, "arrived_s": A, "rt_parts": rt_parts}
        return n, W2, info
