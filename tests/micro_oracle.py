"""Test oracle: the TORTA micro allocator's cost over its own state (numpy, no simulator), a second and
independent implementation of torta.allocator.greedy.TortaAllocator's rule, and `assign_batch`, the
Hungarian solver (torta.allocator.hungarian) applied to it. Per request, inside its serving region, the
server with the earliest expected completion.

    cost(s) = wait(s) + cold(s, m) * (load_s(s, m) + switch_penalty_s)
              + prefill_s_per_token(s, m) * prompt + tpot_s(s, m) * output
              + spread_s_per_request * recent(s)

wait(s): expected backlog of server s in seconds (max(busy_until - now, 0)); cold(s, m): the server
will not hold model m once its queue drains, so it must load it (warm servers win unless their backlog
exceeds the cold start); the prefill and decode terms are the request's own latency on that GPU type;
recent(s): an exponentially decayed count of requests recently assigned to s (time constant
spread_tau_s), a small load-spreading term that breaks ties between idle servers. Servers that cannot
load m cost +inf. Reconstruction of paper-torta.md §4.2 (the paper itself only says "greedy").

Hot path: servers are stored region by region in contiguous blocks, so a request costs a handful of
numpy operations on views (no Python loop over servers, no objects). The decayed counts are kept
scaled by exp(t / tau) against a reference time, so reading them is one scalar factor, not an exp per
server. Times are seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from torta.allocator.config import MicroConfig
from torta.allocator.hungarian import assign_positions, queue_order


@dataclass(frozen=True)
class MicroTables:
    """Static per-server, per-model coefficients (S servers, M models), in seconds.

    region[s]: region index; prefill_s_per_token[s, m], tpot_s[s, m]: the request's own prefill time per
    prompt token and time per output token on s; work_s_per_prompt_token / work_s_per_output_token
    [s, m]: server-seconds a request adds to s's backlog (its share of a batch); load_s[s, m]: time to
    load m on s; capable[s, m]: s may load m; initial_model[s].
    """

    region: np.ndarray
    prefill_s_per_token: np.ndarray
    tpot_s: np.ndarray
    work_s_per_prompt_token: np.ndarray
    work_s_per_output_token: np.ndarray
    load_s: np.ndarray
    capable: np.ndarray
    initial_model: np.ndarray

    def __post_init__(self) -> None:
        s = np.asarray(self.region).shape
        if len(s) != 1:
            raise ValueError(f"MicroTables.region must be 1-D, got shape {s}")
        n = s[0]
        m = np.asarray(self.capable).shape[1] if np.asarray(self.capable).ndim == 2 else -1
        for name in ("prefill_s_per_token", "tpot_s", "work_s_per_prompt_token", "work_s_per_output_token",
                     "load_s", "capable"):
            if np.asarray(getattr(self, name)).shape != (n, m):
                raise ValueError(f"MicroTables.{name} must have shape ({n}, {m}), got "
                                 f"{np.asarray(getattr(self, name)).shape}")
        if np.asarray(self.initial_model).shape != (n,):
            raise ValueError(f"MicroTables.initial_model must have shape ({n},)")

    @property
    def n_servers(self) -> int:
        return int(np.asarray(self.region).shape[0])

    @property
    def n_models(self) -> int:
        return int(np.asarray(self.capable).shape[1])


class TortaMicro:
    """Greedy earliest-expected-completion allocator over per-region blocks of per-server arrays.

    `choose(now_s, region, model, prompt_tokens, output_tokens)` returns a server id and records the
    assignment in the allocator's own backlog estimate (busy-until, loaded model, recent count).
    `observe(server, busy_until_s, loaded_model)` lets a simulator correct the estimate with its state.
    """

    def __init__(self, tables: MicroTables, config: MicroConfig = MicroConfig(),
                 n_regions: int | None = None) -> None:
        self.config = config
        self.tables = tables
        region = np.asarray(tables.region, dtype=np.int64)
        n_reg = int(region.max()) + 1 if region.size else 0
        self.n_regions = max(n_reg, n_regions or 0)
        order = np.argsort(region, kind="stable")
        self.order = order  # position -> server id
        self.pos = np.empty_like(order)
        self.pos[order] = np.arange(order.size)  # server id -> position
        counts = np.bincount(region, minlength=self.n_regions)
        self.bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        cap = np.asarray(tables.capable, dtype=bool)[order]
        inf = np.where(cap, 0.0, np.inf)
        # model-major copies: [m, pos] so a request reads contiguous views
        self.pre_T = np.ascontiguousarray((np.asarray(tables.prefill_s_per_token, float)[order] + inf).T)
        self.tpot_T = np.ascontiguousarray((np.asarray(tables.tpot_s, float)[order] + inf).T)
        self.wpre_T = np.ascontiguousarray(np.asarray(tables.work_s_per_prompt_token, float)[order].T)
        self.wout_T = np.ascontiguousarray(np.asarray(tables.work_s_per_output_token, float)[order].T)
        self.load_T = np.ascontiguousarray(np.asarray(tables.load_s, float)[order].T)
        self.cold_T = self.load_T + config.switch_penalty_s
        self.busy = np.zeros(order.size)  # expected busy-until, seconds
        self.loaded = np.asarray(tables.initial_model, dtype=np.int64)[order].copy()
        self.recent = np.zeros(order.size)  # decayed counts scaled by exp((t - t_ref) / tau)
        self.t_ref = 0.0
        self._psi = config.spread_s_per_request
        self._tau = config.spread_tau_s
        self._bounds = self.bounds.tolist()
        self._order = order.tolist()
        self.switches = 0

    # -- hot path -------------------------------------------------------------------------------
    def choose(self, now_s: float, region: int, model: int, prompt_tokens: int, output_tokens: int) -> int:
        lo = self._bounds[region]
        hi = self._bounds[region + 1]
        if hi <= lo:
            raise ValueError(f"region {region} has no servers")
        busy = self.busy[lo:hi]
        cost = busy - now_s
        np.maximum(cost, 0.0, out=cost)
        cost += self.pre_T[model, lo:hi] * prompt_tokens
        cost += self.tpot_T[model, lo:hi] * output_tokens
        cold = self.loaded[lo:hi] != model
        if cold.any():
            cost += cold * self.cold_T[model, lo:hi]
        if self._psi > 0.0:
            dt = now_s - self.t_ref
            if dt > 50.0 * self._tau:  # rescale to keep exp() bounded
                self.recent *= math.exp(-dt / self._tau)
                self.t_ref = now_s
                dt = 0.0
            cost += self.recent[lo:hi] * (self._psi * math.exp(-dt / self._tau))
        k = int(cost.argmin())
        c = cost[k]
        if c == math.inf:
            raise ValueError(f"no server in region {region} can load model {model}")
        p = lo + k
        start = busy[k] if busy[k] > now_s else now_s
        if cold[k]:
            start += self.load_T[model, p]
            self.loaded[p] = model
            self.switches += 1
        self.busy[p] = start + self.wpre_T[model, p] * prompt_tokens + self.wout_T[model, p] * output_tokens
        if self._psi > 0.0:
            self.recent[p] += math.exp((now_s - self.t_ref) / self._tau)
        return self._order[p]

    def commit(self, now_s: float, server: int, model: int, prompt_tokens: int, output_tokens: int) -> None:
        """Record an assignment made elsewhere (e.g. by the Hungarian batch variant)."""
        p = int(self.pos[server])
        start = max(float(self.busy[p]), now_s)
        if self.loaded[p] != model:
            start += self.load_T[model, p]
            self.loaded[p] = model
            self.switches += 1
        self.busy[p] = start + self.wpre_T[model, p] * prompt_tokens + self.wout_T[model, p] * output_tokens
        if self._psi > 0.0:
            self.recent[p] += math.exp((now_s - self.t_ref) / self._tau)

    # -- state sync -----------------------------------------------------------------------------
    def observe(self, server: int, busy_until_s: float, loaded_model: int | None = None) -> None:
        p = int(self.pos[server])
        self.busy[p] = busy_until_s
        if loaded_model is not None:
            self.loaded[p] = loaded_model

    def region_servers(self, region: int) -> np.ndarray:
        return np.sort(self.order[self._bounds[region]:self._bounds[region + 1]])


def assign_batch(alloc: TortaMicro, now_s: float, region: int, models: np.ndarray,
                 prompt_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    """Assign a batch of requests (arrays of equal length n) to servers of `region`; returns server ids
    in request order and records every assignment in `alloc` (queue order = position order)."""
    models = np.asarray(models, dtype=np.int64)
    pr = np.asarray(prompt_tokens, dtype=float)
    ou = np.asarray(output_tokens, dtype=float)
    n = models.size
    if not (pr.size == n and ou.size == n):
        raise ValueError(f"assign_batch: models, prompt_tokens, output_tokens lengths differ "
                         f"({n}, {pr.size}, {ou.size})")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(alloc.bounds[region]), int(alloc.bounds[region + 1])
    ns = hi - lo
    if ns <= 0:
        raise ValueError(f"region {region} has no servers")
    wait = np.maximum(alloc.busy[lo:hi] - now_s, 0.0)  # (ns,)
    cold = alloc.loaded[lo:hi][None, :] != models[:, None]  # (n, ns)
    own = (alloc.pre_T[models, lo:hi] * pr[:, None] + alloc.tpot_T[models, lo:hi] * ou[:, None]
           + cold * alloc.cold_T[models, lo:hi])
    spread = alloc.recent[lo:hi] * (alloc.config.spread_s_per_request
                                    * math.exp(-(now_s - alloc.t_ref) / alloc.config.spread_tau_s))
    base = wait[None, :] + own + spread[None, :]  # (n, ns)
    if not np.isfinite(base.min(axis=1)).all():
        bad = int(np.flatnonzero(~np.isfinite(base.min(axis=1)))[0])
        raise ValueError(f"no server in region {region} can load model {int(models[bad])}")
    work = (alloc.wpre_T[models, lo:hi] * pr[:, None] + alloc.wout_T[models, lo:hi] * ou[:, None]
            + cold * alloc.load_T[models, lo:hi])
    server_pos, behind = assign_positions(base, work)
    servers = alloc.order[lo + server_pos].astype(np.int64)
    for k in queue_order(behind):  # commit in queue order
        alloc.commit(now_s, int(servers[k]), int(models[k]), int(pr[k]), int(ou[k]))
    return servers
