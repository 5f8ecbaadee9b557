"""Small, fully specified worlds for tests and examples (fakes, not mocks).

`LinearPerf`: prefill_ms = prefill_base_ms + prefill_ms_per_token * tokens; decode_ms_per_iter =
decode_base_ms + decode_ms_per_seq * batch (context ignored); KV capacity and load time per GPU name.
`make_world(...)`: regions on a line (latency = |i - j| x hop_ms), servers per region, one price and
carbon value for every hour.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from torta.fleet.model import PowerSpec, Region, ServerSpec, World


@dataclass(frozen=True)
class LinearPerf:
    prefill_base_ms: float = 10.0
    prefill_ms_per_token: float = 0.1
    decode_base_ms: float = 20.0
    decode_ms_per_seq: float = 0.5
    kv_tokens: dict = field(default_factory=lambda: {"G": 100_000})  # gpu -> KV capacity (any model)
    batch_cap: int = 64
    load_seconds: float = 5.0

    def prefill_ms(self, model, gpu, tp, batch_prompt_tokens, sum_sq_prompt_tokens=None):
        return self.prefill_base_ms + self.prefill_ms_per_token * batch_prompt_tokens

    def decode_ms_per_iter(self, model, gpu, tp, batch, context_tokens):
        return self.decode_base_ms + self.decode_ms_per_seq * batch

    def kv_capacity_tokens(self, model, gpu, tp):
        return int(self.kv_tokens.get(gpu, 0))

    def max_batch(self, model, gpu, tp, context_tokens):
        return self.batch_cap

    def load_s(self, model, gpu, tp):
        return self.load_seconds


def make_world(servers_per_region=(2,), *, perf: LinearPerf | None = None, hop_ms: float = 10.0,
               models=("m",), server_models=None, initial_models=None, gpus=None,
               origin_weights=None, hosts=None, price_usd_per_mwh: float = 50.0, carbon_g_per_kwh: float = 400.0,
               transfer_usd_per_gb: float = 0.02, slot_s: float = 900.0, name: str = "fake") -> World:
    """A world with len(servers_per_region) regions. `server_models[k]` / `initial_models[k]` /
    `gpus[k]` override server k's loadable models / initial model / gpu (default: all models, the
    first, "G")."""
    R = len(servers_per_region)
    weights = origin_weights or [1.0] * R
    hosts = hosts or [n > 0 for n in servers_per_region]
    regions = tuple(Region(name=f"r{i}", lat=0.0, lon=float(i), hosts_datacenter=bool(hosts[i]),
                           origin_weight=float(weights[i])) for i in range(R))
    servers = []
    for r, n in enumerate(servers_per_region):
        for _ in range(n):
            k = len(servers)
            sm = tuple(server_models[k]) if server_models else tuple(models)
            im = initial_models[k] if initial_models else sm[0]
            g = gpus[k] if gpus else "G"
            servers.append(ServerSpec(server_id=k, region=r, gpu=g, tp=1, models=sm, initial_model=im))
    idx = np.arange(R, dtype=float)
    lat = np.abs(idx[:, None] - idx[None, :]) * hop_ms
    gpu_names = sorted({s.gpu for s in servers} | {"G"})
    return World(name=name, regions=regions, servers=tuple(servers), latency_ms=lat,
                 price_usd_per_mwh=np.full((R, 8760), price_usd_per_mwh),
                 carbon_g_per_kwh=np.full((R, 8760), carbon_g_per_kwh),
                 power={g: PowerSpec(idle_w=100.0, prefill_w=400.0, decode_w=300.0) for g in gpu_names},
                 gpu_usd_per_hour={g: 2.0 for g in gpu_names}, transfer_usd_per_gb=transfer_usd_per_gb,
                 models=tuple(models), slot_s=slot_s, perf=perf or LinearPerf())


def make_requests(arrival_s, prompt_tokens=100, output_tokens=10, *, origin=None, model=None):
    """A canonical request frame from arrays or scalars."""
    import polars as pl

    from torta.schema import REQUEST_SCHEMA, conform

    arr = np.asarray(arrival_s, dtype=float)
    n = len(arr)
    bc = lambda v: np.broadcast_to(np.asarray(v), (n,)).tolist()  # noqa: E731
    df = pl.DataFrame({
        "request_id": np.arange(n, dtype=np.int64), "arrival_s": arr, "timestamp_utc": [None] * n,
        "prompt_tokens": np.asarray(bc(prompt_tokens), dtype=np.int64),
        "output_tokens": np.asarray(bc(output_tokens), dtype=np.int64),
        "model": bc(model) if model is not None else [None] * n,
        "origin_region": bc(origin) if origin is not None else [None] * n,
        "source": ["test"] * n,
    }, schema_overrides={"timestamp_utc": pl.Datetime("us", "UTC"), "model": pl.String,
                         "origin_region": pl.String})
    return conform(df, REQUEST_SCHEMA)
