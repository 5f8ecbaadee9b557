"""`prefix-hash`: the prefix-affinity baseline with a load bound (issue 21).

Each origin's requests are served in its own region (the nearest data-centre region for origins without
one), as `local-only`; inside the region a request goes to a server by consistent hashing with bounded
loads on its prefix key (`torta.allocator.prefix_hash`: Mirrokni, Thorup and Zadimoghaddam, SODA 2018),
so requests sharing a prefix meet the same server's prefix cache unless it carries more than 1.25 x the
region's mean load. Requests without prefix block ids go to the baselines' warm least-loaded allocator.
"""

from __future__ import annotations

from torta.allocator.prefix_hash import PrefixHashAllocator
from torta.planner.context import BASELINE_SWITCH_GUARD_S
from torta.policy.baselines import LocalOnly


class PrefixHash(LocalOnly):
    name = "prefix-hash"
    description = ("Serve locally; inside the region, consistent hashing with bounded loads (c = 1.25) on the "
                   "prompt's prefix blocks, for prefix-cache affinity.")

    def __init__(self) -> None:
        super().__init__()
        self.allocator = PrefixHashAllocator(switch_guard_s=BASELINE_SWITCH_GUARD_S)

    def params(self) -> dict:
        a = self.allocator
        return {"bound_c": a.c, "key_blocks": a.key_blocks, "switch_guard_s": a.fallback.switch_guard_s}
