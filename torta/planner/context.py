"""Shared pieces of the planner-layer policies: the optional run context (`prepare`), the baselines'
in-region allocator setting, and the base of allocators that choose the region themselves."""

from __future__ import annotations

from typing import Any

import numpy as np

from torta.allocator.greedy import WarmLeastLoadedScan
from torta.planner.fleetcost import DEFAULT_MEAN_OUTPUT_TOKENS, DEFAULT_MEAN_PROMPT_TOKENS

BASELINE_SWITCH_GUARD_S = 10.0
"""Switching guard (s) of the baselines' in-region allocator, warm least-loaded
(torta.allocator.greedy.WarmLeastLoadedScan), so every policy is compared with a strong allocator, not
with needless reloads (DESIGN.md, Evaluation protocol). Validation day 11 (full day, servegen-mix-14d on
abilene, seed 0, myopic-ot): 10 s gave 18.8 s mean response and $72.3, 3 s 20.3 s and $89.6; 0 s (the
simulator's plain rule) thrashes (564 s in the first hour alone)."""


class ContextMixin:
    """Optional run context set by `prepare` (compare) before `reset`."""

    def prepare(self, *, history: Any = None, oracle_demand: np.ndarray | None = None,
                mean_prompt_tokens: float | None = None, mean_output_tokens: float | None = None,
                model_share: np.ndarray | None = None) -> None:
        self.history = history
        self.oracle_demand = None if oracle_demand is None else np.asarray(oracle_demand, dtype=float)
        self.mean_prompt_tokens = float(mean_prompt_tokens or DEFAULT_MEAN_PROMPT_TOKENS)
        self.mean_output_tokens = float(mean_output_tokens or DEFAULT_MEAN_OUTPUT_TOKENS)
        self.model_share = model_share

    def missing_inputs(self) -> list[str]:
        """The context this policy plans on but was not given (empty: nothing missing); read by
        torta.runs.execute after `prepare`."""
        return []

    def _ctx_defaults(self) -> None:
        if not hasattr(self, "mean_prompt_tokens"):
            self.prepare()

    def params(self) -> dict:
        """Settings to record with the run (tuned values included)."""
        return {}


class RegionFirstAllocator:
    """Base of allocators that pick a region themselves (global scope), then warm least-loaded inside."""

    def __init__(self) -> None:
        self._wll = WarmLeastLoadedScan(BASELINE_SWITCH_GUARD_S)
        self._view_id = None

    def _in_region(self, view, request, r: int) -> int:
        s = self._wll.pick(view, request, r)
        if s >= 0:
            return s
        for r2 in view.tables.near[request.origin][request.model]:  # region cannot hold it: nearest that can
            s = self._wll.pick(view, request, r2)
            if s >= 0:
                return s
        raise ValueError(f"no server can hold request {request.request_id}")


