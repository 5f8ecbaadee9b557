"""PPO pieces: GAE against hand-computed values, the OT-KL term, checkpoints, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torta.rl.ppo import Agent, gae, kl_to_plan


def test_gae_terminal_episode_hand_computed():
    r = np.array([[1.0], [2.0], [3.0]])
    v = np.array([[0.5], [1.0], [1.5]])
    d = np.array([[0.0], [0.0], [1.0]])
    adv, ret = gae(r, v, d, np.array([10.0]), gamma=0.9, lam=0.8)
    # t=2: 3 - 1.5 = 1.5; t=1: 2 + .9*1.5 - 1 = 2.35, + .72*1.5 = 3.43; t=0: 1 + .9 - .5 = 1.4, + .72*3.43
    np.testing.assert_allclose(adv[:, 0], [1.4 + 0.72 * 3.43, 3.43, 1.5])
    np.testing.assert_allclose(ret, adv + v)


def test_gae_bootstraps_and_cuts_at_done():
    r = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    v = np.array([[0.5, 0.5], [1.0, 1.0], [1.5, 1.5]])
    d = np.array([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    adv, _ = gae(r, v, d, np.array([2.0, 2.0]), gamma=0.9, lam=0.8)
    # env 0: bootstrap from last_value 2: t=2: 3 + 1.8 - 1.5 = 3.3; t=1: 2.35 + .72*3.3; t=0: 1.4 + .72*adv1
    a1 = 2.35 + 0.72 * 3.3
    np.testing.assert_allclose(adv[:, 0], [1.4 + 0.72 * a1, a1, 3.3])
    # env 1: the episode ends with step 0, so adv0 = r0 - v0 only
    assert adv[0, 1] == pytest.approx(0.5)
    assert adv[1, 1] == pytest.approx(a1)


def test_kl_to_plan_zero_at_target_and_positive_elsewhere():
    t = torch.softmax(torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(0)), -1)
    ok = torch.ones(3, dtype=torch.bool)
    zero = kl_to_plan(t, torch.log(t), torch.zeros(5, 3, 3), ok)
    assert float(zero) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_to_plan(t, torch.log(t), torch.randn(5, 3, 3), ok)) > 0


def test_agent_round_trip_weights_only(tmp_path):
    from torta.rl.train import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    a = Agent(20, 3, hidden=16)
    a.set_obs_stats(np.random.default_rng(0).normal(size=(50, 20)))
    p = save_checkpoint(a.state_dict(), tmp_path / "x.pt", {"variant": "torta"})
    sd, meta = load_checkpoint(p)
    assert meta["variant"] == "torta"
    b = Agent.from_state_dict(sd)
    obs = np.random.default_rng(1).normal(size=(4, 20)).astype(np.float32)
    np.testing.assert_array_equal(a.act_mean(obs), b.act_mean(obs))
    assert not (tmp_path / "x.pt.tmp").exists()


class _NotATensor:
    pass


def test_load_checkpoint_rejects_missing_and_pickles(tmp_path):
    from torta.errors import InputError
    from torta.rl.train import load_checkpoint

    with pytest.raises(InputError, match="torta train"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"w": torch.zeros(2), "obj": _NotATensor()}, bad)
    with pytest.raises(InputError, match="weights_only"):
        load_checkpoint(bad)


def test_ppo_update_stays_finite_when_the_ratio_would_overflow():
    """A stale behaviour log-probability far from the current one (exp would overflow to inf) must not
    turn the weights NaN: the log ratio is bounded before exp."""
    from torta.rl.ppo import LOG_RATIO_MAX, PPOConfig, ppo_update

    torch.manual_seed(0)
    r, n = 3, 64
    agent = Agent(5, r, hidden=8)
    opt = torch.optim.Adam(agent.parameters(), lr=1e-3)
    obs = torch.randn(n, 5)
    with torch.no_grad():
        act = agent.dist(obs).sample()
    adv = torch.randn(n)
    batch = {"obs": obs, "act": act, "logp": torch.full((n,), -500.0),  # ratio e^(hundreds) without a bound
             "adv": adv, "ret": torch.randn(n), "ot": torch.full((n, r, r), 1.0 / r), "base": torch.zeros(n, r, r)}
    st = ppo_update(agent, opt, batch, PPOConfig(epochs=2, minibatch=16), 1.0, torch.ones(r, r, dtype=torch.bool),
                    torch.Generator().manual_seed(0))
    assert all(torch.isfinite(p).all() for p in agent.parameters())
    assert all(np.isfinite(v) for v in st.values())
    assert st["approx_kl"] <= np.exp(LOG_RATIO_MAX)
