"""Invariants for EVERY registered policy (not only the three baselines): the engine's debug-mode checks
(monotone clock, work conservation after each event), causality and conservation of the completions,
determinism (same inputs and seed -> identical completions and summary), completion ids == input ids,
and cost == energy + transfer + switching recomputed from the output files. On a short real slice
(abilene, the first 400 Azure conv requests x2), plus a hypothesis property test over random small
worlds and traces (the learned policies, which need their abilene checkpoints, on random abilene traces).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torta.policy import list_policies
from torta.sim.cluster import BYTES_PER_TOKEN
from torta.sim.engine import EngineConfig
from torta.sim.replay import replay
from torta.sim.testing import make_requests, make_world

DEBUG = EngineConfig(debug=True)
POLICIES = [n for n, _ in list_policies()]
LEARNED = {"torta", "torta-no-forecast", "torta-no-micro", "torta-horizon-ppo"}  # need <scenario>-<variant>.pt
VOLATILE = {"wall_s", "requests_per_s", "planner_ms_per_slot"}


def test_every_registered_policy_is_covered():
    assert len(POLICIES) >= 14 and {"least-loaded", "torta", "torta-ot", "acs", "skylb"} <= set(POLICIES)


def check_run(res, world, requests: pl.DataFrame) -> pl.DataFrame:
    s = res.summary
    n = requests.height
    c = pl.read_parquet(res.completions_path)
    # conservation: one row per request, completed + dropped = requests
    assert s["requests"] == n == c.height
    assert s["completed"] + s["dropped"] == n
    assert sorted(c["request_id"].to_list()) == sorted(requests["request_id"].to_list())  # ids in == ids out
    ok = c.filter(pl.col("dropped_reason").is_null())
    assert ok.height == s["completed"]
    # causality
    assert (ok["arrival_s"] <= ok["admitted_s"] + 1e-9).all()
    assert (ok["admitted_s"] <= ok["first_token_s"] + 1e-9).all()
    assert (ok["first_token_s"] <= ok["finish_s"] + 1e-9).all()
    assert (ok["ttft_s"] >= 0).all() and (ok["response_s"] >= ok["ttft_s"] - 1e-9).all()
    times = [t for t, _, _ in res.event_log]
    assert times and all(a <= b for a, b in zip(times, times[1:])), "clock went back"
    # every number finite (replay() raises on non-finite; this holds the contract from the outside)
    for k, v in s.items():
        if isinstance(v, float):
            assert math.isfinite(v), k
    # cost = energy + transfer + switching, each term recomputed from the files
    slots = res.slots
    cross = ok.filter(pl.col("serving_region") != pl.col("origin_region"))
    transfer = float((cross["prompt_tokens"] + cross["output_tokens"]).sum()) * BYTES_PER_TOKEN / 1e9 \
        * world.transfer_usd_per_gb
    assert s["energy_usd"] == pytest.approx(float(slots["energy_usd"].sum()), rel=1e-9, abs=1e-12)
    assert s["switching_usd"] == pytest.approx(float(slots["switching_usd"].sum()), rel=1e-9, abs=1e-12)
    assert s["transfer_usd"] == pytest.approx(transfer, rel=1e-9, abs=1e-12)
    assert s["cost_usd"] == pytest.approx(s["energy_usd"] + s["transfer_usd"] + s["switching_usd"], rel=1e-12)
    assert res.cost["cost_usd"] == s["cost_usd"]
    return c


@pytest.fixture(scope="module")
def slice_():
    from torta.fleet.scenario import load_scenario
    from torta.traces import load_trace

    return load_scenario("abilene"), load_trace("azure-2023-conv").head(400)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_on_a_real_slice(slice_, policy, tmp_path):
    world, df = slice_
    a = replay(world, df, policy, seed=0, out_dir=tmp_path / "a", config=DEBUG, load_factor=2.0)
    ca = check_run(a, world, df)
    b = replay(world, df, policy, seed=0, out_dir=tmp_path / "b", config=DEBUG, load_factor=2.0)
    cb = check_run(b, world, df)
    assert ca.equals(cb), "same inputs and seed gave different completions"
    assert {k: v for k, v in a.summary.items() if k not in VOLATILE} == \
        {k: v for k, v in b.summary.items() if k not in VOLATILE}


@st.composite
def small_world_and_trace(draw):
    regions = draw(st.lists(st.integers(0, 3), min_size=1, max_size=4).filter(lambda xs: sum(xs) > 0))
    weights = draw(st.lists(st.floats(0.0, 5.0), min_size=len(regions), max_size=len(regions))
                   .filter(lambda w: sum(w) > 0))
    n = draw(st.integers(0, 60))
    arrivals = sorted(draw(st.lists(st.floats(0.0, 3600.0), min_size=n, max_size=n)))
    prompts = draw(st.lists(st.integers(0, 4000), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(0, 400), min_size=n, max_size=n))
    seed = draw(st.integers(0, 3))
    return regions, weights, arrivals, prompts, outputs, seed


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(case=small_world_and_trace())
def test_property_random_worlds_and_traces(policy, case, tmp_path_factory, slice_):
    regions, weights, arrivals, prompts, outputs, seed = case
    if policy in LEARNED:
        world = slice_[0]  # checkpoints exist for abilene only: random traces on it
    else:
        world = make_world(tuple(regions), origin_weights=weights)
    df = make_requests(np.asarray(arrivals, dtype=float), np.asarray(prompts, dtype=np.int64),
                       np.asarray(outputs, dtype=np.int64)) if arrivals else make_requests([])
    out = tmp_path_factory.mktemp("prop")
    res = replay(world, df, policy, seed=seed, out_dir=out / "run", config=DEBUG)
    if df.height:
        check_run(res, world, df)
    else:
        assert res.summary["requests"] == 0 and res.summary["cost_usd"] >= 0
