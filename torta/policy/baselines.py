"""Baseline policies: round-robin, local-only, least-loaded."""

from __future__ import annotations

import numpy as np

from torta.policy.base import BasePolicy, RoundRobinAllocator, SlotState, WarmLeastLoaded


class RoundRobin(BasePolicy):
    """No plan; each request goes to the next server (by id) able to load its model, fleet-wide,
    regardless of load or distance."""

    name = "round-robin"
    description = "Cycle requests over all servers able to serve the model, ignoring load and distance."

    def __init__(self) -> None:
        super().__init__()
        self.allocator = RoundRobinAllocator()


class LocalOnly(BasePolicy):
    """Serve each request in its origin region; origins without a data centre send their demand to the
    nearest (lowest-latency, ties by index) region that has servers. Warm least-loaded inside the region."""

    name = "local-only"
    description = "Serve in the origin region (nearest data-centre region if the origin has none); warm least-loaded inside."

    def reset(self, world, seed: int) -> None:
        super().reset(world, seed)
        R = world.n_regions
        has = np.zeros(R, dtype=bool)
        for s in world.servers:
            has[s.region] = True
        if not has.any():
            raise ValueError(f"world {world.name!r} has no servers")
        lat = np.asarray(world.latency_ms, dtype=float)
        plan = np.zeros((R, R))
        cand = np.flatnonzero(has)
        for i in range(R):
            j = i if has[i] else int(cand[np.lexsort((cand, lat[i, cand]))[0]])
            plan[i, j] = 1.0
        self._plan = plan

    def plan(self, state: SlotState) -> np.ndarray:
        return self._plan


class LeastLoaded(BasePolicy):
    """No plan; global join-shortest-queue by expected backlog: the server (anywhere) with the least
    expected wait, where wait = expected backlog (server-seconds, see torta.sim.cluster) + one-way network
    latency from the origin; warm servers preferred unless a cold one is free sooner after loading."""

    name = "least-loaded"
    description = "Global join-shortest-queue by expected backlog (+ network latency), warm servers preferred."

    def __init__(self) -> None:
        super().__init__()
        self.allocator = WarmLeastLoaded(latency_aware=True)
