"""The surrogate with warm-model state (torta.rl.warm, torta.rl.warm_env): a switch costs the model's load
time and its dollars, queues carry over between slots, nothing switches when the placement stays, the
micro layer's reactive switches, the env's episodes, and a short gap run against the replay."""

from __future__ import annotations

import numpy as np
import pytest

from torta.rl.fleet import SurrogateFleet
from torta.rl.warm import WarmDynamics, WarmFleet, clip_placement

SLOT_S = 900.0
DERATE = 0.82


def toy_warm(load_s: float = 60.0) -> WarmFleet:
    """2 regions 10 ms apart, 4 servers each, 2 models; one request = 1 server-second of estimated work."""
    r, m = 2, 2
    base = SurrogateFleet(
        name="toy-warm", slot_s=SLOT_S, latency_ms=np.array([[0.0, 10.0], [10.0, 0.0]]), servers=np.array([4.0, 4.0]),
        rps_rm=np.ones((r, m)), lat_s_rm=np.full((r, m), 2.0), energy_kwh_rm=np.full((r, m), 1e-3),
        near_rm=np.tile(np.arange(r)[:, None], (1, m)).astype(np.int64), capacity_rps=np.array([4.0, 4.0]),
        energy_kwh_per_request=np.full(r, 1e-3), transfer_usd_per_request=1e-5,
        price_usd_per_mwh=np.full((r, 24), 50.0), start_hour=0, capacity_derate=DERATE)
    return WarmFleet(base=base, capable_rm=np.full((r, m), 4.0), servers_any=np.array([4.0, 4.0]),
                     load_s_rm=np.full((r, m), load_s), gpu_s_rm=np.full((r, m), load_s),
                     load_usd_rm=np.full((r, m), 0.01), initial_rm=np.array([[4.0, 0.0], [4.0, 0.0]]))


def local(b: int = 1, m: int = 2, r: int = 2) -> np.ndarray:
    return np.broadcast_to(np.eye(r), (b, m, r, r)).copy()


def step(dyn, a, n, W, targets=None):
    return dyn.step(local(), np.asarray(a, dtype=float)[None], np.asarray(n, dtype=float)[None],
                    np.asarray(W, dtype=float)[None], np.full((1, 2), 50.0),
                    None if targets is None else np.asarray(targets, dtype=float)[None])


def test_a_switch_costs_the_load_time_and_its_dollars():
    wf = toy_warm(load_s=60.0)
    dyn = WarmDynamics(wf, reactive=False)
    # region 0 saturated on model 1 either way: 2 servers already holding it vs 2 that must load it
    a = [[0.0, 5000.0], [0.0, 0.0]]
    held = [[2.0, 2.0], [4.0, 0.0]]
    n1, _, warm = step(dyn, a, held, np.zeros((2, 2)), targets=held)
    n2, _, cold = step(dyn, a, [[4.0, 0.0], [4.0, 0.0]], np.zeros((2, 2)), targets=held)
    np.testing.assert_array_equal(n1, n2)
    assert warm["switches"][0] == 0 and cold["switches"][0] == 2
    lost = warm["served_s"][0, 0, 1] - cold["served_s"][0, 0, 1]
    assert lost == pytest.approx(2 * 60.0 * DERATE)  # two loads of 60 s, no work done meanwhile
    assert cold["rt_s"][0] > warm["rt_s"][0]
    assert cold["cost_usd"][0] - warm["cost_usd"][0] == pytest.approx(2 * 0.01)


def test_no_switch_when_the_placement_stays_and_queues_carry_over():
    wf = toy_warm()
    n0 = [[3.0, 1.0], [4.0, 0.0]]
    cap = SLOT_S * DERATE
    # the same targets as today's placement and demand within each model's servers: nothing loads
    n, W, info = step(WarmDynamics(wf), [[2.5 * cap, 0.5 * cap], [cap, 0.0]], n0, np.zeros((2, 2)), targets=n0)
    assert info["switches"][0] == 0 and np.array_equal(n[0], np.asarray(n0)) and W.sum() == pytest.approx(0.0)
    dyn = WarmDynamics(wf, reactive=False)  # the carry-over alone (no switch may relieve the queue)
    n0 = [[3.0, 1.0], [4.0, 0.0]]
    cap = SLOT_S * DERATE  # one server's work in a slot
    a = [[2 * cap, 3 * cap], [cap, 0.0]]  # model 1 of region 0 gets 3 servers' worth on its 1 server
    n, W, info = step(dyn, a, n0, np.zeros((2, 2)), targets=n0)
    assert info["switches"][0] == 0 and np.array_equal(n[0], np.asarray(n0))
    assert W[0, 0, 1] == pytest.approx(2 * cap) and W[0, 0, 0] == pytest.approx(0.0)
    # next slot, no new demand: the carried queue is served first, and it waits behind itself
    n2, W2, info2 = step(dyn, np.zeros((2, 2)), n[0], W[0], targets=n0)
    assert info2["switches"][0] == 0
    assert W2[0, 0, 1] == pytest.approx(cap) and info2["served_s"][0, 0, 1] == pytest.approx(cap)
    np.testing.assert_allclose(info2["backlog_s"][0], [cap, 0.0])  # per region
    # work is conserved: arrived = served + carried
    assert (info["served_s"] + W).sum() == pytest.approx(np.sum(a))


def test_reactive_switch_for_a_model_without_a_server_and_none_without_need():
    wf = toy_warm(load_s=30.0)
    dyn = WarmDynamics(wf, switch_margin_s=20.0)
    n0 = [[4.0, 0.0], [4.0, 0.0]]
    n, _, info = step(dyn, [[100.0, 100.0], [100.0, 0.0]], n0, np.zeros((2, 2)))
    assert n[0, 0, 1] >= 1 and n[0, 0].sum() == 4 and info["switches"][0] >= 1  # it loads model 1 from a spare server
    assert n[0, 1, 1] == 0  # region 1 has no demand for model 1: no switch there
    n, _, info = step(dyn, [[100.0, 0.0], [100.0, 0.0]], n0, np.zeros((2, 2)))
    assert info["switches"][0] == 0 and np.array_equal(n[0], np.asarray(n0))


def test_clip_placement_respects_capable_and_servers():
    out = clip_placement(np.array([[3.4, 2.0], [5.0, 0.2]]), np.array([[4.0, 4.0], [4.0, 1.0]]), np.array([4.0, 4.0]))
    assert (out.sum(-1) <= 4).all() and (out <= np.array([[4.0, 4.0], [4.0, 1.0]])).all()
    assert out[1, 0] == 4


def _toy_demand(days: int = 4) -> np.ndarray:
    per_day = int(86400 / SLOT_S)
    t = np.arange(per_day * days) % per_day
    d = np.zeros((1, per_day * days, 2, 2))
    d[0, :, 0, 0] = 1500.0
    d[0, :, 0, 1] = np.where((t > 30) & (t < 60), 2500.0, 200.0)
    d[0, :, 1, 0] = 800.0
    return d


@pytest.mark.parametrize("planner", ["horizon", "myopic-ot", "none"])
def test_warm_env_episode_shapes_and_warm_start(planner):
    from torta.rl.warm_env import WarmEnv, run_warm

    wf = toy_warm()
    env = WarmEnv(wf, _toy_demand(), [3], 2, planner=planner, seed=0)
    obs = env.reset()
    assert env.t == 0 and obs.shape == (2, env.obs_dim) and np.isfinite(obs).all()
    assert env.n.sum(-1).max() <= 4  # the warm-up ran: the placement is the planner's, within the servers
    steps = 0
    done = np.zeros(2, dtype=bool)
    while not done.all():
        obs, rew, done, info = env.step(np.zeros((2, 2, 2)))
        steps += 1
        assert np.isfinite(rew).all() and (rew < 0).all()
        np.testing.assert_allclose(info["plans"].sum(-1), 1.0)
    assert steps == env.per_day
    res = run_warm(env, [0], [3])
    assert res["rt_s"].shape == (env.per_day, 1) and np.isfinite(res["rt_s"]).all()
    if planner == "horizon":  # the LP places model 1 for its daily ramp: few loads, not one per slot
        assert 0 < res["switches"].sum() < env.per_day


def test_gap_on_a_small_replay_window(tmp_path):
    """The same torta-horizon decisions through the replay and the warm surrogate on a 2-hour toy trace:
    one row per scored slot, finite response times on both sides, utilisation in range."""
    import polars as pl

    from torta.rl.replay_env import gap_on_input
    from torta.runs.inputs import SeedInput, _oracle
    from torta.sim.testing import make_requests, make_world

    world = make_world((2, 2), models=("a", "b"), slot_s=900.0)
    rng = np.random.default_rng(0)
    n = 1500
    arr = np.sort(rng.uniform(0, 2 * 3600.0, n))
    df = make_requests(arr, rng.integers(50, 400, n), rng.integers(10, 80, n),
                       origin=[f"r{i}" for i in rng.integers(0, 2, n)], model=list(rng.choice(["a", "b"], n)))
    inp = SeedInput(0, df, world, None, _oracle(df, world, 900.0), 225.0, 45.0, None, "toy", 900.0)
    out = gap_on_input(inp, "torta-horizon", 0.0, tmp_path / "run")
    f = out["frame"]
    assert isinstance(f, pl.DataFrame) and f["scored_slot"].to_list() == list(range(7))
    assert f["replay_requests"].sum() + out["replay_summary"]["dropped"] >= int((arr >= 900.0).sum()) - 5
    assert np.isfinite(f["surrogate_rt_s"].to_numpy()).all() and np.isfinite(f["replay_rt_s"].to_numpy()).all()
    assert ((f["surrogate_util"] >= 0) & (f["surrogate_util"] <= 1.5)).all()
    assert np.isfinite(out["rt_gap_pct"]) and out["util_gap_mean_abs"] >= 0


def _agent_checkpoint(path, world, zero_actor: bool = False):
    import torch

    from torta.rl.env import EnvConfig
    from torta.rl.ppo import Agent
    from torta.rl.train import save_checkpoint
    from torta.rl.warm_env import warm_obs_dim

    torch.manual_seed(0)
    agent = Agent(warm_obs_dim(world.n_regions, len(world.models), EnvConfig()), world.n_regions, 16)
    if zero_actor:
        with torch.no_grad():
            agent.actor[-1].weight.zero_()
            agent.actor[-1].bias.zero_()
    return save_checkpoint(agent.state_dict(), path, {"config": {"env": {}}, "seed": 0, "git_commit": "test"})


def test_horizon_ppo_loads_its_checkpoint_and_replays_a_short_window(tmp_path):
    from torta.fleet.scenario import load_scenario
    from torta.rl.horizon_ppo import TortaHorizonPPO
    from torta.sim.replay import replay
    from torta.traces import load_trace

    world = load_scenario("abilene")
    df = load_trace("azure-2023-conv").head(300)
    ck = _agent_checkpoint(tmp_path / "abilene-torta-horizon-ppo.pt", world)
    pol = TortaHorizonPPO(checkpoint=ck)
    res = replay(world, df, pol, seed=0, out_dir=tmp_path / "run")
    s = res.summary
    assert s["requests"] == 300 and s["completed"] + s["dropped"] == 300
    assert pol.params()["checkpoint"] == str(ck)
    plans = pol.last_plans
    np.testing.assert_allclose(plans.sum(-1), 1.0)
    cannot = (pol.wf.capable_rm == 0).T  # (M, R): regions unable to hold the model get none of its requests
    assert all(np.all(plans[m][:, cannot[m]] == 0) for m in range(plans.shape[0]))


def test_horizon_ppo_with_zero_offsets_follows_the_horizon_plan_and_rejects_other_checkpoints(tmp_path):
    from torta.errors import InputError
    from torta.fleet.scenario import load_scenario
    from torta.rl.horizon_ppo import TortaHorizonPPO
    from torta.rl.train import load_checkpoint, save_checkpoint
    from torta.sim.replay import replay
    from torta.traces import load_trace

    world = load_scenario("abilene")
    df = load_trace("azure-2023-conv").head(200)
    ck = _agent_checkpoint(tmp_path / "z.pt", world, zero_actor=True)
    pol = TortaHorizonPPO(checkpoint=ck)
    replay(world, df, pol, seed=0, out_dir=tmp_path / "run")
    # delta = 0: each model's plan is its LP shares, only spread by the eps floor over the capable regions
    from torta.rl.warm_env import apply_offsets

    again = apply_offsets(pol.wf, pol._shares_seen[None], np.zeros((1, world.n_regions, world.n_regions)),
                          pol.ecfg, True)[0]
    np.testing.assert_allclose(pol.last_plans, again)
    big = np.argmax(pol._shares_seen, axis=-1)
    assert (np.argmax(pol.last_plans, axis=-1) == big).all()
    sd, _ = load_checkpoint(ck)
    sd["obs_mean"] = sd["obs_mean"][:-3]
    bad = save_checkpoint(sd, tmp_path / "bad.pt", {"config": {"env": {}}})
    with pytest.raises(InputError, match="observation size"):
        replay(world, df.head(5), TortaHorizonPPO(checkpoint=bad), seed=0)


@pytest.mark.slow  # two short trainings with the LP in the loop: ~12 s idle, ~50 s on the shared machine
def test_training_on_the_warm_surrogate_is_deterministic_and_validates_against_myopic_ot():
    import torch

    from torta.rl.ppo import PPOConfig
    from torta.rl.train import TrainConfig, train_on

    wf = toy_warm()
    cfg = TrainConfig(variant="torta-horizon-ppo", updates=2, n_envs=2, train_days=(2, 3), val_day=4, eval_every=1,
                      demand_noise=0.0, ppo=PPOConfig(hidden=16, minibatch=64, epochs=1))
    a, ca = train_on(wf.base, _toy_demand(), 0, cfg, progress=False, warm_fleet=wf)
    b, cb = train_on(wf.base, _toy_demand(), 0, cfg, progress=False, warm_fleet=wf)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ca.drop("wall_s").equals(cb.drop("wall_s"))
    assert a["obs_mean"].shape[0] == 2 * (4 + 4) + 5 * 2 + 2 * 4 + 2 + 2 * 2  # the placement features included
    ref, base = float(ca["val_ref_return"][0]), float(ca["val_base_return"][0])
    assert np.isfinite(ref) and np.isfinite(base) and ref != base  # myopic OT is not the horizon plan
    assert {"val_switches"} <= set(ca.columns)
    with pytest.raises(ValueError, match="warm_fleet"):
        train_on(wf.base, _toy_demand(), 0, cfg, progress=False)


def test_spill_over_sends_requests_to_a_nearby_warm_region_instead_of_loading():
    wf = toy_warm(load_s=60.0)
    n0 = [[4.0, 0.0], [2.0, 2.0]]  # region 0 holds no model 1; region 1 holds it with room to spare
    a = [[500.0, 300.0], [0.0, 0.0]]
    spill = WarmDynamics(wf, switch_margin_s=20.0, spill_s=10.0)
    n, _, info = step(spill, a, n0, np.zeros((2, 2)), targets=n0)
    assert info["switches"][0] == 0 and info["served_s"][0, 1, 1] == pytest.approx(300.0)
    assert info["served_s"][0, 0, 1] == pytest.approx(0.0)
    n2, _, info2 = step(WarmDynamics(wf, switch_margin_s=20.0), a, n0, np.zeros((2, 2)), targets=n0)
    assert info2["switches"][0] >= 1 and n2[0, 0, 1] >= 1  # without spill-over region 0 loads model 1


def test_cached_decisions_replay_the_closed_loop_day_at_zero_offsets():
    from torta.rl.warm_env import WarmEnv

    wf = toy_warm()
    closed = WarmEnv(wf, _toy_demand(), [3], 1, planner="horizon")
    cached = WarmEnv(wf, _toy_demand(), [3], 1, planner="horizon", decision_cache=True)
    for env in (closed, cached):
        env._with_refs = False
        env.reset(series=np.array([0]), days=np.array([3]))
    zero = np.zeros((1, 2, 2))
    for _ in range(closed.per_day):
        _, _, _, a = closed.step(zero)
        _, _, _, b = cached.step(zero)
        np.testing.assert_allclose(a["rt_s"], b["rt_s"])
        np.testing.assert_array_equal(a["placement"], b["placement"])
    with pytest.raises(ValueError, match="decision_cache"):
        WarmEnv(wf, _toy_demand(), [3], 1, planner="myopic-ot", decision_cache=True)


def test_horizon_ppo_is_registered_with_a_description():
    from torta.policy import get_policy, list_policies

    assert dict(list_policies()).get("torta-horizon-ppo")
    assert get_policy("torta-horizon-ppo").name == "torta-horizon-ppo"


def test_the_myopic_ot_reference_is_the_same_whatever_the_planner_and_its_base():
    from dataclasses import replace

    from torta.rl.env import EnvConfig
    from torta.rl.warm_env import WarmEnv

    wf = toy_warm()
    a = WarmEnv(wf, _toy_demand(), [3], 1, replace(EnvConfig(), ot_base=False), planner="none")
    b = WarmEnv(wf, _toy_demand(), [3], 1, planner="horizon")
    np.testing.assert_allclose(a.reference(0, 3), b.reference(0, 3))
    assert a.reference_eval([0], [3])["return"] == pytest.approx(b.reference_eval([0], [3])["return"])


def test_bad_inputs_are_named():
    from click.testing import CliRunner

    from torta.commands.gap_report import cli
    from torta.rl.warm import WarmCalibration
    from torta.rl.warm_env import WarmEnv

    wf = toy_warm()
    with pytest.raises(ValueError, match="capable_rm"):
        WarmFleet(base=wf.base, capable_rm=np.ones((3, 2)), servers_any=wf.servers_any, load_s_rm=wf.load_s_rm,
                  gpu_s_rm=wf.gpu_s_rm, load_usd_rm=wf.load_usd_rm, initial_rm=wf.initial_rm)
    with pytest.raises(ValueError, match="planner"):
        WarmEnv(wf, _toy_demand(), [3], 1, planner="lp")
    with pytest.raises(ValueError, match="slowdown"):
        WarmCalibration(slowdown=-1.0)
    res = CliRunner().invoke(cli, ["--day", "12"])
    assert res.exit_code == 2 and "test day" in res.output


def test_base_eps_bounds_the_load_moved_to_regions_the_lp_gives_no_share():
    """At zero offsets a region with no LP share of a model keeps eps / (1 + R eps) of it: the horizon variant's
    floor (HORIZON_BASE_EPS) leaks far less than the plain surrogate's 0.02."""
    from dataclasses import replace

    from torta.rl.env import EnvConfig
    from torta.rl.train import HORIZON_BASE_EPS
    from torta.rl.warm_env import apply_offsets

    wf = toy_warm()
    shares = local()  # every origin's load stays home: region 1 has no share of origin 0's load
    zero = np.zeros((1, 2, 2))
    for eps in (0.02, HORIZON_BASE_EPS):
        plans = apply_offsets(wf, shares, zero, replace(EnvConfig(), base_eps=eps), True)
        np.testing.assert_allclose(plans.sum(-1), 1.0)
        np.testing.assert_allclose(plans[0, :, 0, 1], eps / (1 + 2 * eps))
    assert HORIZON_BASE_EPS / (1 + 2 * HORIZON_BASE_EPS) < 0.002 < 0.02 / 1.04
