"""The cluster model against hand-computed timelines (LinearPerf fakes) and the accounting."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from torta.sim.engine import EngineConfig
from torta.sim.replay import replay
from torta.sim.testing import LinearPerf, make_requests, make_world

DEBUG = EngineConfig(debug=True)
PERF = LinearPerf(prefill_base_ms=10.0, prefill_ms_per_token=0.1, decode_base_ms=20.0, decode_ms_per_seq=0.5)


def rows(res, tmp=None):
    return pl.read_parquet(res.completions_path).sort("request_id")


def test_single_request_timeline(tmp_path):
    w = make_world((1,), perf=PERF)
    res = replay(w, make_requests([1.0], 100, 11), "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    r = rows(res).row(0, named=True)
    assert r["admitted_s"] == pytest.approx(1.0)
    assert r["first_token_s"] == pytest.approx(1.0 + 0.020)  # 10 + 0.1 * 100 ms
    assert r["finish_s"] == pytest.approx(1.020 + 10 * 0.0205)  # 10 iterations at batch 1
    assert r["tpot_s"] == pytest.approx(0.0205)
    assert r["ttft_s"] == pytest.approx(0.020)


def test_fluid_batching_two_requests(tmp_path):
    """B joins A's batch mid-decode: A pauses for B's prefill, then both advance at batch-2 speed."""
    w = make_world((1,), perf=PERF)
    df = make_requests([0.0, 0.1], [100, 200], [21, 6])
    res = replay(w, df, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    a, b = rows(res).rows(named=True)
    t_a1 = 0.020  # A's first token
    it1, it2 = 0.0205, 0.021
    done_a = (0.1 - t_a1) / it1  # iterations A made before B arrived
    b_first = 0.1 + 0.030  # B's prefill: 10 + 0.1 * 200 ms (A paused)
    assert b["first_token_s"] == pytest.approx(b_first)
    b_finish = b_first + 5 * it2  # B's 5 decode iterations at batch 2
    assert b["finish_s"] == pytest.approx(b_finish)
    left_a = 20 - done_a - 5  # A's remaining iterations after B leaves
    assert a["finish_s"] == pytest.approx(b_finish + left_a * it1)


def test_kv_capacity_bounds_the_batch(tmp_path):
    cap = 1000
    w = make_world((1,), perf=LinearPerf(kv_tokens={"G": cap}, batch_cap=100))
    n = 40
    res = replay(w, make_requests(np.zeros(n), 150, 100), "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    c = rows(res)
    adm, fin = c["admitted_s"].to_numpy(), c["finish_s"].to_numpy()
    running = [((adm <= t) & (fin > t)).sum() for t in np.unique(adm)]
    assert max(running) * 250 <= cap  # 4 requests of 250 reserved tokens at most
    assert max(running) == 4


def test_max_batch_bounds_the_batch(tmp_path):
    w = make_world((1,), perf=LinearPerf(batch_cap=3))
    res = replay(w, make_requests(np.zeros(10), 10, 50), "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    c = rows(res)
    adm, fin = c["admitted_s"].to_numpy(), c["finish_s"].to_numpy()
    assert max(((adm <= t) & (fin > t)).sum() for t in np.unique(adm)) == 3


def test_model_switch_costs_load_time_and_is_accounted(tmp_path):
    perf = LinearPerf(load_seconds=7.0)
    w = make_world((1,), perf=perf, models=("a", "b"), initial_models=["a"])
    df = make_requests([0.0, 0.0], 100, 11, model=["a", "b"])
    res = replay(w, df, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    a, b = rows(res).rows(named=True)
    assert b["admitted_s"] == pytest.approx(a["finish_s"] + 7.0)  # drain, then load
    s = res.summary
    assert s["switches"] == 1
    assert s["switching_usd"] == pytest.approx(7.0 / 3600 * 2.0)
    assert res.slots["loading_s"].sum() == pytest.approx(7.0)


def test_warm_server_preferred_over_cold(tmp_path):
    w = make_world((2,), models=("a", "b"), initial_models=["a", "b"])
    df = make_requests([0.0, 0.0, 0.0], 100, 11, model=["b", "b", "a"])
    res = replay(w, df, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    c = rows(res)
    assert c["server_id"].to_list() == [1, 1, 0]
    assert res.summary["switches"] == 0


def test_energy_cost_and_transfer_accounting(tmp_path):
    # 2 regions 10 ms apart, one server only in r1; all demand from r0 -> every request crosses
    w = make_world((0, 1), hop_ms=10.0, origin_weights=[1.0, 0.0], price_usd_per_mwh=100.0,
                   transfer_usd_per_gb=0.05)
    df = make_requests([0.0, 10.0], 1000, 250)
    res = replay(w, df, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    c = rows(res)
    assert (c["origin_region"] == "r0").all() and (c["serving_region"] == "r1").all()
    assert (c["arrival_s"] + 0.010 == c["admitted_s"]).all()  # forward latency
    assert (c["ttft_s"] - (c["first_token_s"] - c["arrival_s"])).to_numpy() == pytest.approx(0.010)
    s = res.summary
    assert s["transfer_usd"] == pytest.approx(2 * 1250 * 4 / 1e9 * 0.05)
    sl = res.slots
    busy = sl["prefill_s"].sum() + sl["decode_s"].sum()
    end = s["sim_end_s"]
    assert sl["idle_s"].sum() + busy == pytest.approx(end)
    # PowerSpec(100, 400, 300) W x tp 1 x PUE 1.2
    kwh = (100 * sl["idle_s"].sum() + 400 * sl["prefill_s"].sum() + 300 * sl["decode_s"].sum()) * 1.2 / 3.6e6
    assert s["energy_kwh"] == pytest.approx(kwh)
    assert s["energy_usd"] == pytest.approx(kwh / 1000 * 100.0)
    assert s["co2_kg"] == pytest.approx(kwh * 0.4)
    assert s["cost_usd"] == pytest.approx(s["energy_usd"] + s["transfer_usd"] + s["switching_usd"])


def test_slots_split_time_and_load_balance(tmp_path):
    w = make_world((2,), slot_s=10.0)
    arr = np.arange(0, 35, 0.5)
    res = replay(w, make_requests(arr, 100, 30), "round-robin", seed=0, out_dir=tmp_path, config=DEBUG)
    sl = res.slots
    assert sl["slot"].max() >= 3
    per = sl.group_by("slot").agg(pl.col("duration_s").first(), (pl.col("idle_s") + pl.col("prefill_s")
                                   + pl.col("decode_s") + pl.col("loading_s")).sum().alias("t"))
    assert (per["t"] - 2 * per["duration_s"]).abs().max() < 1e-9
    # round-robin over two identical servers: balanced load
    assert res.summary["load_cv"] < 0.1
    assert 0.99 < res.summary["load_jain"] <= 1.0
    u = sl.filter(pl.col("slot") == 1)["utilisation"].to_numpy()
    assert np.all(u > 0)


def test_local_only_vs_least_loaded_load_balance():
    # all demand from r0 (1 server); r1 has 3 idle servers
    w = make_world((1, 3), origin_weights=[1.0, 0.0])
    arr = np.arange(0, 60, 0.05)
    df = make_requests(arr, 200, 100)
    lo = replay(w, df, "local-only", seed=0)
    ll = replay(w, df, "least-loaded", seed=0)
    assert lo.summary["load_cv"] > ll.summary["load_cv"]
    assert lo.summary["load_jain"] < ll.summary["load_jain"]
    assert ll.summary["cross_region_share"] > 0.5
    assert lo.summary["cross_region_share"] == 0.0


def test_prefill_that_frees_room_admits_the_blocked_head(tmp_path):
    """A prefill stops admitting at a head that does not fit; a 1-token member of that prefill finishes at
    its first token and frees the room, so the head is admitted at once (not when the batch drains)."""
    w = make_world((1,), perf=LinearPerf(kv_tokens={"G": 1000}, batch_cap=100))
    # X (500 reserved tokens) prefills alone over [0, 0.02]; A (101, one output token) and B (400) queue
    df = make_requests([0.0, 0.005, 0.006], [100, 100, 100], [400, 1, 300])
    res = replay(w, df, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    x, a, b = rows(res).rows(named=True)
    assert a["admitted_s"] == pytest.approx(0.020)  # 500 + 101 fits; 500 + 101 + 400 does not: B waits
    assert a["finish_s"] == pytest.approx(0.040)  # its first token ends it and frees its 101 tokens
    assert b["admitted_s"] == pytest.approx(0.040)  # 500 + 400 fits now, long before X finishes
    assert x["finish_s"] > 1.0


def test_slot_integrals_match_the_requests_own_times(tmp_path):
    """The per-slot integrals (kept by difference, carried across slot boundaries) summed over a run
    equal what the completions imply, server by server: time-averaged batch x duration = the summed
    admitted-to-finish times of its requests; KV occupancy likewise with each reservation
    min(prompt + output, capacity); utilisation x duration = the requests' expected work. A real trace
    slice on abilene with 4 s slots, so many requests run across a boundary."""
    import dataclasses

    from torta.fleet.scenario import load_scenario
    from torta.sim.cluster import build_tables
    from torta.traces import load_trace

    world = dataclasses.replace(load_scenario("abilene"), slot_s=4.0)
    res = replay(world, load_trace("azure-2023-conv").head(2000), "least-loaded", seed=0, out_dir=tmp_path,
                 load_factor=30.0)
    c = rows(res).filter(pl.col("dropped_reason").is_null())
    assert res.slots["slot"].n_unique() > 20
    tables = build_tables(world)
    m = world.models.index(c["model"][0])
    assert c["model"].n_unique() == 1
    dur = (c["finish_s"] - c["admitted_s"]).to_numpy()
    p, o = c["prompt_tokens"].to_numpy(), c["output_tokens"].to_numpy()
    servers = c["server_id"].to_numpy()
    per = res.slots.group_by("server_id").agg(
        (pl.col("mean_batch") * pl.col("duration_s")).sum().alias("batch_s"),
        (pl.col("kv_util") * pl.col("duration_s")).sum().alias("kv_s"),
        (pl.col("utilisation") * pl.col("duration_s")).sum().alias("work_s")).sort("server_id")
    checked = 0
    for s, batch_s, kv_s, work_s in per.iter_rows():
        ty = tables.types[tables.stype[s][m]] if tables.stype[s][m] >= 0 else None
        mine = servers == s
        if ty is None:
            assert not mine.any() and batch_s == 0.0 and work_s == 0.0
            continue
        res_tokens = np.minimum(p[mine] + o[mine], ty.kv_cap)
        assert batch_s == pytest.approx(dur[mine].sum(), rel=1e-9, abs=1e-9)
        assert kv_s * ty.kv_cap == pytest.approx((res_tokens * dur[mine]).sum(), rel=1e-9, abs=1e-6)
        expected_work = (p[mine] * ty.c_prefill_s + np.maximum(o[mine] - 1, 0) * ty.c_decode_s).sum()
        assert work_s == pytest.approx(expected_work, rel=1e-9, abs=1e-9)
        checked += int(mine.any())
    assert checked >= 5
    crossing = np.floor(c["admitted_s"].to_numpy() / 4.0) != np.floor(c["finish_s"].to_numpy() / 4.0)
    assert crossing.sum() > 500  # requests running across a slot boundary


@pytest.mark.parametrize("slot_s", [0.0, -900.0, float("inf"), float("nan")])
def test_slot_length_must_be_finite_and_positive(tmp_path, slot_s):
    w = make_world((1,), perf=PERF, slot_s=slot_s)
    with pytest.raises(ValueError, match="slot_s must be a finite number of seconds > 0"):
        replay(w, make_requests([1.0], 100, 11), "least-loaded", seed=0, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written
