"""Frozen configuration of the TORTA micro allocator (no I/O). Each field's docstring gives its unit and
the reason for its default; choices measured on the validation day 11 (servegen-mix-14d on abilene)
name the run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MicroConfig:
    """TORTA micro allocator settings (torta.allocator.greedy.TortaAllocator; the Hungarian batch window of
    torta.allocator.batch). All times in seconds."""

    spread_s_per_request: float = 0.05
    """Load-spreading term: seconds of penalty per recently assigned request still remembered (decayed
    with `spread_tau_s`). Small, so it only breaks near-ties; runs under saturation are chaotic in it
    (0.049 / 0.0505 / 0.051 moved one seed's mean response by 2 s), so compare settings over many seeds."""

    spread_tau_s: float = 30.0
    """Decay time of the spreading counts."""

    switch_penalty_s: float = 3.0
    """Seconds charged on top of the weight-load time for a model switch (lost service and the reload's
    energy; paper-torta.md §8 suggests 1 s). Validation day 11 (full day, seed 0, torta-ot-last): 3 s gave
    12.7 s mean response (7257 switches, $66.3), 10 s gave 139.8 s (929 switches, $46.5)."""

    spill_s: float | None = 10.0
    """When the best expected completion in the planned region exceeds this, the request may go to one of
    the `spill_regions` nearest regions whose best completion (network delay included) is at least
    `spill_s` shorter; None: never leave the planned region. This project's addition (the paper's micro
    layer stays in the region) for forecast error inside a 15-min slot. Validation day 11, first hour:
    10 s over 6 regions gave 10.7 s mean response against 12.4-17.7 s for the other settings tried; the
    full day 139.8 s against 158.5 s without spill-over."""

    spill_regions: int = 6
    """How many of the nearest regions a spilled request may go to (see `spill_s`)."""

    hungarian_window_s: float = 2.0
    """Batch window of the Hungarian ablation (`torta-ot-hungarian`): requests reaching a region within
    this many seconds of the first held one are assigned jointly; 0: per request (torta-ot exactly).
    Validation day 11 (first 0.25 h, seeds 0-2): with one switch per model and batch, 2 s gave 18.2 s
    mean response against torta-ot's 17.6 s (a tie), 197 switches and $0.99 instead of $1.51."""

    hungarian_max_batch: int = 64
    """The batch window closes early at this many requests (bounds the assignment's size)."""

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


@dataclass(frozen=True)
class TargetConfig:
    """How the target-following micro allocator (torta.allocator.targets.TargetAllocator, policy
    `torta-horizon`) switches models. All times in seconds."""

    switch_margin_s: float = 20.0
    """A switch the plan did not ask for happens only when it beats the best warm server by this much on
    top of the load time (and, where the server's model is at or below its target, on top of loading
    that model back as well): the expected wait for a warm server must exceed the load time by a margin."""

    preload: bool = True
    """Follow the plan's placement at once: while a region holds fewer servers of a model than its
    target, the model's next request there goes to the least-busy server holding a model above its
    target (which then loads the model), even when a warm server is free. False: targets only shape the
    switching costs (the ablation "without pre-loading")."""

    def __post_init__(self) -> None:
        if not (self.switch_margin_s >= 0 and self.switch_margin_s < float("inf")):
            raise ValueError(f"TargetConfig.switch_margin_s must be finite and >= 0, got {self.switch_margin_s!r}")
        if not isinstance(self.preload, bool):
            raise ValueError(f"TargetConfig.preload must be a bool, got {self.preload!r}")
