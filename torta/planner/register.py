"""Planner-layer policies behind the `torta.policy` seam, one class and one registration each:

- `myopic-ot`: OT on the current slot (demand = the slot just observed), no forecast; the baselines'
  warm least-loaded allocator inside the region.
- `torta-ot`: OT on forecast demand (day-ahead `torta.forecast.forecast` over the history before the
  replay, corrected online by the observed/forecast ratio) + the TORTA micro allocator. The forecast is
  computed in `reset` (before t = 0) and reported as params()["forecast_s"], not in planner_ms_per_slot.
- `torta-ot-oracle`, `torta-ot-last`: ablations of torta-ot planning on the true / last observed demand.
- `torta-ot-hungarian`: ablation of torta-ot's micro layer: Hungarian assignment over a short batch
  window per region (the simulator's batch-window hook) instead of the greedy per-request allocator.
- `torta-horizon`: receding-horizon LP over the next H slots of forecast demand (flows and servers per
  model per region, switches charged once; torta.planner.horizon) + the target-following micro allocator
  (torta.allocator.targets: pre-loads to the plan's placement, switches otherwise only past a margin).
- `torta-horizon-h1`, `-h4`, `-h12`, `-oracle`, `-last`, `-no-preload`: ablations of torta-horizon, one
  setting each (H = 1 / 4 / 12 instead of 8; true / persistence demand instead of the forecast; no
  pre-loading); `torta experiment ablation` runs them on the evaluation protocol.
- `skylb`: SkyLB selective pushing (threshold in pending requests per server, tuned per scenario).
- `acs`: ACS-Diffusion (adaptive cluster synchronisation over the topology, zones = pricing zones).
- `prefix-hash`: local serving + consistent hashing with bounded loads on the prompt's prefix blocks
  (prefix-cache affinity; torta.planner.prefix_affinity).

Policies take optional context through `prepare(history=..., oracle_demand=..., mean_prompt_tokens=...,
mean_output_tokens=..., model_share=...)` before `reset`; `torta compare` calls it.
"""

from __future__ import annotations

from torta.planner.context import BASELINE_SWITCH_GUARD_S, ContextMixin
from torta.planner.horizon_policy import HORIZON_ABLATIONS, TortaHorizon
from torta.planner.ot_policy import MyopicOT, OTPolicy, TortaOT, TortaOTHungarian, TortaOTLast, TortaOTOracle
from torta.planner.prefix_affinity import PrefixHash
from torta.planner.reactive import ACS, ACSAllocator, SkyLB, SkyLBAllocator
from torta.policy.registry import register

__all__ = ["ACS", "ACSAllocator", "BASELINE_SWITCH_GUARD_S", "ContextMixin", "MyopicOT", "OTPolicy", "PrefixHash", "SkyLB",
           "SkyLBAllocator", "TortaHorizon", "TortaOT", "TortaOTHungarian", "TortaOTLast", "TortaOTOracle"]

for _cls in (MyopicOT, TortaOT, TortaOTOracle, TortaOTLast, TortaOTHungarian, TortaHorizon, SkyLB, ACS):
    register(_cls.name, _cls, _cls.description)
# Registered, but not in `torta run`'s default set (the main job): the ablations run in their own
# experiment, and prefix-hash routes on prefix blocks, which the main job's workload does not carry.
for _cls in (*HORIZON_ABLATIONS, PrefixHash):
    register(_cls.name, _cls, _cls.description, default_run=False)

