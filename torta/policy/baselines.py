"""Baseline policies: round-robin, local-only, least-loaded, least-loaded-d2."""

from __future__ import annotations

import numpy as np

from torta.policy.base import BasePolicy, PowerOfDLeastLoaded, RoundRobinAllocator, SlotState, WarmLeastLoaded


class RoundRobin(BasePolicy):
    """No plan; fleet-wide round robin, regardless of distance: each request goes to the next server
    (by id) that holds its model and can start it within the model's load time; a model is loaded
    only when none can (warm-preferring, as every baseline's allocator; issue 17)."""

    name = "round-robin"
    description = "Cycle requests over the servers holding the model (load one only when none is near free), ignoring distance."

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


class LeastLoadedD2(BasePolicy):
    """No plan; power of d = 2 choices: each origin's gateway sends a request to the less loaded of two
    servers drawn at random among those holding its model (expected wait as least-loaded reads it,
    remote servers as of the last load report), falling back to least-loaded's choice when neither can
    start it within a load time. The herd-robust deployable form of least-loaded on old information
    (`torta.allocator.power_of_d`). d = 2 is the classic; the d chosen on validation day 11 is
    `least-loaded-d4` below (docs/data/tune-least-loaded-d.json)."""

    name = "least-loaded-d2"
    description = "Least loaded of 2 random warm servers (power of two choices), robust to stale load reports."
    d = 2

    def __init__(self) -> None:
        super().__init__()
        self.allocator = PowerOfDLeastLoaded(latency_aware=True, d=self.d)


class LeastLoadedD4(LeastLoadedD2):
    """least-loaded-d2 with d = 4: the d chosen on validation day 11 (abilene, servegen-mix-14d, whole
    day after 2 h warm-up, 5 s load reports: mean response d=1 188.4 s, 2 7.83, 3 6.48, 4 5.53, 8 15.18;
    docs/data/tune-least-loaded-d.json, `python -m benchmarks.tune_power_of_d`)."""

    name = "least-loaded-d4"
    description = "Least loaded of 4 random warm servers (power of d choices, d tuned on day 11)."
    d = 4
