"""Hungarian (min-cost assignment) variant of the micro allocator, an ablation of the greedy default.

A short batch window of requests bound for one region is assigned jointly with
`scipy.optimize.linear_sum_assignment`, minimising the batch's summed expected completion time.

The cost model is the greedy allocator's, extended to the requests' effect on each other: on a server
the expected completion of a request is the server's backlog + the work of the batch's requests queued
ahead of it on that server + its own latency (cold start, prefill, decode, spread term). Summed over the
batch, each request's work counts once per request queued *behind* it, so with j = the number of batch
requests behind request k on server s:

    cost(k, s, j) = base(k, s) + j * work(k, s)

where base(k, s) is the greedy cost of k on s (wait, cold start, own prefill and decode, spread) and
work(k, s) the server-seconds k adds to s's backlog (its share of the batch, + the load time when s must
load k's model). This is the classical reduction of total completion time on unrelated parallel
machines to an assignment problem (positions counted from the end of each machine's sequence; Horn
1973, Bruno, Coffman & Sethi 1974), exact for this serial backlog model; the optimum orders each
server's share shortest-work-first. Approximations: a server taking several requests of a model it does
not hold pays the cold start once per request in `base` (the simulator loads it once), and continuous
batching makes the serial backlog an estimate, as for the greedy allocator.

`assign_positions` is the pure solver; `torta.allocator.batch` applies it to the simulator's live state
(the `torta-ot-hungarian` replay policy); the tests' oracle (tests/micro_oracle.py) applies it to an
allocator with its own state.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

_BIG = 1e12  # finite stand-in for +inf (incapable server) so the assignment stays feasible
_EXACT_CELLS = 250_000  # n x n positions x servers below this: every server gets n positions (exact)


def assign_positions(base: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jointly assign n requests to ns servers minimising sum_k base[k, s_k] + j_k * work[k, s_k], with
    j_k the number of requests placed behind k on its server. `base` (n, ns) may hold +inf (server cannot
    take the request); every row needs a finite entry. Returns (server column, position from the end) per
    request; a server's requests are queued in decreasing position. Deterministic (ties: scipy's order)."""
    base = np.asarray(base, dtype=float)
    work = np.asarray(work, dtype=float)
    if base.ndim != 2 or work.shape != base.shape:
        raise ValueError(f"assign_positions: base and work must be (n, servers) arrays of one shape, got "
                         f"{base.shape} and {work.shape}")
    n, ns = base.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ok = np.isfinite(base)
    if not ok.any(axis=1).all():
        bad = int(np.flatnonzero(~ok.any(axis=1))[0])
        raise ValueError(f"assign_positions: request {bad} has no server able to take it")
    if n == 1:
        s = int(np.argmin(base[0]))  # first minimum, as the greedy allocator
        return np.array([s], dtype=np.int64), np.zeros(1, dtype=np.int64)
    w = np.where(ok & np.isfinite(work), np.maximum(work, 0.0), 0.0)
    b = np.where(ok, base, _BIG)
    q = n if n * n * ns <= _EXACT_CELLS else min(n, 4 * math.ceil(n / ns) + 4)
    while True:
        pos = np.arange(q, dtype=float)
        cost = (b[:, None, :] + pos[None, :, None] * w[:, None, :]).reshape(n, q * ns)  # _BIG stays >= _BIG
        rows, cols = linear_sum_assignment(cost)
        if q == n or cost[rows, cols].max() < _BIG / 2:
            break
        q = n  # too few positions for a feasible assignment (requests only some servers can take)
    j, s = np.divmod(cols, ns)
    server = np.empty(n, dtype=np.int64)
    behind = np.empty(n, dtype=np.int64)
    server[rows] = s
    behind[rows] = j
    return server, behind


def queue_order(behind: np.ndarray) -> np.ndarray:
    """Indices of the batch in queue order: more requests behind first, ties by request index."""
    behind = np.asarray(behind)
    return np.lexsort((np.arange(behind.size), -behind))
