"""The modeled world a replay runs in: the contract between the fleet layer and the simulator.

Frozen dataclasses, no I/O. Loaders (`torta.fleet.scenario.load_scenario`) build a `World` from a
scenario TOML; the simulator, planners and forecasters only read these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Region:
    name: str  # topology node label, unique within the scenario
    lat: float
    lon: float
    hosts_datacenter: bool  # False: the node only originates traffic
    market: str = ""  # electricity market the region is priced by (nearest by coordinates)
    pue: float = 1.2
    origin_weight: float = 1.0  # share of trace demand originating here (normalised by the loader)


@dataclass(frozen=True)
class ServerSpec:
    server_id: int  # dense 0..n-1
    region: int  # index into World.regions
    gpu: str  # catalog name, e.g. "H100"
    tp: int  # GPUs per replica
    models: tuple[str, ...]  # models this server may load
    initial_model: str  # loaded at t=0


class PerfModel(Protocol):
    """Latency/capacity of one (model, gpu, tp) replica. Times in milliseconds."""

    def prefill_ms(self, model: str, gpu: str, tp: int, batch_prompt_tokens: int,
                   sum_sq_prompt_tokens: float | None = None) -> float: ...

    def decode_ms_per_iter(self, model: str, gpu: str, tp: int, batch: int,
                           context_tokens: float) -> float: ...

    def kv_capacity_tokens(self, model: str, gpu: str, tp: int) -> int:
        """KV-cache tokens that fit beside the weights (0 if the model does not fit)."""
        ...

    def max_batch(self, model: str, gpu: str, tp: int, context_tokens: int) -> int: ...

    def load_s(self, model: str, gpu: str, tp: int) -> float:
        """Seconds to load the model's weights onto the replica (model switch)."""
        ...


@dataclass(frozen=True)
class PowerSpec:
    idle_w: float  # per GPU
    prefill_w: float
    decode_w: float


@dataclass(frozen=True)
class World:
    """A scenario resolved into arrays. `latency_ms[i, j]`: one-way network latency region i -> j."""

    name: str
    regions: tuple[Region, ...]
    servers: tuple[ServerSpec, ...]
    latency_ms: np.ndarray  # (R, R), symmetric, zero diagonal
    price_usd_per_mwh: np.ndarray  # (R, 8760) hourly, local-time aligned, index by hour of year (UTC)
    carbon_g_per_kwh: np.ndarray  # (R, 8760)
    power: dict[str, PowerSpec]  # gpu name -> power by state
    gpu_usd_per_hour: dict[str, float]
    transfer_usd_per_gb: float  # inter-region egress price
    models: tuple[str, ...]
    slot_s: float = 900.0
    start_hour_of_year: int = 0  # where t=0 of a replay falls in the price year
    perf: PerfModel | None = field(default=None, compare=False)
    window_hours: int = 24  # the scenario's default replay window from t=0 ([time] window_hours)

    @property
    def n_regions(self) -> int:
        return len(self.regions)

    def dc_regions(self) -> list[int]:
        return [i for i, r in enumerate(self.regions) if r.hosts_datacenter]
