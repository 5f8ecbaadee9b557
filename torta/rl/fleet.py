"""What the surrogate knows about a fleet (`SurrogateFleet`, plain arrays), the demand it replays
(`load_demand`: per slot, origin and model, from the workload's cheap `regional_rates`), and the
cheap forecast shared by the surrogate and the replay policies (`seasonal_forecast`).

Units: work in server-seconds of the simulator's backlog estimate (`torta.sim.cluster`: prompt tokens x
c_prefill_s + output tokens x c_decode_s); one server delivers `capacity_derate` (0.82, measured by the
planner engineer: torta.planner.register.OTPolicy.capacity_derate) of those per second when saturated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from torta.planner.fleetcost import DEFAULT_MEAN_OUTPUT_TOKENS, DEFAULT_MEAN_PROMPT_TOKENS, region_facts
from torta.planner.register import OTPolicy

CAPACITY_DERATE = OTPolicy.capacity_derate  # real saturated throughput / estimate (plan layer's measurement)


@dataclass(frozen=True)
class SurrogateFleet:
    """Per-region facts of a fleet. R regions, M models; arrays are read-only by convention."""

    name: str
    slot_s: float
    latency_ms: np.ndarray  # (R, R) one-way network latency
    servers: np.ndarray  # (R,) servers per region
    rps_rm: np.ndarray  # (R, M) estimated requests/s of one server of region r on model m (0: cannot serve)
    lat_s_rm: np.ndarray  # (R, M) unloaded latency of a mean request (prefill + decode at batch 1)
    energy_kwh_rm: np.ndarray  # (R, M) energy per request
    near_rm: np.ndarray  # (R, M) nearest region (from origin r) able to serve model m
    capacity_rps: np.ndarray  # (R,) estimated requests/s of the region at the workload's model mix
    energy_kwh_per_request: np.ndarray  # (R,)
    transfer_usd_per_request: float
    price_usd_per_mwh: np.ndarray  # (R, hours) hourly electricity price
    start_hour: int  # hour index (into price_usd_per_mwh) of t = 0 of the demand series
    capacity_derate: float = CAPACITY_DERATE

    @property
    def n_regions(self) -> int:
        return int(self.servers.shape[0])

    @property
    def n_models(self) -> int:
        return int(self.rps_rm.shape[1])

    def price_at(self, t_s: np.ndarray | float) -> np.ndarray:
        """Prices (..., R) at absolute times t_s (seconds from the series start)."""
        h = (self.start_hour + (np.asarray(t_s, dtype=float) // 3600.0).astype(np.int64)) \
            % self.price_usd_per_mwh.shape[1]
        return np.moveaxis(self.price_usd_per_mwh[:, h], 0, -1)


def fleet_from_world(world: Any, mean_prompt_tokens: float = DEFAULT_MEAN_PROMPT_TOKENS,
                     mean_output_tokens: float = DEFAULT_MEAN_OUTPUT_TOKENS,
                     model_share: np.ndarray | None = None) -> SurrogateFleet:
    """Build the surrogate's facts from a `World` with the planner layer's `region_facts`."""
    from torta.sim.cluster import build_tables

    f = region_facts(world, build_tables(world), mean_prompt_tokens, mean_output_tokens, model_share)
    return SurrogateFleet(
        name=world.name, slot_s=float(world.slot_s), latency_ms=np.asarray(world.latency_ms, dtype=float),
        servers=np.asarray(f.servers, dtype=float), rps_rm=np.asarray(f.server_rps_rm, dtype=float),
        lat_s_rm=np.asarray(f.latency_s_rm, dtype=float), energy_kwh_rm=np.asarray(f.energy_kwh_rm, dtype=float),
        near_rm=np.asarray(f.nearest_capable_rm, dtype=np.int64), capacity_rps=np.asarray(f.capacity_rps, dtype=float),
        energy_kwh_per_request=np.asarray(f.energy_kwh_per_request, dtype=float),
        transfer_usd_per_request=float(f.transfer_usd_per_request),
        price_usd_per_mwh=np.asarray(world.price_usd_per_mwh, dtype=float), start_hour=int(world.start_hour_of_year))


def load_demand(workload: str, scenario: str, world: Any, seeds: tuple[int, ...] = (0,)) -> np.ndarray:
    """(len(seeds), slots, R, M) requests per slot, origin and model (the workload's `regional_rates`,
    which equal the built requests' per-window totals for the same seed)."""
    from torta.workload.build import regional_rates

    r_idx = {r.name: i for i, r in enumerate(world.regions)}
    m_idx = {m: i for i, m in enumerate(world.models)}
    out = []
    for seed in seeds:
        rates = regional_rates(workload, scenario, seed=seed, slot_s=float(world.slot_s))
        n = int(rates["slot"].max()) + 1
        arr = np.zeros((n, len(r_idx), len(m_idx)))
        slot = rates["slot"].to_numpy()
        ri = np.array([r_idx.get(x, -1) for x in rates["origin_region"].to_list()])
        mi = np.array([m_idx.get(x, -1) for x in rates["model"].to_list()])
        ok = (ri >= 0) & (mi >= 0)
        np.add.at(arr, (slot[ok], ri[ok], mi[ok]), rates["requests"].to_numpy().astype(float)[ok])
        out.append(arr)
    return np.stack(out)


def seasonal_forecast(hist: np.ndarray, horizon: int, per_day: int, recent: int = 4) -> np.ndarray:
    """Seasonal-naive forecast corrected by the recent level: the same slots yesterday x
    clip(sum of the last `recent` observed slots / sum of the same slots yesterday, 0.5, 2).

    hist: (..., T, X) observations ending with the last observed slot, T >= per_day + recent.
    Returns (..., horizon, X). Only data before the forecast slot is used (horizon <= per_day)."""
    T = hist.shape[-2]
    if T < per_day + recent or horizon > per_day:
        raise ValueError(f"seasonal_forecast needs >= {per_day + recent} slots of history and horizon <= "
                         f"{per_day}; got {T} and {horizon}")
    base = hist[..., T - per_day:T - per_day + horizon, :]
    now = hist[..., T - recent:, :].sum(axis=-2)
    then = hist[..., T - per_day - recent:T - per_day, :].sum(axis=-2)
    ratio = np.clip(np.where(then > 0, now / np.where(then > 0, then, 1.0), 1.0), 0.5, 2.0)
    return base * ratio[..., None, :]
