"""Frozen configuration of the planners (no I/O). Defaults are design choices of this project unless a
comment gives a source; see ../shared/notes/paper-torta.md §8 (recommended defaults, [I] = inferred)."""

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
    """Macro OT planner settings.

    method: "emd" (exact network simplex, default), "sinkhorn" (entropic) or "unbalanced" (entropic with
    relaxed marginals, KL penalty `unbalanced_reg_m`).
    defer_cost: cost of keeping one unit of demand queued at its origin for the slot, in the same units as
    the weighted normalised cost (so it must exceed the sum of the weights to make deferral a last resort).
    sinkhorn_reg: entropic regulariser relative to the largest real cost (0.05 x max C: paper-torta.md §8).
    demand_source: which demand the plan is built on ("forecast", "oracle" or "last" observed slot).
    """

    weights: OTCostWeights = OTCostWeights()
    method: str = "emd"
    defer_cost: float = 10.0
    sinkhorn_reg: float = 0.05
    sinkhorn_max_iter: int = 1000
    sinkhorn_stop_thr: float = 1e-9
    unbalanced_reg_m: float = 1.0
    demand_source: str = "forecast"
    queue_ref_s: float = 60.0  # queueing delay that maps to 1.0 in the normalised queue term

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


@dataclass(frozen=True)
class MicroConfig:
    """TORTA micro allocator settings (all in seconds).

    spread_s_per_request: load-spreading term, seconds of penalty per recently assigned request still
    "remembered" (exponentially decayed with `spread_tau_s`); small, so it only breaks near-ties.
    switch_penalty_s: extra seconds charged on top of the weight-load time for a model switch (lost
    service + energy of the reload; paper-torta.md §8 suggests 1 s). Chosen on the validation day 11
    (servegen-mix-14d on abilene, seed 0, torta-ot-last): over the full day, 3 s gave a mean response of
    12.7 s (p95 28.4 s, 7257 switches, $66.3) and 10 s gave 139.8 s (929 switches, $46.5); myopic-ot with
    the 10 s guard: 18.8 s, $72.3. (The first hour alone had favoured 10 s: 1 / 10 / 30 / 100 s gave
    78.1 / 17.0 / 21.3 / 73.7 s; one night hour is not representative.)
    spill_s: when the best expected completion in the planned region exceeds this, the request may go to
    one of the `spill_regions` nearest regions whose best completion (network delay included) is at least
    spill_s shorter (None: never leave the planned region). The paper's micro layer stays inside the
    region; this spill-over is this project's addition for forecast error within a 15-min slot. Same
    first-hour validation run (3 congestion tiers, switch penalty 10 s), spill_s / spill_regions =
    None / 10,3 / 5,3 / 5,6 / 10,6 / 10,11 / 20,6 / 2,6 gave 62.8 (at penalty 30 s) / 15.8 / 15.5 / 12.5 / 10.7 / 12.4 / 17.7 /
    13.9 s mean response (one seed each; differences of ~2 s are within run-to-run noise). Full day 11
    without spill-over: 158.5 s vs 139.8 s with it (switch penalty 10 s).
    hungarian_window_s, hungarian_max_batch: the batch window of the Hungarian ablation
    (`torta-ot-hungarian`, torta.plan.alloc_batch): requests reaching a region within this many seconds
    of the first held one are assigned jointly; the window closes early at this many requests (bounds
    the assignment's size). 0 s: per request (torta-ot's greedy allocator). Chosen on the validation day
    11 (servegen-mix-14d on abilene, first 0.25 h, seeds 0-2, mean response over seeds; torta-ot: 17.6 s,
    per seed 9.5 / 24.3 / 19.0, 173 switches): without the one-switch cap, windows 0.5 / 1 / 2 / 3 s gave
    23.9 / 18.0 / 18.0 / 23.9 s (301 switches at 2 s); with at most one cold server per model and batch
    (`max_switches=1`, the default of torta-ot-hungarian) 2 s gave 18.2 s (16.4 / 19.8 / 17.7 -> 19.0 /
    15.1 / 20.3) with 197 switches and $0.99 instead of $1.51: a tie on response, so the cap was kept for
    its switching cost. The runs are chaotic under saturation: torta-ot with its spread weight moved by
    1-2 % (0.049 / 0.0505 / 0.051) gave 18.9 / 17.9 / 17.0 s on seed 1 and 17.3 / 17.0 / 16.7 s on seed 2
    (24.3 / 19.0 s at the default 0.05), so differences of a few seconds need many seeds.
    """

    spread_s_per_request: float = 0.05
    spread_tau_s: float = 30.0
    switch_penalty_s: float = 3.0
    spill_s: float | None = 10.0
    spill_regions: int = 6
    hungarian_window_s: float = 2.0
    hungarian_max_batch: int = 64

    def __post_init__(self) -> None:
        for name in ("spread_s_per_request", "switch_penalty_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"MicroConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.spread_tau_s > 0:
            raise ValueError(f"MicroConfig.spread_tau_s must be > 0, got {self.spread_tau_s!r}")
        if not (self.hungarian_window_s >= 0 and self.hungarian_window_s < float("inf")):
            raise ValueError(f"MicroConfig.hungarian_window_s must be finite and >= 0 (0: per request), got "
                             f"{self.hungarian_window_s!r}")
        if self.spill_s is not None and not self.spill_s >= 0:
            raise ValueError(f"MicroConfig.spill_s must be >= 0 or None, got {self.spill_s!r}")
        if self.spill_regions < 0:
            raise ValueError(f"MicroConfig.spill_regions must be >= 0, got {self.spill_regions}")
        if self.hungarian_max_batch < 1:
            raise ValueError(f"MicroConfig.hungarian_max_batch must be >= 1, got {self.hungarian_max_batch}")
