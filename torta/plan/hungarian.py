"""Hungarian (min-cost assignment) variant of the micro allocator, an ablation of the greedy default.

A short batch window of requests bound for one region is assigned jointly with
`scipy.optimize.linear_sum_assignment`. Each server is expanded into queue positions 0..Q-1; putting
request k at position q of server s costs the greedy cost of k on s (wait, cold start, own prefill and
decode, spread) plus the work of the q requests ahead of it in this batch (the batch's mean work on s
times q). A server can hold requests for one model per batch without extra reloads only approximately
(mixed-model positions each pay the cold start once), which is the ablation's simplification.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from torta.plan.micro import TortaMicro

_BIG = 1e12  # finite stand-in for +inf (incapable server) so the assignment stays feasible


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
    work = alloc.wpre_T[models, lo:hi] * pr[:, None] + alloc.wout_T[models, lo:hi] * ou[:, None]
    mean_work = np.where(np.isfinite(work), work, 0.0).mean(axis=0)  # (ns,)
    q = n  # positions per server: enough for any assignment
    pos_cost = np.arange(q, dtype=float)[:, None] * mean_work[None, :]  # (q, ns)
    cost = base[:, None, :] + pos_cost[None, :, :]  # (n, q, ns)
    cost = np.where(np.isfinite(cost), cost, _BIG).reshape(n, q * ns)
    rows, cols = linear_sum_assignment(cost)
    position, server_pos = np.divmod(cols, ns)
    servers = np.empty(n, dtype=np.int64)
    servers[rows] = alloc.order[lo + server_pos]
    for k in rows[np.lexsort((rows, position))]:  # commit in queue order
        alloc.commit(now_s, int(servers[k]), int(models[k]), int(pr[k]), int(ou[k]))
    return servers
