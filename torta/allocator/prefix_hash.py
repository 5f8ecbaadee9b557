"""Prefix-affinity routing with a load bound: consistent hashing with bounded loads inside a region.

Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads", SODA 2018
(arXiv:1608.01350): keys and servers sit on a hash ring; a key goes to the first server clockwise from
its hash whose load is below the bound ceil(c x (total load + 1) / servers), c = 1 + epsilon, so no
server carries more than c times the average and a key moves only when its server is full. Used for
prefix / session affinity in LLM serving routers (the llm-d inference scheduler's prefix-aware scorer
and the vLLM production stack's router route requests with the same prefix to the same replica to hit
its KV cache); `c = 1.25` is the bound of the paper's experiments (epsilon = 0.25).

Here: per (region, model), a ring with `VNODES` virtual nodes per server able to hold the model
(positions from a 64-bit mix of (server, vnode), deterministic). The key is the id of the request's
`key_blocks`-th full prefix block, or its last full block when it has fewer (a block id names its whole
prefix, `torta.sim.prefix`): requests that share their first `key_blocks` x 512 tokens share a key.
The load of a server is its requests in flight (admitted + waiting to be admitted, `FleetView`).
Servers that will not hold the model (`tail_models`) are skipped on the walk (no model switch for
affinity's sake); a request without block ids, or with no warm server under the bound, falls back to
the warm-preferring least-loaded scan every baseline gets (`WarmLeastLoadedScan`, switching guard).
`key_blocks = 4` (2,048 tokens) and c = 1.25 are not tuned.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from torta.allocator.greedy import WarmLeastLoadedScan

VNODES = 64  # virtual nodes per server on the ring
BOUND_C = 1.25  # c = 1 + epsilon, epsilon = 0.25 (Mirrokni et al., SODA 2018, experiments)
KEY_BLOCKS = 4
_MASK = (1 << 64) - 1


def mix64(x: int) -> int:
    """SplitMix64's finalizer (Steele, Lea and Flood, OOPSLA 2014): a deterministic 64-bit hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class PrefixHashAllocator:
    """Consistent hashing with bounded loads on the prefix key (see the module docstring)."""

    def __init__(self, c: float = BOUND_C, key_blocks: int = KEY_BLOCKS, switch_guard_s: float = 0.0) -> None:
        if not (math.isfinite(c) and c > 1.0):
            raise ValueError(f"prefix-hash bound c = {c}; expected a finite number > 1")
        if not (isinstance(key_blocks, int) and key_blocks >= 1):
            raise ValueError(f"prefix-hash key_blocks = {key_blocks!r}; expected an integer >= 1")
        self.c, self.key_blocks = float(c), key_blocks
        self.fallback = WarmLeastLoadedScan(switch_guard_s)
        self._view_id = None

    def _setup(self, view: Any) -> None:
        t = view.tables
        self._rings = []
        for r in range(t.n_regions):
            row = []
            for m in range(t.n_models):
                pts = sorted((mix64((s << 16) | v), s) for s in t.capable[r][m] for v in range(VNODES))
                caps = {s: t.types[t.stype[s][m]].kv_cap for s in t.capable[r][m]}
                row.append(([h for h, _ in pts], [s for _, s in pts], caps))
            self._rings.append(row)
        self._view_id = id(view)

    def choose(self, view: Any, request: Any, region: int | None) -> int:
        if region is None:
            raise ValueError("prefix-hash routes inside a region; its policy serves each origin locally")
        if self._view_id != id(view):
            self._setup(view)
        blocks = getattr(request, "prefix_blocks", ())
        m, p = request.model, request.prompt_tokens
        s = -1
        if blocks:
            s = self._walk(view, region, m, p, blocks[min(len(blocks), self.key_blocks) - 1])
        if s < 0:
            s = self.fallback.pick(view, request, region)
        if s < 0:
            raise ValueError(f"no server in region {region} can hold request {request.request_id} "
                             f"(model {m}, {p} prompt tokens)")
        return s

    def _walk(self, view: Any, region: int, m: int, p: int, key: int) -> int:
        hashes, owners, caps = self._rings[region][m]
        if not hashes:
            return -1
        tailm, nact, qlen = view.tail_models, view.batch_sizes, view.queue_lengths
        loads = {s: nact[s] + qlen[s] for s in caps if tailm[s] == m and caps[s] >= p}
        if not loads:
            return -1
        bound = math.ceil(self.c * (sum(loads.values()) + 1) / len(loads))
        n = len(hashes)
        i = bisect.bisect_left(hashes, mix64(key & _MASK))
        seen = set()
        for k in range(n):
            s = owners[(i + k) % n]
            if s in seen:
                continue
            seen.add(s)
            if s in loads and loads[s] + 1 <= bound:
                return s
            if len(seen) == len(caps):
                break
        return -1
