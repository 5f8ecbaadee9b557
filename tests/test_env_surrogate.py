"""The surrogate environment's contract: shapes, done, reward sign, conservation, plans, forecast."""

from __future__ import annotations

import numpy as np
import pytest

from rl_toy import toy_demand, toy_fleet
from torta.rl.env import Dynamics, EnvConfig, SurrogateEnv, obs_dim, plan_from_action, run_fixed
from torta.rl.fleet import seasonal_forecast


def test_reset_step_shapes_done_and_reward_sign():
    f = toy_fleet()
    env = SurrogateEnv(f, toy_demand(), [2, 3, 4], n_envs=5, seed=1)
    obs = env.reset()
    assert obs.shape == (5, obs_dim(3, EnvConfig())) and obs.dtype == np.float32 and np.isfinite(obs).all()
    for t in range(24):
        obs, rew, done, info = env.step(np.zeros((5, 3, 3)))
        assert rew.shape == (5,) and done.shape == (5,)
        assert (rew < 0).all()  # every term is a cost
        np.testing.assert_allclose(info["plan"].sum(-1), 1.0)
        assert done.all() == (t == 23) and done.any() == (t == 23)
        if not done[0]:
            assert obs.shape == (5, env.obs_dim) and np.isfinite(obs).all()


def test_rejects_bad_days_and_shapes():
    f = toy_fleet()
    with pytest.raises(ValueError, match="days"):
        SurrogateEnv(f, toy_demand(), [1], n_envs=1)
    with pytest.raises(ValueError, match="shape"):
        SurrogateEnv(f, toy_demand()[:, :, :2], [2], n_envs=1)


def test_dynamics_conserves_work_and_reward_orders_plans():
    f = toy_fleet()
    dyn = Dynamics(f)
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 9000, (4, 3, 1))
    P = plan_from_action(np.zeros((4, 3, 3)), rng.normal(size=(4, 3, 3)), np.ones(3, bool))
    W = rng.uniform(0, 5000, (4, 3))
    W2, info = dyn.step(P, a, W, np.full((4, 3), 50.0))
    served = info["util"] * f.servers * f.slot_s
    arrived = np.einsum("bi,bij->bj", a[:, :, 0], P) * 1.0  # work 1 s per request
    np.testing.assert_allclose(W + arrived, W2 + served, rtol=1e-9)
    assert (served <= f.servers * f.slot_s * f.capacity_derate + 1e-6).all()
    # everything to the smallest region is worse than the OT plan on the surge day
    env = SurrogateEnv(f, toy_demand(), [2], 1)
    bad = run_fixed(env, [0], [2], plans=np.tile(np.array([[0, 0, 1.0]] * 3), (24, 1, 1)))
    ot = run_fixed(env, [0], [2], "myopic-ot")
    assert bad["rt_s"].mean() > 2 * ot["rt_s"].mean()
    assert bad["lb"].mean() > ot["lb"].mean()


def test_seasonal_forecast_hand_values():
    h = np.zeros((1, 12, 1))
    h[0, :, 0] = [1, 2, 3, 4, 5, 6, 2, 4, 6, 8, 10, 12]  # "days" of 6 slots; today is twice yesterday
    fc = seasonal_forecast(h, 2, per_day=6, recent=2)
    # base = slots 6, 7 one day back (2, 4); ratio = (10 + 12) / (5 + 6) = 2
    np.testing.assert_allclose(fc[0, :, 0], [4.0, 8.0])
    with pytest.raises(ValueError):
        seasonal_forecast(h[:, :5], 1, per_day=6)


def test_fleet_from_world_on_a_small_world():
    from torta.rl.fleet import fleet_from_world
    from torta.sim.testing import make_world

    f = fleet_from_world(make_world((2, 0, 1), models=("a", "b")))
    assert f.servers.tolist() == [2.0, 0.0, 1.0]
    assert f.rps_rm.shape == (3, 2) and (f.rps_rm[[0, 2]] > 0).all() and (f.rps_rm[1] == 0).all()
    assert f.price_at(np.array([0.0, 7200.0])).shape == (2, 3)
