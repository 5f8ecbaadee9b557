"""SkyLB-style selective pushing (arXiv 2505.24095, "SkyLB: a locality-aware cross-region load
balancer for LLM inference"; renamed SkyWalker, EuroSys '26).

A request is served in its local region (its origin if the origin hosts a data centre, else the nearest
one by latency). When the local region's pending requests exceed `threshold`, it is pushed to the data
centre with the fewest pending requests (ties broken by latency from the origin), provided that region
has strictly fewer pending requests than the local one. Below or at the threshold it is never pushed.
The threshold is tuned per scenario on a training window (`tune_threshold`) and recorded with the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np


class SkyLBRouter:
    """Region choice of SkyLB over per-region pending counts. R regions; `dc_mask[j]` marks data centres."""

    def __init__(self, latency_ms: np.ndarray, dc_mask: np.ndarray, threshold: float) -> None:
        lat = np.asarray(latency_ms, dtype=float)
        dc = np.asarray(dc_mask, dtype=bool)
        if lat.ndim != 2 or lat.shape[0] != lat.shape[1] or dc.shape != (lat.shape[0],):
            raise ValueError(f"SkyLBRouter: latency (R, R) and dc_mask (R,) expected; got {lat.shape}, {dc.shape}")
        if not dc.any():
            raise ValueError("SkyLBRouter: no region hosts a data centre")
        if not threshold >= 0:
            raise ValueError(f"SkyLBRouter: threshold must be >= 0, got {threshold}")
        self.threshold = float(threshold)
        self.dc = np.flatnonzero(dc)
        masked = np.where(dc[None, :], lat, np.inf)
        self.local = np.argmin(masked, axis=1)  # nearest DC per origin (itself when it is one)
        # per origin, DC regions sorted by latency: the first with the minimum pending wins a tie
        self.by_latency = [self.dc[np.argsort(lat[i, self.dc], kind="stable")] for i in range(lat.shape[0])]
        self._local = self.local.tolist()
        self.pushes = 0

    def route(self, origin: int, pending) -> int:
        """Serving region for a request from `origin`, given pending load per region (R,): requests, or
        requests per server where regions differ in size (the policy's choice)."""
        loc = self._local[origin]
        p_loc = pending[loc]
        if p_loc <= self.threshold:
            return loc
        cand = self.by_latency[origin]
        pc = pending[cand]
        k = int(np.argmin(pc))  # first minimum = nearest among the least pending
        if pc[k] < p_loc:
            self.pushes += 1
            return int(cand[k])
        return loc


@dataclass(frozen=True)
class TuneResult:
    threshold: float
    table: tuple[tuple[float, float], ...]  # (threshold, objective) for every candidate, in order
    objective: str = "response_mean_s"


def tune_threshold(evaluate: Callable[[float], float],
                   candidates: Iterable[float],
                   objective: str = "response_mean_s") -> TuneResult:
    """Pick the threshold minimising `evaluate(threshold)` (e.g. the mean response time of a replay of
    the training window) over `candidates` (the protocol's: torta.config.EVAL_PROTOCOL.skylb_candidates).
    Ties go to the larger threshold (fewer cross-region pushes)."""
    table = []
    for th in candidates:
        v = float(evaluate(th))
        if not np.isfinite(v):
            raise ValueError(f"tune_threshold: objective at threshold {th} is {v}")
        table.append((float(th), v))
    if not table:
        raise ValueError("tune_threshold: no candidate thresholds")
    best = min(table, key=lambda tv: (tv[1], -tv[0]))
    return TuneResult(threshold=best[0], table=tuple(table), objective=objective)
