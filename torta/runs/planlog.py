"""Record the macro plans a policy makes during a replay (for the warehouse's `plans` table).

A policy's plan comes either from `plan()` (one (R, R) matrix for all models) or, for policies
that plan per model, from the (M, R, R) array their allocator received (`allocator.last_plans`).
`PlanRecorder.attach(policy)` wraps the instance's `plan` method; `frame()` returns one row per
(slot, model, origin, region) with a non-zero share (model "*" for a plan shared by all models).
"""

from __future__ import annotations

import numpy as np
import polars as pl

PLAN_SCHEMA = {"slot": pl.Int64, "t_start_s": pl.Float64, "model": pl.String, "origin_region": pl.String,
               "serving_region": pl.String, "share": pl.Float64}


class PlanRecorder:
    def __init__(self, region_names: list[str], model_names: list[str]) -> None:
        self.regions = list(region_names)
        self.models = list(model_names)
        self._rows: list[tuple] = []

    def attach(self, policy) -> None:
        inner = policy.plan

        def plan(state):
            out = inner(state)
            if out is not None:
                self._add(state, "*", np.asarray(out, dtype=float))
            else:
                per_model = getattr(getattr(policy, "allocator", None), "last_plans", None)
                if per_model is not None:
                    for m, p in enumerate(np.asarray(per_model, dtype=float)):
                        self._add(state, self.models[m] if m < len(self.models) else str(m), p)
            return out

        policy.plan = plan

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
