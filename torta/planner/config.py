"""Frozen configuration of the macro planners (no I/O). Defaults are design choices of this project unless
the docstring gives a source; see ../shared/notes/paper-torta.md §8 (recommended defaults, [I] = inferred).
The micro allocator's settings are `torta.allocator.config.MicroConfig`."""

from __future__ import annotations

from dataclasses import dataclass

OT_METHODS = ("emd", "sinkhorn", "unbalanced")
DEMAND_SOURCES = ("forecast", "oracle", "last")


@dataclass(frozen=True)
class OTCostWeights:
    """Weights of the four normalised OT cost terms (each term scaled to [0, 1] before weighting).

    Defaults alpha=1 (latency), beta=0.5 (energy), gamma=1 (queue), zeta=0.2 (transfer): paper-torta.md
    §8 "Cost-matrix weights" (recommendation, not a paper number).
    """

    latency: float = 1.0
    energy: float = 0.5
    queue: float = 1.0
    transfer: float = 0.2

    def __post_init__(self) -> None:
        for name in ("latency", "energy", "queue", "transfer"):
            v = getattr(self, name)
            if not v >= 0:
                raise ValueError(f"OTCostWeights.{name} must be >= 0, got {v!r}")


@dataclass(frozen=True)
class OTConfig:
    """Macro OT planner settings (torta.planner.ot)."""

    weights: OTCostWeights = OTCostWeights()
    """Weights of the normalised cost terms."""
    method: str = "emd"
    """"emd" (exact network simplex, default), "sinkhorn" (entropic) or "unbalanced" (entropic with
    relaxed marginals, KL penalty `unbalanced_reg_m`)."""
    defer_cost: float = 10.0
    """Cost of keeping one unit of demand queued at its origin for the slot, in the units of the weighted
    normalised cost: above the sum of the weights, so deferral is a last resort."""
    sinkhorn_reg: float = 0.05
    """Entropic regulariser relative to the largest real cost (0.05 x max C: paper-torta.md §8)."""
    sinkhorn_max_iter: int = 1000
    """Iteration cap of the entropic solvers."""
    sinkhorn_stop_thr: float = 1e-9
    """Stopping threshold of the entropic solvers (marginal error)."""
    unbalanced_reg_m: float = 1.0
    """KL penalty on the marginals of the "unbalanced" method."""
    demand_source: str = "forecast"
    """Which demand the plan is built on: "forecast", "oracle" or "last" (the slot just observed)."""
    queue_ref_s: float = 60.0
    """Queueing delay (s) that maps to 1.0 in the normalised queue term."""

    def __post_init__(self) -> None:
        if self.method not in OT_METHODS:
            raise ValueError(f"OTConfig.method must be one of {OT_METHODS}, got {self.method!r}")
        if self.demand_source not in DEMAND_SOURCES:
            raise ValueError(
                f"OTConfig.demand_source must be one of {DEMAND_SOURCES}, got {self.demand_source!r}")
        w = self.weights
        if not self.defer_cost > w.latency + w.energy + w.queue + w.transfer:
            raise ValueError(
                f"OTConfig.defer_cost ({self.defer_cost}) must exceed the sum of the cost weights "
                f"({w.latency + w.energy + w.queue + w.transfer}) or demand would be deferred while "
                "capacity is free")
        if not self.sinkhorn_reg > 0:
            raise ValueError(f"OTConfig.sinkhorn_reg must be > 0, got {self.sinkhorn_reg}")
        if not self.queue_ref_s > 0:
            raise ValueError(f"OTConfig.queue_ref_s must be > 0, got {self.queue_ref_s}")
