"""Record the macro plans a policy makes during a replay (for the warehouse's `plans` table).

Plans are recorded through the seam: pass `PlanRecorder.sink` as `replay(..., plan_sink=...)` and the
engine hands it every slot's `SlotState` and the plan it applied, one (R, R) matrix for all models
(recorded as model "*") or per-model plans (M, R, R). A policy whose `plan()` returns None while its
allocator routes by per-model plans of its own (`allocator.last_plans`, (M, R, R), e.g.
`torta.allocator.greedy.PlannedAllocator`) is recorded from that array, read when the slot's plan is made.
`frame()` returns one row per (slot, model, origin, region) with a non-zero share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

PLAN_SCHEMA = {"slot": pl.Int64, "t_start_s": pl.Float64, "model": pl.String, "origin_region": pl.String,
               "serving_region": pl.String, "share": pl.Float64}


class PlanRecorder:
    def __init__(self, region_names: list[str], model_names: list[str], policy: Any = None) -> None:
        self.regions = list(region_names)
        self.models = list(model_names)
        self.policy = policy  # read for `allocator.last_plans` in slots whose plan() returned None
        self._rows: list[tuple] = []

    def sink(self, state, plan: np.ndarray | None) -> None:
        """The engine's `plan_sink`: record the plan applied to the slot `state` starts."""
        if plan is None:
            plan = getattr(getattr(self.policy, "allocator", None), "last_plans", None)
            if plan is None:
                return
        p = np.asarray(plan, dtype=float)
        if p.ndim == 2:
            self._add(state, "*", p)
            return
        for m, pm in enumerate(p):
            self._add(state, self.models[m] if m < len(self.models) else str(m), pm)

    def _add(self, state, model: str, p: np.ndarray) -> None:
        oi, rj = np.nonzero(p > 0)
        for i, j in zip(oi.tolist(), rj.tolist()):
            self._rows.append((int(state.slot), float(state.t_start_s), model, self.regions[i], self.regions[j],
                               float(p[i, j])))

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self._rows, schema=PLAN_SCHEMA, orient="row")


def row_sums_ok(plans: pl.DataFrame, tol: float = 1e-6) -> tuple[bool, float]:
    """Every (slot, model, origin) row of the plans sums to one (within tol); returns (ok, worst error)."""
    if plans.height == 0:
        return True, 0.0
    sums = plans.group_by("slot", "model", "origin_region").agg(pl.col("share").sum())
    worst = float((sums["share"] - 1.0).abs().max())
    return worst <= tol, worst
