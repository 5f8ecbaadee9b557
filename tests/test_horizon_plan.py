"""The receding-horizon LP (torta.planner.horizon) on tiny hand-made instances."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from torta.planner.config import HorizonConfig
from torta.planner.horizon import HorizonInputs, round_placement, solve_horizon

SLOT_S = 900.0
PER_SERVER = 0.6 * 1.0 * SLOT_S  # max_utilisation (0.6, set in these tests) x 1 request/s x slot: 540 requests per server and slot


def _inputs(demand, servers, placement, latency_ms=None, prices=None, capable=None, load_s=20.0):
    demand = np.asarray(demand, dtype=float)
    h, r, m = demand.shape
    servers = np.asarray(servers, dtype=float)
    lat = np.zeros((r, r)) if latency_ms is None else np.asarray(latency_ms, dtype=float)
    cap = np.repeat(servers[:, None], m, axis=1) if capable is None else np.asarray(capable, dtype=float)
    rate = np.where(cap > 0, 1.0, 0.0)
    return HorizonInputs(
        demand=demand, latency_ms=lat,
        price_usd_per_mwh=np.full((h, r), 50.0) if prices is None else np.broadcast_to(prices, (h, r)),
        energy_kwh_rm=np.full((r, m), 0.005), server_rps_rm=rate, service_s_rm=np.full((r, m), 5.0),
        load_s_rm=np.full((r, m), load_s), capable_rm=cap, servers=servers,
        placement=np.asarray(placement, dtype=float), slot_s=SLOT_S, transfer_usd_per_request=1e-5)


def test_flat_demand_with_ample_local_capacity_stays_local_without_switches():
    dem = np.full((4, 2, 1), 500.0)  # 500 of 2160 planned requests per region and slot
    p = solve_horizon(_inputs(dem, [4, 4], [[4], [4]], latency_ms=[[0, 10], [10, 0]]), HorizonConfig(max_utilisation=0.6, horizon_slots=4))
    assert p.status == 0
    np.testing.assert_allclose(p.flow[:, 0], np.broadcast_to(np.eye(2) * 500.0, (4, 2, 2)), atol=1e-6)
    assert p.switches.sum() == pytest.approx(0.0, abs=1e-9)
    assert p.defer.sum() == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_array_equal(p.targets, [[4], [4]])
    np.testing.assert_allclose(p.shares()[0], np.eye(2))


def test_forecast_ramp_of_b_is_preloaded_by_the_ramp_slot_not_after():
    # one region, 4 servers all holding A; A flat at 800 per slot; B appears at slot 3 with 1000 per slot
    dem = np.zeros((6, 1, 2))
    dem[:, 0, 0] = 800.0
    dem[3:, 0, 1] = 1000.0
    p = solve_horizon(_inputs(dem, [4], [[4, 0]]), HorizonConfig(max_utilisation=0.6, horizon_slots=6))
    assert p.status == 0
    # B's servers are in place by the ramp slot (the load happens at or before slot 3) ...
    assert p.placement[3, 0, 1] >= 1000.0 / PER_SERVER - 1e-6
    assert p.switches[:4, 0, 1].sum() >= 1000.0 / PER_SERVER - 1e-6
    # ... and nothing is loaded after it; B's demand is served, not deferred
    assert p.switches[4:].sum() == pytest.approx(0.0, abs=1e-6)
    assert p.defer[3:, 0, 1].sum() == pytest.approx(0.0, abs=1e-6)
    # before the ramp B is not needed: A keeps every server in slot 0
    np.testing.assert_array_equal(p.targets, [[4, 0]])


def test_ramp_next_slot_moves_the_target_now():
    dem = np.zeros((4, 1, 2))
    dem[:, 0, 0] = 800.0
    dem[1:, 0, 1] = 1000.0
    p = solve_horizon(_inputs(dem, [4], [[4, 0]]), HorizonConfig(max_utilisation=0.6, horizon_slots=4, switch_cost=40.0))
    # loading in slot 0 costs A some congestion; loading in slot 1 costs B's ramp the load time: the plan
    # must have B's servers by slot 1 either way
    assert p.placement[1, 0, 1] >= 1000.0 / PER_SERVER - 1e-6


def test_one_slot_dip_shorter_than_the_switch_cost_keeps_the_placement():
    dem = np.zeros((5, 1, 2))
    dem[:, 0, :] = 800.0  # A and B each busy on their 2 servers: more servers would cut A's congestion
    dem[2, 0, 1] = 0.0  # B dips for one slot
    kept = solve_horizon(_inputs(dem, [4], [[2, 2]]), HorizonConfig(max_utilisation=0.6, horizon_slots=5, switch_cost=40.0))
    assert kept.status == 0
    np.testing.assert_allclose(kept.placement[:, 0], np.broadcast_to([2.0, 2.0], (5, 2)), atol=1e-6)
    assert kept.switches.sum() == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_array_equal(kept.targets, [[2, 2]])
    # the control: switching for free, the plan does use the dip (so the test can fail)
    free = solve_horizon(_inputs(dem, [4], [[2, 2]], load_s=0.0), HorizonConfig(max_utilisation=0.6, horizon_slots=5, switch_cost=0.0))
    assert free.placement[2, 0, 0] > 2.5


def test_equal_latency_different_energy_prices_flow_to_the_cheaper_region():
    lat = [[0, 10, 10], [10, 0, 20], [10, 20, 0]]
    dem = np.zeros((3, 3, 1))
    dem[:, 0, 0] = 300.0  # only r0 has demand, and no servers
    p = solve_horizon(_inputs(dem, [0, 2, 2], [[0], [2], [2]], latency_ms=lat, prices=np.array([50.0, 120.0, 20.0]),
                              capable=[[0], [2], [2]]), HorizonConfig(max_utilisation=0.6, horizon_slots=3))
    assert p.status == 0
    np.testing.assert_allclose(p.flow[:, 0, 0, 2], 300.0, atol=1e-6)
    assert p.flow[:, 0, 0, 1].sum() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("demand,deferred", [(1000.0, 0.0), (1500.0, 1500.0 - 2 * PER_SERVER)])
def test_defer_column_is_used_only_beyond_total_capacity(demand, deferred):
    dem = np.full((3, 1, 1), demand)
    p = solve_horizon(_inputs(dem, [2], [[2]]), HorizonConfig(max_utilisation=0.6, horizon_slots=3))
    assert p.status == 0
    np.testing.assert_allclose(p.defer[:, 0, 0], deferred, atol=1e-6)
    np.testing.assert_allclose(p.flow[:, 0, 0, 0] + p.defer[:, 0, 0], demand, atol=1e-6)


def test_a_placement_held_over_the_horizon_is_charged_one_switch():
    dem = np.zeros((6, 1, 2))
    dem[:, 0, 1] = 800.0  # every slot wants B; both servers hold A
    cfg = HorizonConfig(max_utilisation=0.6, horizon_slots=6, switch_cost=40.0)
    p = solve_horizon(_inputs(dem, [2], [[2, 0]]), cfg)
    assert p.status == 0
    moved = p.placement[0, 0, 1]
    assert moved >= 800.0 / PER_SERVER - 1e-6
    np.testing.assert_allclose(p.placement[:, 0, 1], moved, atol=1e-6)  # held for the whole horizon
    assert p.switches[0, 0, 1] == pytest.approx(moved, abs=1e-6)
    assert p.switches[1:].sum() == pytest.approx(0.0, abs=1e-6)
    # the objective carries the switch charge once: a dearer switch raises it by moved x the difference
    dear = solve_horizon(_inputs(dem, [2], [[2, 0]]), HorizonConfig(max_utilisation=0.6, horizon_slots=6, switch_cost=50.0))
    assert dear.objective - p.objective == pytest.approx(10.0 * moved, rel=1e-6)


def test_gpu_seconds_of_a_load_are_charged_per_switch():
    dem = np.zeros((4, 1, 2))
    dem[:, 0, 1] = 800.0
    base = _inputs(dem, [2], [[2, 0]])
    gpu_s = np.array([[0.0, 30.0]])  # loading b takes 30 GPU-seconds
    plain = solve_horizon(base, HorizonConfig(max_utilisation=0.6, horizon_slots=4, switch_cost_per_gpu_s=0.5))  # no GPU-seconds given
    dear = solve_horizon(dataclasses.replace(base, switch_gpu_s_rm=gpu_s),
                         HorizonConfig(max_utilisation=0.6, horizon_slots=4, switch_cost_per_gpu_s=0.5))
    moved = dear.switches.sum()
    assert moved == pytest.approx(plain.switches.sum(), abs=1e-6)  # b is worth loading either way
    assert dear.objective - plain.objective == pytest.approx(0.5 * 30.0 * moved, rel=1e-6)


def test_blocks_plan_the_same_horizon_on_fewer_rows_and_charge_a_switch_once():
    dem = np.zeros((6, 1, 2))
    dem[:, 0, 1] = 800.0
    p = solve_horizon(_inputs(dem, [2], [[2, 0]]), HorizonConfig(max_utilisation=0.6, horizon_slots=6, blocks=(1, 2, 3)))
    assert p.status == 0 and p.placement.shape == (3, 1, 2)
    assert p.switches[0, 0, 1] == pytest.approx(p.placement[0, 0, 1], abs=1e-6) and p.switches[1:].sum() < 1e-6
    # a ramp inside the last block still loads its model within the horizon, not after
    ramp = np.zeros((6, 1, 2))
    ramp[:, 0, 0] = 800.0
    ramp[4:, 0, 1] = 1000.0
    q = solve_horizon(_inputs(ramp, [4], [[4, 0]]), HorizonConfig(max_utilisation=0.6, horizon_slots=6, blocks=(1, 2, 3)))
    assert q.placement[2, 0, 1] >= (2 / 3) * 1000.0 / PER_SERVER - 1e-6  # the block's mean demand of B


def test_round_placement_fills_each_region_and_prefers_todays_placement():
    n = np.array([[1.5, 1.5, 1.0], [0.2, 0.3, 0.5]])
    out = round_placement(n, current=np.array([[1, 2, 1], [0, 0, 1]]), capable=np.full((2, 3), 4.0),
                          servers=np.array([4.0, 1.0]))
    np.testing.assert_array_equal(out, [[1, 2, 1], [0, 0, 1]])


@pytest.mark.parametrize("field,value", [("horizon_slots", 0), ("k_nearest", 0), ("switch_cost", -1.0),
                                         ("defer_cost", 1.0), ("max_utilisation", 1.5), ("tier_edges", (0.5, 1.0)),
                                         ("blocks", (2, 6)), ("k_nearest_ahead", 9)])
def test_config_errors_name_the_value(field, value):
    with pytest.raises(ValueError, match=f"HorizonConfig.{field}"):
        HorizonConfig(**{field: value})


def test_planned_utilisation_must_stay_below_the_real_saturation():
    HorizonConfig(max_utilisation=0.8, capacity_derate=0.82)  # just below: a finite top-tier delay
    with pytest.raises(ValueError, match=r"max_utilisation \(0.82\) must be below capacity_derate \(0.82\)"):
        HorizonConfig(max_utilisation=0.82)


def test_inputs_reject_bad_shapes():
    with pytest.raises(ValueError, match="placement"):
        _inputs(np.ones((2, 1, 1)), [2], [[2, 0]])


def _receding_calls(regions=9, models=2, horizon=6, calls=8, seed=3):
    """A seeded fleet whose demand moves along a wave, some slots above capacity: `calls` successive inputs."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 3000, (regions, 2))
    lat = np.linalg.norm(xy[:, None] - xy[None], axis=2) / 200.0
    srv = rng.integers(2, 7, regions).astype(float)
    cap = np.repeat(srv[:, None], models, axis=1)
    t = np.arange(calls + horizon)[:, None, None]
    demand = 0.35 * PER_SERVER * srv[None, :, None] * (1.2 + np.sin(t / 3.0 + rng.uniform(0, 6, (regions, models))))
    placement = np.stack([np.bincount(rng.integers(0, models, int(n)), minlength=models) for n in srv])
    for c in range(calls):
        yield dataclasses.replace(
            _inputs(demand[c:c + horizon], srv, placement, latency_ms=lat, capable=cap,
                    prices=rng.uniform(20, 120, (horizon, regions))),
            queue_delay_s=rng.exponential(5.0, regions), free_share=rng.uniform(0.7, 1.0, regions))


@pytest.mark.parametrize("blocks", [None, (1, 1, 2, 2)])
def test_warm_started_solves_reach_the_cold_optimum_call_after_call(blocks):
    from torta.planner.horizon import HorizonLP

    cfg = HorizonConfig(max_utilisation=0.6, horizon_slots=6, k_nearest=3, k_nearest_ahead=2, blocks=blocks)
    calls = list(_receding_calls())
    lat = calls[0].latency_ms
    warm = HorizonLP(lat, calls[0].capable_rm, cfg)
    cold = HorizonLP(lat, calls[0].capable_rm, dataclasses.replace(cfg, warm_start=False))
    iterations = np.zeros(2)
    for inp in calls:
        a, b = warm.solve(inp), cold.solve(inp)
        iterations += [a.simplex_iterations, b.simplex_iterations]
        assert a.status == b.status == 0
        assert a.objective == pytest.approx(b.objective, rel=1e-7, abs=1e-6)
        # the applied slot's flows serve the same demand (an LP optimum need not be unique, its value is)
        np.testing.assert_allclose(a.flow[0].sum(axis=2) + a.defer[0].T, b.flow[0].sum(axis=2) + b.defer[0].T,
                                   atol=1e-6)
    # the warm start is taken: after the first call the simplex starts near the optimum
    assert iterations[0] < 0.7 * iterations[1]


def test_the_solvers_banner_never_reaches_stdout():
    import subprocess
    import sys

    code = ("from torta.planner.horizon import new_highs, solve_horizon\n"
            "new_highs(); new_highs()\n"
            "print('only this')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout == "only this\n"
