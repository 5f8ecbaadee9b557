"""Origin regions of a workload and the scenario capacity it is scaled to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OriginRegion:
    """A region that originates traffic. `offset_s`: follow-the-sun local-time offset, lon / 15 h."""

    name: str
    lon: float
    weight: float

    @property
    def offset_s(self) -> float:
        return self.lon / 15.0 * 3600.0


def as_regions(regions: Sequence[Any]) -> tuple[OriginRegion, ...]:
    """Normalise (name, lon, weight) tuples / OriginRegion / fleet Region objects; weights sum to 1."""
    out = []
    for r in regions:
        if isinstance(r, OriginRegion):
            out.append(r)
        elif hasattr(r, "lon") and hasattr(r, "name"):
            out.append(OriginRegion(r.name, float(r.lon), float(getattr(r, "origin_weight", 1.0))))
        else:
            name, lon, weight = r
            out.append(OriginRegion(str(name), float(lon), float(weight)))
    if not out:
        raise ValueError("a workload needs at least one origin region")
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate region names in {names}")
    w = np.array([r.weight for r in out])
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"region weights must be finite, >= 0 and not all 0; got {w.tolist()}")
    w = w / w.sum()
    return tuple(OriginRegion(r.name, r.lon, float(x)) for r, x in zip(out, w))


def load_world(scenario: Any):
    """A scenario name -> World via torta.fleet.scenario.load_scenario; World objects pass through."""
    if isinstance(scenario, str):
        from torta.fleet.scenario import load_scenario

        return load_scenario(scenario)
    return scenario


def fleet_capacity_rps(world: Any, models: Sequence[str], mean_prompt_tokens: float,
                       mean_output_tokens: float) -> dict[str, float]:
    """Whole-fleet capacity in requests/s per model if every server that may load it served only
    that model (`torta.fleet.scenario.capacity_requests_per_s`, servers="allowed", summed over
    regions). For several models, sum(rate_m / capacity_m) is the share of the fleet's time the
    demand needs (exact when servers are interchangeable; an approximation where only some
    servers may load a model)."""
    from torta.fleet.scenario import capacity_requests_per_s
    out = {}
    for m in models:
        cap = capacity_requests_per_s(world, m, mean_prompt_tokens, mean_output_tokens)
        if isinstance(cap, Mapping):
            cap = list(cap.values())
        total = float(np.sum(np.asarray(cap, dtype=float)))
        if not np.isfinite(total) or total <= 0:
            raise ValueError(f"scenario {getattr(world, 'name', world)!r} has no capacity for "
                             f"model {m!r} ({total} requests/s)")
        out[m] = total
    return out
