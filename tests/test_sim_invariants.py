"""Invariants of the replay simulator on real and adversarial workloads (debug mode asserts the
monotone clock and work conservation after every event)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torta.sim.engine import EngineConfig
from torta.sim.replay import replay
from torta.sim.testing import LinearPerf, make_requests, make_world

DEBUG = EngineConfig(debug=True)


def run(world, df, policy="least-loaded", seed=0, tmp=None, **kw):
    res = replay(world, df, policy, seed=seed, out_dir=tmp, config=kw.pop("config", DEBUG), **kw)
    return res


def completions(res) -> pl.DataFrame:
    return pl.read_parquet(res.completions_path)


def assert_invariants(res, n):
    s = res.summary
    assert s["requests"] == n
    assert s["completed"] + s["dropped"] == n, s
    c = completions(res)
    assert c.height == n
    assert c["request_id"].n_unique() == n
    ok = c.filter(pl.col("dropped_reason").is_null())
    assert ok.height == s["completed"]
    assert (ok["arrival_s"] <= ok["admitted_s"] + 1e-12).all()
    assert (ok["admitted_s"] <= ok["first_token_s"] + 1e-12).all()
    assert (ok["first_token_s"] <= ok["finish_s"] + 1e-12).all()
    assert (ok["ttft_s"] >= 0).all() and (ok["response_s"] >= ok["ttft_s"] - 1e-12).all()
    times = [t for t, _, _ in res.event_log]
    assert all(a <= b for a, b in zip(times, times[1:])), "clock went back"
    for k, v in s.items():
        if isinstance(v, float):
            assert np.isfinite(v), k
    return c


@pytest.fixture(scope="module")
def conv_head():
    from torta.traces import load_trace

    return load_trace("azure-2023-conv").head(3000)


@pytest.mark.parametrize("policy", ["least-loaded", "round-robin", "local-only"])
def test_real_trace_invariants(conv_head, policy, tmp_path):
    from torta.fleet.scenario import load_scenario

    world = load_scenario("abilene")
    res = run(world, conv_head, policy, tmp=tmp_path, load_factor=4.0)
    assert_invariants(res, conv_head.height)


def test_real_trace_overloaded_single_region(conv_head, tmp_path):
    from torta.fleet.scenario import load_scenario

    world = load_scenario("single-region")
    res = run(world, conv_head, "least-loaded", tmp=tmp_path, load_factor=20.0)
    c = assert_invariants(res, conv_head.height)
    assert c["ttft_s"].max() > 10 * c["ttft_s"].min()  # queues really built up


def test_all_requests_at_one_instant(tmp_path):
    w = make_world((2, 1))
    n = 2000
    res = run(w, make_requests(np.zeros(n), 200, 50), tmp=tmp_path)
    c = assert_invariants(res, n)
    assert c["dropped_reason"].null_count() == n


def test_burst_at_50x_mean_rate(tmp_path):
    rng = np.random.default_rng(1)
    base = np.sort(rng.uniform(0, 600, 600))  # 1 req/s
    burst = 300 + np.sort(rng.uniform(0, 10, 500))  # 50 req/s for 10 s
    arr = np.sort(np.concatenate([base, burst]))
    res = run(make_world((2, 2)), make_requests(arr, 500, 100), tmp=tmp_path)
    c = assert_invariants(res, len(arr))
    assert c["dropped_reason"].null_count() == len(arr)


def test_zero_output_tokens_finish_at_first_token(tmp_path):
    res = run(make_world((1,)), make_requests(np.arange(50) * 0.01, 100, 0), tmp=tmp_path)
    c = assert_invariants(res, 50)
    assert (c["finish_s"] == c["first_token_s"]).all()
    assert (c["tpot_s"] == 0.0).all()


def test_prompt_larger_than_any_kv_is_dropped_not_hung(tmp_path):
    w = make_world((1, 1), perf=LinearPerf(kv_tokens={"G": 1000}))
    df = make_requests([0.0, 0.1, 0.2, 0.3], [500, 5000, 999, 1000], 10)
    res = run(w, df, tmp=tmp_path)
    c = assert_invariants(res, 4)
    assert res.summary["dropped_reasons"]["prompt_exceeds_kv"] == 1
    assert c.filter(pl.col("request_id") == 1)["dropped_reason"].to_list() == ["prompt_exceeds_kv"]
    # prompt + output > capacity but prompt fits: served alone with its reservation capped
    assert c.filter(pl.col("request_id") == 3)["dropped_reason"].to_list() == [None]


@pytest.mark.parametrize("policy", ["least-loaded", "round-robin", "local-only"])
def test_region_with_no_servers(policy, tmp_path):
    # region 1 has no servers but originates most demand
    w = make_world((2, 0, 1), origin_weights=[0.1, 0.8, 0.1])
    arr = np.sort(np.random.default_rng(0).uniform(0, 100, 500))
    res = run(w, make_requests(arr, 100, 20), policy, tmp=tmp_path)
    c = assert_invariants(res, 500)
    assert res.summary["dropped"] == 0
    assert "r1" not in c["serving_region"].to_list()
    assert (c["origin_region"] == "r1").sum() > 300


def test_plan_into_empty_region_is_rerouted(tmp_path):
    from torta.policy import BasePolicy

    class AllToEmpty(BasePolicy):
        name = "all-to-empty"

        def plan(self, state):
            p = np.zeros((3, 3))
            p[:, 1] = 1.0  # region 1 has no servers
            return p

    w = make_world((1, 0, 2))
    df = make_requests(np.arange(100) * 0.1, 100, 10, origin="r1")
    res = run(w, df, AllToEmpty(), tmp=tmp_path)
    c = assert_invariants(res, 100)
    assert set(c["serving_region"].to_list()) == {"r0"}  # nearest to r1 by latency, ties by index


def test_model_no_server_can_load_is_dropped(tmp_path):
    w = make_world((1,), models=("a", "b"), server_models=[("a",)])
    df = make_requests([0.0, 1.0], 100, 10, model="b")
    res = run(w, df, tmp=tmp_path)
    assert_invariants(res, 2)
    assert res.summary["dropped_reasons"]["no_server_for_model"] == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 120), span=st.floats(0.0, 50.0), seed=st.integers(0, 10_000),
       kv=st.integers(50, 3000), regions=st.lists(st.integers(0, 3), min_size=1, max_size=4),
       policy=st.sampled_from(["least-loaded", "round-robin", "local-only"]))
def test_property_conservation_and_causality(n, span, seed, kv, regions, policy):
    if sum(regions) == 0:
        regions = regions + [1]
    rng = np.random.default_rng(seed)
    w = make_world(tuple(regions), perf=LinearPerf(kv_tokens={"G": kv}, batch_cap=4),
                   models=("a", "b"), initial_models=None)
    arr = np.sort(rng.uniform(0, span, n))
    df = make_requests(arr, rng.integers(0, 2000, n), rng.integers(0, 300, n),
                       model=rng.choice(["a", "b"], n))
    res = replay(w, df, policy, seed=seed, config=DEBUG)
    s = res.summary
    assert s["completed"] + s["dropped"] == n
    times = [t for t, _, _ in res.event_log]
    assert all(a <= b for a, b in zip(times, times[1:]))


def test_same_seed_byte_identical_outputs(conv_head, tmp_path):
    from torta.fleet.scenario import load_scenario

    w = load_scenario("abilene")
    df = conv_head.head(1500)
    a = replay(w, df, "least-loaded", seed=7, out_dir=tmp_path / "a", load_factor=3.0, load_mode="replicate")
    b = replay(w, df, "least-loaded", seed=7, out_dir=tmp_path / "b", load_factor=3.0, load_mode="replicate")
    c = replay(w, df, "least-loaded", seed=8, out_dir=tmp_path / "c", load_factor=3.0, load_mode="replicate")
    for f in ("completions.parquet", "slots.parquet"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "completions.parquet").read_bytes() != (tmp_path / "c" / "completions.parquet").read_bytes()
    sa, sb = dict(a.summary), dict(b.summary)
    for k in ("wall_s", "requests_per_s", "planner_ms_per_slot"):
        sa.pop(k), sb.pop(k)
    assert sa == sb


def test_work_conservation_check_catches_an_idle_server(monkeypatch):
    """The debug hook must be able to fail: inject a lost wake-up (queues that test as empty while they
    hold exactly one request, so a request joining an empty queue is never admitted by its idle
    server; the debug check reads the queue's length)."""
    from array import array

    import torta.sim.engine as E

    class LyingQueue(array):
        def __bool__(self):
            return len(self) not in (0, E.QW)

    monkeypatch.setattr(E, "queue_array", lambda: LyingQueue("d"))
    w = make_world((1,))
    with pytest.raises(AssertionError, match="work conservation"):
        replay(w, make_requests([0.0, 1.0], 100, 10), "least-loaded", seed=0, config=DEBUG)


def test_arrived_request_does_not_wait_behind_one_still_travelling(tmp_path):
    """A built-in allocator places requests at routing time (no network event) in slots without a plan;
    a request that reaches the same idle server first, in a later slot with a plan, is admitted at once
    rather than queued behind the one still on its way."""
    from torta.policy.base import BasePolicy

    class PlanFromSlotOne(BasePolicy):
        name = "test-plan-from-slot-one"

        def plan(self, state):
            return None if state.slot == 0 else np.array([[0.0, 1.0], [0.0, 1.0]])

    world = make_world((0, 1), hop_ms=10.0, slot_s=10.0)
    df = make_requests([9.999, 10.001], origin=["r0", "r1"])  # A travels 10 ms to region 1; B is local there
    res = run(world, df, PlanFromSlotOne(), tmp=tmp_path)
    c = assert_invariants(res, 2).sort("request_id")
    a, b = c.row(0, named=True), c.row(1, named=True)
    assert a["admitted_s"] >= 9.999 + 0.010 - 1e-9  # A is admitted only once it has landed
    assert b["admitted_s"] == pytest.approx(10.001)  # B did not wait for A


def test_queue_compaction_changes_nothing(monkeypatch, tmp_path):
    """Server queues are arrays of rows consumed from a head offset and compacted in bulk: compacting
    after every 2 consumed rows must give byte-identical completions and slots to the default (4,096
    rows), on a backlog deep enough (all requests at one instant, two models so the head changes
    model) to compact many times, with the debug invariants on."""
    import torta.sim.servers as E  # kick (admission) compacts the queues

    w = make_world((2, 1), models=("a", "b"))
    n = 3000
    rng = np.random.default_rng(3)
    df = make_requests(np.sort(rng.uniform(0.0, 5.0, n)), rng.integers(50, 400, n), rng.integers(0, 60, n),
                       model=rng.choice(["a", "b"], n, p=[0.8, 0.2]))
    ref = run(w, df, tmp=tmp_path / "ref")
    assert_invariants(ref, n)
    monkeypatch.setattr(E, "Q_COMPACT", 2 * E.QW)
    small = run(w, df, tmp=tmp_path / "small")
    assert_invariants(small, n)
    assert small.summary["switches"] > 0  # the heads did change model
    for f in ("completions.parquet", "slots.parquet"):
        assert (tmp_path / "ref" / f).read_bytes() == (tmp_path / "small" / f).read_bytes(), f
