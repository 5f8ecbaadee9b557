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


@dataclass(frozen=True)
class HorizonConfig:
    """Receding-horizon macro planner settings (torta.planner.horizon, policy `torta-horizon`).

    Costs are in the units of `OTConfig`'s weighted normalised cost (one unit ~ the whole latency range of
    the fleet for one request), so flows, congestion tiers and the defer column compare as in torta-ot."""

    horizon_slots: int = 8
    """H: slots planned jointly (8 x 15 min = 2 h; the issue's default range is 2-3 h)."""
    k_nearest: int = 4
    """Each origin's flows of a model may go to its k nearest regions able to serve it (by latency), in
    slot 0 (the one applied)."""
    k_nearest_ahead: int = 4
    """The same for the slots ahead (h >= 1), whose flows only shape the placement: fewer columns, a faster
    solve (`torta bench plan`); at most `k_nearest`."""
    switch_cost: float = 360.0
    """Charge per model switch (one server loading a model), on top of the lost service (the load time
    taken off the slot's capacity): the load's queueing and reload energy, worth 36 deferred requests.
    Tuned on validation day 11 (abilene, servegen-mix-14d, whole day after 2 h of warm-up, S = 5 s, seed 0;
    `python -m benchmarks.tune_horizon_switching`, docs/data/tune-horizon-switching.json): the lowest mean
    response with at most 2x the strongest deployable baseline's switches (least-loaded-d4: 57, 5.53 s).
    40 / 120 / 360 / 1000 gave 7.75 / 7.55 / 7.54 / 10.21 s mean response, 159 / 115 / 77 / 45 switches,
    $49.43 / $49.20 / $47.79 / $46.44. (40 was the default until 2026-12-06.)"""
    switch_cost_per_gpu_s: float = 1.0
    """Charge per GPU-second a switch spends loading (HorizonInputs.switch_gpu_s_rm), on top of
    `switch_cost`: moving a 70B model on 8 GPUs (21 s) costs the replay ~80x the GPU-hours of a 7B one.
    Validation day 11 (abilene, servegen-mix-14d, first 2 h after 1 h of warm-up, S = 5 s, seed 0):
    0 / 0.25 / 1 gave 8.90 / 8.96 / 8.67 s mean response, $5.91 / $5.60 / $5.59, 25 / 21 / 19 switches."""
    defer_cost: float = 10.0
    """Per request of a slot's demand the plan cannot place (above every flow + congestion cost)."""
    max_utilisation: float = 0.4
    """Plan each server's rate up to this share (as OTPolicy.max_utilisation; demand above it goes to the
    defer column, queued at its nearest capable region). Tuned on validation day 11 as `switch_cost` was
    (`python -m benchmarks.tune_horizon_switching --param max_utilisation`, docs/data/tune-horizon-utilisation.json):
    0.3 / 0.35 / 0.4 / 0.5 / 0.6 / 0.7 / 0.78 gave 6.86 / 6.66 / 6.74 / 7.60 / 7.54 / 8.00 / 10.28 s mean
    response, 63 / 121 / 98 / 108 / 77 / 75 / 62 switches (0.35 over 2x least-loaded-d4's 57). A lower share
    spreads each origin's flows over more of its nearest regions instead of filling the cheapest ones.
    Also tried on that day at 0.4 (not taken): `k_nearest` 6, 6.75 s and 71 switches; `MicroConfig.spill_s`
    20, 8.94 s. At 0.6: spill_s 5, 10.31 s; the live-state oracle (S = 0), 7.74 s, so old load reports
    are not what separates torta-horizon from least-loaded-d4. (0.6 was the default until 2026-12-07.)"""
    tier_edges: tuple = (0.0, 0.5, 0.8, 1.0)
    """Congestion tiers of the planned capacity (as OTPolicy.tier_edges): a convex piecewise-linear cost."""
    capacity_derate: float = 0.82
    """Real saturated throughput over the capacity estimate (as OTPolicy.capacity_derate)."""
    weights: OTCostWeights = OTCostWeights()
    """Weights of the normalised latency / energy / queue / transfer terms."""
    queue_ref_s: float = 60.0
    """Queueing delay (s) mapping to 1.0 in the normalised queue term."""
    discount: float = 1.0
    """Weight of slot h in the objective is discount ** h (1: every slot counts fully)."""
    warm_start: bool = True
    """Start each call's simplex from the previous call's optimal basis (same rows and columns: the receding
    horizon moves by one slot; with one row per slot the basis moves one slot earlier too). `torta bench
    plan` (50 regions x 3 models x H = 12, 40 calls, median CPU ms per call on 2 cores shared with two
    replays): rows (1, 1, 2, 4, 4), k_nearest_ahead 1: 43-46 cold -> 18 warm (517 against 2,935 simplex
    iterations); one row per slot, k_nearest_ahead 1: 102 -> 57-61; k_nearest_ahead 4: 732 -> 653.
    The solution is the same optimum either way (tests/test_horizon_plan.py)."""
    blocks: tuple | None = None
    """Slots per LP row, first 1 (the slot applied), summing to `horizon_slots`: e.g. (1, 1, 2, 4, 4) plans 12
    slots on 5 rows, each later row the mean demand and price of its slots (a faster solve, coarser far
    ahead; `torta bench plan`). None: one row per slot."""

    def __post_init__(self) -> None:
        if not (isinstance(self.horizon_slots, int) and 1 <= self.horizon_slots <= 96):
            raise ValueError(f"HorizonConfig.horizon_slots must be an int in 1..96, got {self.horizon_slots!r}")
        if not (isinstance(self.k_nearest, int) and self.k_nearest >= 1):
            raise ValueError(f"HorizonConfig.k_nearest must be an int >= 1, got {self.k_nearest!r}")
        if not (isinstance(self.k_nearest_ahead, int) and 1 <= self.k_nearest_ahead <= self.k_nearest):
            raise ValueError(f"HorizonConfig.k_nearest_ahead must be an int in 1..k_nearest ({self.k_nearest}), "
                             f"got {self.k_nearest_ahead!r}")
        for name in ("switch_cost", "switch_cost_per_gpu_s"):
            if not (getattr(self, name) >= 0 and getattr(self, name) < float("inf")):
                raise ValueError(f"HorizonConfig.{name} must be finite and >= 0, got {getattr(self, name)!r}")
        w = self.weights
        worst = w.latency + w.energy + 2 * w.queue + w.transfer
        if not self.defer_cost > worst:
            raise ValueError(f"HorizonConfig.defer_cost ({self.defer_cost!r}) must exceed the largest flow cost "
                             f"({worst}) or demand would be deferred while capacity is free")
        if not 0 < self.max_utilisation <= 1:
            raise ValueError(f"HorizonConfig.max_utilisation must be in (0, 1], got {self.max_utilisation!r}")
        e = tuple(float(x) for x in self.tier_edges)
        if len(e) < 2 or e[0] != 0.0 or any(b <= a for a, b in zip(e, e[1:])):
            raise ValueError(f"HorizonConfig.tier_edges must start at 0 and increase, got {self.tier_edges!r}")
        if not 0 < self.capacity_derate <= 1:
            raise ValueError(f"HorizonConfig.capacity_derate must be in (0, 1], got {self.capacity_derate!r}")
        if not self.max_utilisation < self.capacity_derate:  # the top tier's real utilisation must stay < 1
            raise ValueError(f"HorizonConfig.max_utilisation ({self.max_utilisation!r}) must be below "
                             f"capacity_derate ({self.capacity_derate!r}): planning a server at or past its "
                             "real saturated throughput has no finite queueing cost")
        if not self.queue_ref_s > 0:
            raise ValueError(f"HorizonConfig.queue_ref_s must be > 0, got {self.queue_ref_s!r}")
        if self.blocks is not None:
            b = tuple(self.blocks)
            if not (b and b[0] == 1 and all(isinstance(x, int) and x >= 1 for x in b)
                    and sum(b) == self.horizon_slots):
                raise ValueError(f"HorizonConfig.blocks must be positive ints starting with 1 and summing to "
                                 f"horizon_slots ({self.horizon_slots}), got {self.blocks!r}")
        if not 0 < self.discount <= 1:
            raise ValueError(f"HorizonConfig.discount must be in (0, 1], got {self.discount!r}")
