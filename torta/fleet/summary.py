"""A scenario's headline numbers (for `torta fleet show`)."""

from __future__ import annotations

import numpy as np

from torta.fleet.scenario import (capacity_requests_per_s, fleet_tables, load_scenario,
                                  scenario_path)
import tomllib


def scenario_summary(name_or_path: str, prompt_tokens: float = 1155.0,
                     output_tokens: float = 211.0) -> dict:
    world = load_scenario(name_or_path)
    doc_toml = tomllib.loads(scenario_path(name_or_path).read_text(encoding="utf-8"))
    tables = fleet_tables(world)
    n = world.n_regions
    off = world.latency_ms[~np.eye(n, dtype=bool)] if n > 1 else np.zeros(1)
    caps = {m: {"initial": float(capacity_requests_per_s(world, m, prompt_tokens, output_tokens,
                                                          "initial").sum()),
                "allowed": float(capacity_requests_per_s(world, m, prompt_tokens, output_tokens,
                                                          "allowed").sum())}
            for m in world.models}
    per_region = np.zeros(n)
    for m in world.models:
        per_region += capacity_requests_per_s(world, m, prompt_tokens, output_tokens, "initial")
    regions = tables["regions"].to_dicts()
    for r, c in zip(regions, per_region):
        r["capacity_requests_per_s"] = float(c)
        r.pop("scenario")
    p = world.price_usd_per_mwh
    return {
        "scenario": world.name,
        "description": str(doc_toml.get("description", "")),
        "regions": n,
        "dc_regions": len(world.dc_regions()),
        "servers": len(world.servers),
        "gpus": int(sum(s.tp for s in world.servers)),
        "gpu_types": sorted({s.gpu for s in world.servers}),
        "models": list(world.models),
        "slot_s": world.slot_s,
        "start_hour_of_year": world.start_hour_of_year,
        "window_hours": world.window_hours,
        "latency_ms": {"min": float(off.min()), "median": float(np.median(off)),
                       "max": float(off.max())},
        "price_usd_per_mwh": {"min": float(p.min()), "mean": float(p.mean()),
                              "max": float(p.max())},
        "carbon_g_per_kwh": {"min": float(world.carbon_g_per_kwh.min()),
                             "mean": float(world.carbon_g_per_kwh.mean()),
                             "max": float(world.carbon_g_per_kwh.max())},
        "capacity_requests_per_s": caps,
        "capacity_basis": {"prompt_tokens": prompt_tokens, "output_tokens": output_tokens},
        "gpu_usd_per_hour": float(sum(world.gpu_usd_per_hour[s.gpu] * s.tp for s in world.servers)),
        "region_table": regions,
    }
