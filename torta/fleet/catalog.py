"""GPU and model catalogs, read from `torta/data/fleet/{gpus,models}.csv`.

Both files are long tables `name,field,value,source` so every figure carries its own source.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from torta.errors import InputError, UnknownNameError
from torta.fleet.paths import FLEET_DATA_DIR

GIB = 1024**3


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gib: float
    tflops_fp16: float  # dense FP16/BF16 tensor TFLOP/s
    hbm_tb_s: float  # memory bandwidth, TB/s
    tdp_w: float
    idle_w: float
    prefill_w: float
    decode_w: float
    usd_per_gpu_hour: float
    mfu_prefill: float  # roofline: achieved fraction of peak FLOP/s in prefill
    bw_eff_decode: float  # roofline: achieved fraction of memory bandwidth in decode
    host_link_gb_s: float  # effective host-to-GPU bandwidth used for model loads

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB


@dataclass(frozen=True)
class ModelSpec:
    name: str
    params: float
    weight_bytes: float
    n_layers: int
    d_model: int
    n_kv_heads: int
    head_dim: int
    kv_bytes_per_token: float


def _read_long(path: Path, key: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        expected = [key, "field", "value", "source"]
        if reader.fieldnames != expected:
            raise InputError(path, f"header must be {expected}, got {reader.fieldnames}", line=1)
        for line, row in enumerate(reader, start=2):
            if not row["source"].strip():
                raise InputError(path, "every figure needs a source", line=line, field="source")
            try:
                value = float(row["value"])
            except ValueError:
                raise InputError(path, f"value {row['value']!r} is not a number", line=line,
                                 field="value") from None
            out.setdefault(row[key], {})[row["field"]] = value
    return out


def _build(cls, path: Path, key: str, kind: str) -> dict:
    fields = [f for f in cls.__dataclass_fields__ if f != "name"]
    out = {}
    for name, vals in _read_long(path, key).items():
        missing = [f for f in fields if f not in vals]
        if missing:
            raise InputError(path, f"{kind} {name!r} lacks {missing}", field="field")
        kwargs = {f: (int(vals[f]) if cls.__dataclass_fields__[f].type == "int" else vals[f])
                  for f in fields}
        out[name] = cls(name=name, **kwargs)
    return out


@lru_cache(maxsize=1)
def gpu_catalog() -> dict[str, GpuSpec]:
    return _build(GpuSpec, FLEET_DATA_DIR / "gpus.csv", "gpu", "GPU")


@lru_cache(maxsize=1)
def model_catalog() -> dict[str, ModelSpec]:
    return _build(ModelSpec, FLEET_DATA_DIR / "models.csv", "model", "model")


def gpu(name: str) -> GpuSpec:
    cat = gpu_catalog()
    if name not in cat:
        raise UnknownNameError("GPU", name, list(cat))
    return cat[name]


def model(name: str) -> ModelSpec:
    cat = model_catalog()
    if name not in cat:
        raise UnknownNameError("model", name, list(cat))
    return cat[name]
