"""`torta-horizon` end to end on a small synthetic world, and its target-following micro allocator."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

import torta.planner.register  # noqa: F401  (registers the planner-layer policies)
from torta.allocator.config import MicroConfig, TargetConfig
from torta.allocator.targets import TargetAllocator
from torta.policy import get_policy, list_policies
from torta.policy.base import RequestInfo
from torta.sim.cluster import build_tables
from torta.sim.engine import EngineConfig
from torta.sim.replay import replay
from torta.sim.testing import LinearPerf, make_requests, make_world

SLOT_S = 60.0
SLOTS = 20
OUT_TOKENS = 200


def _ramped(seed: int = 0):
    """Two regions x 3 servers, all holding model a at t = 0; a flat at 20/s, b absent for 8 slots, then
    ramping to 30/s: the servers must be shared between the models as b arrives."""
    w = make_world((3, 3), models=("a", "b"), hop_ms=5.0, slot_s=SLOT_S, perf=LinearPerf(load_seconds=5.0))
    rng = np.random.default_rng(seed)
    arr, mod, org = [], [], []
    for k in range(SLOTS):
        rb = 0.0 if k < 8 else min(30.0, (k - 7) * 7.5)
        for m, rate in (("a", 20.0), ("b", rb)):
            n = int(rng.poisson(rate * SLOT_S))
            arr += rng.uniform(k * SLOT_S, (k + 1) * SLOT_S, n).tolist()
            mod += [m] * n
            org += rng.choice(["r0", "r1"], n).tolist()
    o = np.argsort(arr, kind="stable")
    return w, make_requests(np.asarray(arr)[o], 200, OUT_TOKENS, origin=[org[i] for i in o],
                            model=[mod[i] for i in o])


def _run(tmp_path, name, world, reqs, seed=1, config=EngineConfig()):
    pol = get_policy(name)()
    pol.prepare(mean_prompt_tokens=200, mean_output_tokens=OUT_TOKENS)
    res = replay(world, reqs, pol, seed=seed, out_dir=tmp_path / f"{name}-{seed}", config=config)
    return res, pol


def test_registered_with_a_description():
    names = dict(list_policies())
    assert names.get("torta-horizon")


def test_replay_conserves_requests_switches_less_than_torta_ot_and_is_deterministic(tmp_path):
    world, reqs = _ramped()
    res, pol = _run(tmp_path, "torta-horizon", world, reqs, config=EngineConfig(debug=True))
    s = res.summary
    assert s["requests"] == reqs.height and s["completed"] + s["dropped"] == reqs.height
    c = pl.read_parquet(res.completions_path)
    assert sorted(c["request_id"].to_list()) == sorted(reqs["request_id"].to_list())
    p = pol.params()
    assert p["lp_failures"] == 0 and p["horizon_slots"] == 8
    assert p["max_utilisation"] == pol.hconfig.max_utilisation  # the LP's, not the OT class attribute
    ot, _ = _run(tmp_path, "torta-ot", world, reqs)
    assert s["switches"] < ot.summary["switches"]
    again, _ = _run(tmp_path / "again", "torta-horizon", world, reqs, config=EngineConfig(debug=True))
    assert pl.read_parquet(again.completions_path).equals(c)  # same seed: identical completions


def _View(tables, bu, tailm):
    """A stand-in for the engine's FleetView over the given live lists."""
    return SimpleNamespace(tables=tables, now_s=0.0, busy_until_s=bu, tail_models=tailm, batch_sizes=[0] * len(bu),
                           queue_len=lambda server: 0)


@pytest.fixture()
def region_of_four():
    """One region, 4 servers: 3 hold model 0, 1 holds model 1 (load 5 s)."""
    w = make_world((4,), models=("a", "b"), initial_models=["a", "a", "a", "b"], perf=LinearPerf(load_seconds=5.0))
    return build_tables(w)


def _alloc(**kw):
    return TargetAllocator(MicroConfig(spread_s_per_request=0.0), TargetConfig(**kw))


def test_a_target_ramp_preloads_the_least_busy_surplus_server_even_with_a_warm_one_free(region_of_four):
    t = region_of_four
    req = RequestInfo(0, 0, 1, 100, 10, 0.0)  # model b; server 3 holds b and is idle
    view = _View(t, [30.0, 2.0, 9.0, 0.0], [0, 0, 0, 1])
    a = _alloc()
    assert a.choose(view, req, 0) == 3  # no targets yet: the warm idle server
    a.set_targets(np.array([[1, 3]]), held=np.array([[3, 1]]))  # the plan wants 2 more servers on b
    assert a.choose(view, req, 0) == 1  # pre-load on the least busy a-server
    view.tail_models[1] = 1
    assert a.choose(view, req, 0) == 2  # the second pre-load; then the deficit is spent
    view.tail_models[2] = 1
    assert a.choose(view, req, 0) == 3 and a.preloads == 2
    b = _alloc(preload=False)
    b.set_targets(np.array([[1, 3]]), held=np.array([[3, 1]]))
    assert b.choose(_View(t, [30.0, 2.0, 9.0, 0.0], [0, 0, 0, 1]), req, 0) == 3  # without pre-loading


def test_off_plan_switch_needs_the_warm_wait_to_exceed_the_load_by_the_margin(region_of_four):
    t = region_of_four
    req = RequestInfo(0, 0, 1, 100, 10, 0.0)
    a = _alloc(switch_margin_s=20.0)
    view = _View(t, [0.0, 0.0, 0.0, 20.0], [0, 0, 0, 1])  # one view: the allocator binds its lists

    def warm_wait(s):
        view.busy_until_s[3] = s
        return a.choose(view, req, 0)

    a.set_targets(np.array([[2, 1]]), held=np.array([[3, 1]]))  # a above target: one a-server may go
    assert warm_wait(20.0) == 3  # 20 s < 5 s load + 20 s margin: stay warm
    assert warm_wait(30.0) in (0, 1, 2)  # 30 s > 25 s: switch
    # at target, a's servers are kept warm: the load back counts too (30 s < 5 + 20 + 5 + 20)
    a.set_targets(np.array([[3, 1]]), held=np.array([[3, 1]]))
    assert warm_wait(30.0) == 3
    assert warm_wait(60.0) in (0, 1, 2)
