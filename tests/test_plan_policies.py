"""The planner-layer policies behind the torta.policy seam, replayed on small request sets."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl
import pytest

import torta.planner.register as P
from torta.fleet.model import ServerSpec
from torta.fleet.scenario import load_scenario
from torta.allocator.greedy import TortaAllocator
from torta.allocator.config import MicroConfig
from torta.policy import get_policy, list_policies
from torta.policy.base import RequestInfo
from torta.schema import REQUEST_SCHEMA
from torta.sim.cluster import build_tables
from torta.sim.replay import replay


@pytest.fixture(scope="module")
def world():
    return load_scenario("abilene")


def _requests(world, n=400, span_s=1200.0, models=None, origins=None, seed=0):
    rng = np.random.default_rng(seed)
    names = [r.name for r in world.regions] if origins is None else origins
    models = list(world.models) if models is None else models
    return pl.DataFrame({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": np.sort(rng.uniform(0, span_s, n)),
        "timestamp_utc": [None] * n,
        "prompt_tokens": rng.integers(50, 1500, n).astype(np.int64),
        "output_tokens": rng.integers(5, 300, n).astype(np.int64),
        "model": rng.choice(models, n).tolist(),
        "origin_region": rng.choice(names, n).tolist(),
        "source": ["test"] * n,
    }, schema=REQUEST_SCHEMA)


def test_registered_with_descriptions():
    names = dict(list_policies())
    for name in ("myopic-ot", "torta-ot", "torta-ot-oracle", "torta-ot-last", "skylb", "acs"):
        assert name in names and len(names[name]) > 20
        assert get_policy(name).name == name


@pytest.mark.parametrize("name", ["myopic-ot", "torta-ot", "skylb", "acs"])
def test_replay_conserves_requests_and_is_deterministic(world, name):
    df = _requests(world)
    out = []
    for _ in range(2):
        pol = get_policy(name)()
        res = replay(world, df, pol, seed=3)
        s = res.summary
        assert s["completed"] + s["dropped"] == df.height
        out.append((s["response_mean_s"], s["response_p95_s"], s["switches"], s["cost_usd"]))
        for v in s.values():
            if isinstance(v, float):
                assert math.isfinite(v)
    assert out[0] == out[1]


def test_ot_plans_are_row_stochastic_and_local_when_capacity_suffices(world):
    pol = P.MyopicOT()
    df = _requests(world, n=300, span_s=1800.0, models=["llama2-13b"])
    replay(world, df, pol, seed=0)
    plans = pol.last_plans
    assert plans.shape == (len(world.models), world.n_regions, world.n_regions)
    assert np.all(plans >= -1e-12)
    np.testing.assert_allclose(plans.sum(axis=2), 1.0, atol=1e-9)
    # light 13b load (~0.2 req/s in all): every origin with a warm 13b server keeps its demand local
    m = world.models.index("llama2-13b")
    warm_13b = {s.region for s in world.servers if s.initial_model == "llama2-13b"}
    for r in warm_13b:
        assert plans[m, r, r] == pytest.approx(1.0), r


def test_skylb_never_pushes_below_its_threshold(world):
    df = _requests(world, models=["llama2-7b"])  # every abilene region can serve 7b
    s = replay(world, df, P.SkyLB(threshold=1e9), seed=0).summary
    assert s["cross_region_share"] == 0.0
    hot = _requests(world, n=3000, span_s=300.0, models=["llama2-7b"], origins=["SNVAng"])
    pushed = replay(world, hot, P.SkyLB(threshold=0.5), seed=0).summary
    assert pushed["cross_region_share"] > 0.1


def test_acs_redirects_from_an_overloaded_region(world):
    hot = _requests(world, n=4000, span_s=120.0, models=["llama2-7b"], origins=["SNVAng"])
    local = replay(world, hot, "local-only", seed=0).summary
    acs = replay(world, hot, P.ACS(), seed=0).summary
    assert local["cross_region_share"] == 0.0
    assert acs["cross_region_share"] > 0.05
    assert acs["response_mean_s"] < local["response_mean_s"]


def test_torta_forecast_without_history_falls_back_to_last(world):
    pol = P.TortaOT()
    replay(world, _requests(world, n=100), pol, seed=0)
    assert pol.params()["demand_source"].startswith("last")


def _two_server_world(world):
    servers = (ServerSpec(0, 0, "A100", 1, ("llama2-13b", "llama2-7b"), "llama2-7b"),
               ServerSpec(1, 0, "A100", 1, ("llama2-13b", "llama2-7b"), "llama2-13b"),
               ServerSpec(2, 1, "A100", 1, ("llama2-13b", "llama2-7b"), "llama2-7b"))
    return dataclasses.replace(world, servers=servers, models=("llama2-13b", "llama2-7b"))


class _View:
    def __init__(self, tables, bu, tailm):
        self.tables = tables
        self.busy_until_s, self.tail_models, self.batch_sizes = bu, tailm, [0] * len(bu)
        self.now_s = 0.0

    def queue_len(self, server):
        return 0


def test_torta_allocator_warm_vs_cold(world):
    w = _two_server_world(world)
    t = build_tables(w)
    req = RequestInfo(0, 0, 1, 500, 100, 0.0)  # model 1 = llama2-7b, warm on server 0 only in region 0
    alloc = TortaAllocator(MicroConfig(switch_penalty_s=1.0))
    assert alloc.choose(_View(t, [0.0, 0.0, 0.0], [1, 0, 1]), req, 0) == 0  # both idle: warm wins
    load = t.types[t.stype[1][1]].load_s
    # warm backlog below the cold start (load + penalty): stays warm
    alloc = TortaAllocator(MicroConfig(switch_penalty_s=1.0))
    assert alloc.choose(_View(t, [load * 0.5, 0.0, 0.0], [1, 0, 1]), req, 0) == 0
    # warm backlog far above it: the cold server wins, unless it is the last server of its model in the
    # region (displacement: its model would have to be loaded back), which raises the bar
    big = 10 * (2 * load + 2.0)
    alloc = TortaAllocator(MicroConfig(switch_penalty_s=1.0))
    assert alloc.choose(_View(t, [big, 0.0, 0.0], [1, 0, 1]), req, 0) == 1
    alloc = TortaAllocator(MicroConfig(switch_penalty_s=1.0))
    mid = 1.5 * (load + 1.0)  # above one cold start, below cold start + displacement
    assert alloc.choose(_View(t, [mid, 0.0, 0.0], [1, 0, 1]), req, 0) == 0
    # the region is respected
    alloc = TortaAllocator()
    assert alloc.choose(_View(t, [big, big, 0.0], [1, 0, 1]), req, 0) in (0, 1)
    assert alloc.choose(_View(t, [0.0, 0.0, 0.0], [1, 0, 1]), req, 1) == 2


def test_baseline_allocator_guard_avoids_needless_reloads(world):
    from torta.allocator.greedy import WarmLeastLoadedScan

    w = _two_server_world(world)
    t = build_tables(w)
    req = RequestInfo(0, 0, 1, 500, 100, 0.0)
    load = t.types[t.stype[1][1]].load_s
    view = _View(t, [2 * load, 0.0, 0.0], [1, 0, 1])  # warm backlog twice the load time
    assert WarmLeastLoadedScan(0.0).pick(view, req, 0) == 1  # the simulator's rule: reload
    assert WarmLeastLoadedScan(10.0).pick(view, req, 0) == 0  # guarded: stay warm
